"""The fish-feeder daemon: feeding plans, water-quality interlocks, hard limits, proof.

``FishFeederApp`` wires the config to the hardware and the rules:

- every pond's feeding times (site local time) are starts of ``protocol.planner``; each
  ``tick()`` takes the starts that fell due since the last one (and, at start, those
  missed while the daemon was down, within ``postpone_window_s``). A due feeding is
  split over the pond's feeders and queued; the queue is worked on every ``tick()``:
  water-quality interlock (``rules.interlock``), hopper level, the daily cap
  (``rules.clamp_dose``), then the feeder runs and measures what went out;
- water-quality sensors (EZO or Modbus) and hopper gauges are polled every
  ``water.poll_s``; a reading older than the sensor's ``stale_after_s`` is stale and the
  stale policy applies;
- commands (``feed_now``, ``skip_next``, ``pause``, ``resume``, ``stop_all``,
  ``clear_fault``) and the controller's remote config (plans and thresholds only);
- durable state in the ``StateStore`` (keys ``ff.*``): today's totals per feeder and
  pond (the daily cap survives a restart), the feed log per pond and day, the pause and
  skip flags (``protocol.holds``, as on an irrigation unit), a feeding in progress,
  feedings waiting for oxygen, the accepted remote config, and lockouts.

Events: ``feed_dispensed``, ``feeding_postponed``, ``feeding_skipped`` (with ``reason``),
``limit_clamped``, ``alarm`` / ``alarm_cleared``, ``paused`` / ``resumed``,
``run_interrupted`` (a feeding cut by a crash or power loss, found at the next start).

A jam (no rotation pulses, or no weight drop, within ``confirm_timeout_s``) switches the
motor off, raises one alarm and locks the feeder: no feeding runs on it until an operator
sends ``clear_fault{feeder}`` or a technician restarts the daemon (which records the
lockout it clears as ``alarm_cleared`` with ``cleared_by = "restart"``).

Reports go to the outbox and totals to the state file, two files, and a kill can fall
between two writes. A feeding's grams are reserved against the daily cap in the same
state transaction that saves it as in progress; when it ends, its grams, its feed-log
entry and its ``feed_dispensed`` report are saved in one transaction, then the report is
stored in the outbox under the feeding's id (``App.event_once``), then the feeding is
cleared. A restart that finds the feeding with its report stores the report (once) and
counts nothing again; one without a report was cut short (``run_interrupted``, counted
in full).
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import ValidationError

from protocol.holds import HoldRefused, Holds
from protocol.kinds.fish_feeder import RemoteBody
from protocol.models import (
    MIN_DOSE_G,
    ClearFaultParams,
    FeedNowParams,
    PauseParams,
    SkipNextParams,
)
from protocol.planner import MAX_CATCH_UP, Plan, Site, StartPlanner

from ..app import App, command_params
from ..config import problems as config_problems
from ..errors import ConfigError
from ..limits import Clamp
from ..sensors.base import SensorError, SensorValue
from ..sensors.ezo import EzoSensor
from ..sensors.hopper import LoadCell, UltrasonicLevel
from ..sensors.modbus import open_port
from ..sensors.modbus_wq import ModbusWaterQuality
from .config import FishFeederConfig, LoadCellHopperSpec, PondSpec, sensor_quantities
from .devices import Feeder, FeedResult, HopperGauge
from .rules import (
    Reading,
    WaterQuality,
    clamp_dose,
    hopper_days_left,
    interlock,
    local_day,
    next_rate_trim,
    plan_doses,
    split_ration,
)
from .species import thresholds_for

logger = logging.getLogger(__name__)

# MIN_DOSE_G (from protocol.models): a dose smaller than it is not worth turning a motor on
# for, and a feed_now asking less is refused.
QUANTITIES = ("do_mg_l", "temp_c", "ph")


@dataclass
class Pending:
    """A feeding waiting to run (persisted when it comes from the schedule)."""

    feeder: str
    pond: str
    plan_g: float
    source: str  # "schedule" or "command"
    due: str  # ISO UTC
    retry_until: str  # ISO UTC; after it a postponed feeding is skipped
    slot: str | None = None
    cmd_id: str | None = None
    postponed: bool = False
    reply: Any = field(default=None, repr=False, compare=False)

    def persistable(self) -> dict:
        d = asdict(self)
        d.pop("reply")
        return d


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


def _parse_ts(value) -> datetime:
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("time must carry a UTC offset")
    return dt.astimezone(UTC)


class FishFeederApp(App):
    kind: ClassVar[str] = "fish_feeder"
    schedule_model = RemoteBody

    def __init__(self, config: FishFeederConfig, *, pin_factory, clock, publisher,
                 state=None, clock_synced=None, ports: dict | None = None,
                 distance_sources: dict | None = None):
        """``ports`` maps a configured ``port_url`` to an open serial-like object and
        ``distance_sources`` a feeder name to an object with ``distance`` (metres): both
        let the simulator stand in for hardware. Anything not given is opened for real."""
        super().__init__(config, pin_factory=pin_factory, clock=clock, publisher=publisher,
                         state=state, clock_synced=clock_synced)
        self._lock = threading.RLock()
        self._ports = dict(ports or {})
        self._latched: set[str] = set()
        self._started_at: datetime | None = None
        self.sensors: dict[str, Any] = {}
        self.values: dict[tuple[str, str], SensorValue] = {}
        self._build_sensors()
        self.hoppers: dict[str, HopperGauge] = {}
        self.feeders: dict[str, Feeder] = {}
        for spec in config.feeders:
            hopper = self._build_hopper(spec, distance_sources or {})
            pulses = self.pulse_counter(spec.rotation_input) if spec.rotation_input else None
            self.feeders[spec.name] = Feeder(spec, self.outputs[spec.motor], clock,
                                             pulses=pulses, hopper=hopper)
            if hopper is not None:
                self.hoppers[spec.name] = hopper
        trims = self.state.get("ff.trim") or {}
        for name, feeder in self.feeders.items():
            saved = trims.get(name)
            if saved and saved.get("rate") == feeder.spec.rate_g_per_s:
                feeder.trim = float(saved["trim"])  # else: recalibrated, learn afresh
        self._pending: list[Pending] = []
        self._ponds: dict[str, PondSpec] = {p.name: p for p in config.ponds}
        self._thresholds_cache: dict[str, Any] = {}
        self._remote_version = 0
        self._load_remote_config()
        self._daily = self.state.get("ff.daily") or {"day": None, "feeders": {}, "ponds": {}}
        self.site = Site.from_config(config.site)
        self.holds = self._load_holds()
        self._planner = self._feeding_planner()
        self._mark: datetime | None = None  # feeding times up to here are handled

    # -- construction ----------------------------------------------------------------------
    def _build_sensors(self):
        shared: dict[str, Any] = {}
        modbus_urls = [s.port_url for s in self.config.sensors if s.driver == "modbus"]
        for spec in self.config.sensors:
            port = self._ports.get(spec.port_url, spec.port_url)
            if spec.driver == "ezo":
                drv = EzoSensor(port, spec.quantity, baudrate=spec.baudrate,
                                timeout_s=spec.timeout_s)
            else:
                if isinstance(port, str) and modbus_urls.count(port) > 1:
                    if port not in shared:
                        try:
                            shared[port] = open_port(port, baudrate=spec.baudrate,
                                                     timeout_s=spec.timeout_s)
                        except SensorError as exc:
                            logger.error("shared Modbus port: %s", exc)
                            shared[port] = port
                    port = shared[port]
                registers = {q: (r.address, r.decimals, r.signed)
                             for q, r in spec.registers.items()}
                drv = ModbusWaterQuality(port, spec.slave, registers, baudrate=spec.baudrate,
                                         timeout_s=spec.timeout_s,
                                         function_code=spec.function_code)
            self.sensors[spec.name] = drv
            for q in sensor_quantities(spec):
                self.values[(spec.name, q)] = SensorValue()

    def _build_hopper(self, spec, distance_sources) -> HopperGauge | None:
        h = spec.hopper
        if h is None:
            return None
        if isinstance(h, LoadCellHopperSpec):
            device = LoadCell(self._ports.get(h.port_url, h.port_url), baudrate=h.baudrate,
                              timeout_s=h.timeout_s)
        elif spec.name in distance_sources:
            device = UltrasonicLevel(distance_sources[spec.name],
                                     full_distance_m=h.full_distance_m,
                                     empty_distance_m=h.empty_distance_m)
        else:
            try:
                device = UltrasonicLevel.from_pins(
                    trigger_pin=h.trigger_pin, echo_pin=h.echo_pin,
                    pin_factory=self.pin_factory, full_distance_m=h.full_distance_m,
                    empty_distance_m=h.empty_distance_m)
            except SensorError as exc:
                logger.error("feeder %s: %s", spec.name, exc)
                self.alarm("hopper_sensor_failed", f"feeder {spec.name}: {exc}",
                           feeder=spec.name)
                return None
        return HopperGauge(h, device, self.clock)

    # -- effective plan ----------------------------------------------------------------------
    def thresholds(self, pond: str):
        if pond not in self._thresholds_cache:
            spec = self._ponds[pond]
            self._thresholds_cache[pond] = thresholds_for(spec.species, spec.thresholds)
        return self._thresholds_cache[pond]

    def pond_doses(self, pond: str) -> list[tuple[str, float]]:
        """``[(HH:MM, grams for the whole pond), ...]`` of the plan now in force."""
        spec = self._ponds[pond]
        return plan_doses(spec.plan, self.thresholds(pond))

    def feeder_daily_plan_g(self, feeder: str) -> float:
        pond = self.config.feeder(feeder).pond
        n = len(self.config.feeders_of(pond))
        return sum(g for _, g in self.pond_doses(pond)) / n

    @property
    def current_config_version(self) -> int:
        """Version of the controller's config in force (0: the local file's plan only)."""
        return self._remote_version

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._started_at = self.clock.now()
        super().start()
        with self._lock:
            self._roll_day()
            self._recover()
        self.scheduler.every_s(self.config.water.poll_s, self.poll, "water_poll")
        self.poll()

    def tick(self) -> None:
        super().tick()
        try:
            with self._lock:
                self._roll_day()
                self._check_pause_end()
                self._feedings_due()
                self._process_pending()
            self._clear("tick_failed")
        except Exception as exc:  # noqa: BLE001 - the loop must survive any bug here
            logger.exception("fish feeder tick failed")
            self._raise("tick_failed", "tick_failed", f"feeding loop error: {exc}")

    def close(self) -> None:
        if self._closed:
            return
        try:
            for feeder in self.feeders.values():
                try:
                    feeder.abort("stopped")
                except Exception:  # noqa: BLE001 - keep stopping the others
                    logger.exception("stopping feeder %s", feeder.name)
        finally:
            super().close()
            for drv in [*self.sensors.values(), *self.hoppers.values()]:
                try:
                    drv.close()
                except Exception:  # noqa: BLE001 - closing must not stop the others
                    logger.exception("closing a sensor")

    def _recover(self) -> None:
        """After a restart: record a feeding cut short, clear lockouts, restore the queue.

        Each report is stored once per key (``App.event_once``): a start killed after
        the report and before the state write below reports again at the next start,
        and the outbox keeps one copy. A feeding saved with its report had ended and is
        counted already: its report is stored (unless it was) and nothing else."""
        for name, run in (self.state.get("ff.in_progress") or {}).items():
            feeding = run.get("id") or f"{name}:{run.get('started_at')}"
            if "report" in run:
                self.event_once(f"feed_dispensed:{feeding}", "feed_dispensed",
                                **run["report"])
                continue
            self.event_once(f"run_interrupted:{feeding}", "run_interrupted", feeder=name,
                            pond=run.get("pond"), planned_g=run.get("planned_g"),
                            counted_g=run.get("reserved_g"), started_at=run.get("started_at"),
                            source=run.get("source"), reason="restart",
                            action="dropped",  # a cut feeding is never resumed
                            **({"cmd_id": run["cmd_id"]} if run.get("cmd_id") else {}))
        self.state.set("ff.in_progress", {})
        for name, lock in (self.state.get("ff.lockouts") or {}).items():
            self.event_once(f"lockout_cleared:{name}:{lock.get('since')}", "alarm_cleared",
                            code=lock.get("code", "feeder_jam"), feeder=name,
                            cleared_by="restart", since=lock.get("since"),
                            message=f"feeder {name}: lockout cleared by a restart")
        self.state.set("ff.lockouts", {})
        now = self.clock.now()
        for raw in self.state.get("ff.pending") or []:
            try:
                p = Pending(**raw)
            except TypeError:
                logger.warning("dropping unreadable pending feeding %r", raw)
                continue
            if p.feeder not in self.feeders:
                continue
            if _parse_ts(p.retry_until) < now:
                self._skipped(p, "window_passed_during_restart")
            else:
                self._pending.append(p)
        # Feeding times that passed while the daemon was down (power cut, reboot) are
        # taken from the last moment it was alive (on a trusted clock).
        alive = self.state.get("ff.alive")
        self._mark = now
        if alive and self.clock_synced():
            self._mark = max(_parse_ts(alive), now - MAX_CATCH_UP)
            self._feedings_due(catching_up=True)
        self._save_pending()

    # -- schedules ----------------------------------------------------------------------------
    def _feeding_planner(self) -> StartPlanner:
        return StartPlanner([Plan.parse(pond, [hhmm for hhmm, _ in self.pond_doses(pond)])
                             for pond in self._ponds], self.site)

    def idle_s(self) -> float | None:
        """Seconds until the app next needs a ``tick()`` (a job or a feeding time)."""
        now = self.clock.now()
        nxt = self._planner.next_after(max(now, self._mark or now))
        times = [t for t in (self.scheduler.idle_s(),
                             None if nxt is None else (nxt.at - now).total_seconds())
                 if t is not None]
        return min(times, default=None)

    def _feedings_due(self, catching_up: bool = False) -> None:
        """Queue (or skip) the feedings whose time came since the last call."""
        now = self.clock.now()
        if self._mark is None or now < self._mark:  # first call, or the clock went back
            self._mark = now
            return
        due = self._planner.between(self._mark, now)
        self._mark = now
        if not due:
            return
        window = timedelta(seconds=self.config.interlocks.postpone_window_s)
        for start in due:
            late = now - start.at > window
            self._slot_due(start.program, start.start, start.at, now,
                           late=("unit_down" if catching_up else "missed") if late else None)
        self._save_pending()
        if self.clock_synced():
            self.state.set("ff.alive", _iso(now))  # these slots are handled: no catch-up

    def _slot_due(self, pond: str, hhmm: str, due: datetime, now: datetime,
                  late: str | None) -> None:
        doses = dict(self.pond_doses(pond))
        if hhmm not in doses:
            return
        feeders = self.config.feeders_of(pond)
        window = timedelta(seconds=self.config.interlocks.postpone_window_s)
        for spec, grams in zip(feeders, split_ration(doses[hhmm], len(feeders)), strict=True):
            p = Pending(feeder=spec.name, pond=pond, plan_g=grams, source="schedule",
                        due=_iso(due), retry_until=_iso(due + window), slot=hhmm)
            held = self.holds.reason(now, rain_delay=False)
            if late is not None:
                self._skipped(p, late, due=_iso(due))
            elif not self.clock_synced():
                self._skipped(p, "clock_not_synced")
            elif held is not None:
                self._skipped(p, held, until=_iso(self.holds.paused_until))
            elif self.holds.take_skip(spec.name):
                self._save_holds()
                self._skipped(p, "skip_next")
            else:
                if now - due > timedelta(minutes=1):
                    logger.info("catching up the %s feeding of %s", hhmm, spec.name)
                self._pending.append(p)

    # -- the queue ----------------------------------------------------------------------------
    def _save_pending(self) -> None:
        self.state.set("ff.pending", [p.persistable() for p in self._pending
                                      if p.source == "schedule"])

    def _process_pending(self) -> None:
        if not self._pending:
            return
        keep = [p for p in list(self._pending) if not self._try(p)]
        changed = len(keep) != len(self._pending)
        self._pending = keep
        if changed:
            self._save_pending()

    def _try(self, p: Pending) -> bool:
        """Work on one pending feeding; True when it is settled (started or skipped)."""
        feeder = self.feeders[p.feeder]
        spec = feeder.spec
        now = self.clock.now()
        if feeder.busy:
            return False
        if p.source == "schedule":
            if not self.clock_synced():
                return self._skipped(p, "clock_not_synced")
            if self._paused_until(now) is not None:
                return self._skipped(p, "paused", until=self._paused_until(now))
        if feeder.fault is not None:
            return self._skipped(p, "feeder_locked", fault=feeder.fault)
        hopper = self.hoppers.get(p.feeder)
        if hopper is not None:
            pct = hopper.pct()
            if pct is not None and pct <= hopper.spec.empty_pct:
                self._raise(f"hopper_empty:{p.feeder}", "hopper_empty",
                            f"feeder {p.feeder}: hopper empty ({pct:.0f} %)",
                            feeder=p.feeder, hopper_pct=pct)
                return self._skipped(p, "hopper_empty", hopper_pct=pct)
        il = self.config.interlocks
        decision = interlock(self.thresholds(p.pond), self.water_quality(p.pond),
                             stale_policy=il.stale_policy, stale_factor=il.stale_reduce_factor)
        if decision.action == "skip":
            return self._skipped(p, decision.reason, **decision.details)
        if decision.action == "postpone":
            if now < _parse_ts(p.retry_until):
                if not p.postponed:
                    p.postponed = True
                    self.publisher.event(
                        "feeding_postponed", pond=p.pond, feeder=p.feeder, slot=p.slot,
                        plan_g=p.plan_g, reason=decision.reason, retry_until=p.retry_until,
                        source=p.source, **decision.details)
                    self._save_pending()
                return False
            waited = (now - _parse_ts(p.due)).total_seconds()
            return self._skipped(p, decision.reason, waited_s=round(waited), **decision.details)
        asked = round(p.plan_g * decision.factor, 1)
        clamp = clamp_dose(asked, max_dose_g=min(spec.max_dose_g, feeder.max_dose_for_motor_g()),
                           max_daily_g=spec.max_daily_g, fed_today_g=self._fed_today(p.feeder))
        if clamp.clamped:
            self._clamped(p.feeder, clamp, source=p.source, pond=p.pond, cmd_id=p.cmd_id)
        if clamp.allowed_g < MIN_DOSE_G:
            return self._skipped(p, "daily_cap_reached", asked_g=asked,
                                 max_daily_g=spec.max_daily_g)
        dose = clamp.allowed_g
        feeding = {"id": uuid.uuid4().hex, "pond": p.pond, "planned_g": dose,
                   "reserved_g": dose, "started_at": _iso(now), "source": p.source,
                   **({"cmd_id": p.cmd_id} if p.cmd_id else {})}
        runs = self.state.get("ff.in_progress") or {}
        runs[p.feeder] = feeding
        # Reserved until measured, in the transaction that saves the feeding in progress.
        self._add_today(p.feeder, p.pond, commanded_g=dose, also={"ff.in_progress": runs})
        info = {"plan_g": p.plan_g, "factor": decision.factor, "reduced_by": decision.reason,
                "slot": p.slot, "source": p.source, "cmd_id": p.cmd_id}
        try:
            feeder.start(dose, lambda result: self._fed(p, feeding, info, result))
        except (RuntimeError, ValueError) as exc:
            runs.pop(p.feeder, None)
            self._add_today(p.feeder, p.pond, commanded_g=-dose, also={"ff.in_progress": runs})
            return self._skipped(p, "feeder_not_ready", error=str(exc))
        return True

    def _fed(self, p: Pending, feeding: dict, info: dict, result: FeedResult) -> None:
        with self._lock:
            measured = result.measured_g if result.measured_g is not None else result.commanded_g
            details = {k: v for k, v in info.items() if v not in (None, "")}
            report = dict(
                pond=p.pond, feeder=p.feeder, species=self._ponds[p.pond].species,
                planned_g=result.planned_g, measured_g=result.measured_g,
                measured_by=result.measured_by, commanded_g=result.commanded_g,
                duration_s=result.duration_s, pulses=result.pulses, fault=result.fault,
                **details)
            # One transaction: the grams counted, the feed log, and the feeding marked
            # done with its report. Then the report, once per feeding; then the feeding
            # is cleared. A kill anywhere leaves one report and the grams counted once.
            runs = self.state.get("ff.in_progress") or {}
            runs[p.feeder] = {**feeding, "report": report}
            self._add_today(p.feeder, p.pond,
                            commanded_g=result.commanded_g - feeding["reserved_g"],
                            measured_g=measured,
                            also={"ff.in_progress": runs,
                                  "ff.feed_log": self._logged(p.pond, result, measured)})
            self.event_once(f"feed_dispensed:{feeding['id']}", "feed_dispensed", **report)
            runs.pop(p.feeder, None)
            self.state.set("ff.in_progress", runs)
            self._learn_rate(p.feeder, result)
            if result.fault in ("jam", "no_feed"):
                code = "feeder_jam" if result.fault == "jam" else "feeder_no_feed"
                what = ("no rotation" if result.fault == "jam"
                        else "the auger turns but the hopper weight does not drop")
                locks = self.state.get("ff.lockouts") or {}
                locks[p.feeder] = {"code": code, "since": _iso(self.clock.now())}
                self.state.set("ff.lockouts", locks)
                self.alarm(code, f"feeder {p.feeder}: {what} within "
                           f"{self.feeders[p.feeder].spec.confirm_timeout_s:g} s; motor off, "
                           "feeder locked until clear_fault or a restart",
                           feeder=p.feeder, pond=p.pond, dispensed_g=measured)
            if p.reply is not None:
                if result.fault is None:
                    p.reply("done", f"dispensed {measured:.1f} g of {result.planned_g:.1f} g")
                else:
                    p.reply("failed", f"{result.fault} after {measured:.1f} g")

    def _learn_rate(self, name: str, result: FeedResult) -> None:
        """Trim the feeder's rate from what a good run measured (bounded, persisted)."""
        feeder = self.feeders[name]
        if (result.fault is not None or result.measured_g is None
                or result.duration_s < 2 * feeder.spec.confirm_timeout_s):
            return
        trim, at_bound = next_rate_trim(feeder.trim, measured_g=result.measured_g,
                                        expected_g=result.commanded_g,
                                        max_pct=feeder.spec.rate_trim_max_pct)
        feeder.trim = trim
        trims = self.state.get("ff.trim") or {}
        trims[name] = {"rate": feeder.spec.rate_g_per_s, "trim": trim}
        self.state.set("ff.trim", trims)
        if at_bound:
            self._raise(f"feeder_needs_calibration:{name}", "feeder_needs_calibration",
                        f"feeder {name}: measured grams differ from the calibrated rate by "
                        f"more than {feeder.spec.rate_trim_max_pct:g} %; calibrate it again",
                        feeder=name, rate_trim=trim)

    def _skipped(self, p: Pending, reason: str, **details) -> bool:
        self.publisher.event("feeding_skipped", pond=p.pond, feeder=p.feeder, slot=p.slot,
                             plan_g=p.plan_g, reason=reason, source=p.source,
                             **({"cmd_id": p.cmd_id} if p.cmd_id else {}), **details)
        if p.reply is not None:
            p.reply("failed", f"feeding skipped: {reason}")
        return True

    def _clamped(self, feeder: str, clamp, **details) -> dict:
        c = Clamp("dose_g", clamp.asked_g, clamp.allowed_g, clamp.limit)
        self.publisher.event("limit_clamped", feeder=feeder, **c.as_dict(),
                             **{k: v for k, v in details.items() if v is not None})
        return c.as_dict()

    # -- daily totals and the feed log -----------------------------------------------------
    def _roll_day(self) -> None:
        """Start a new day's totals at local midnight (only on a trusted clock)."""
        day = local_day(self.clock.now(), self.config.site.timezone)
        if self._daily.get("day") == day:
            return
        if self._daily.get("day") is not None and not self.clock_synced():
            return  # an untrusted clock never resets the daily cap
        self._daily = {"day": day, "feeders": {}, "ponds": {}}
        self.state.set("ff.daily", self._daily)
        self._trim_log()

    def _fed_today(self, feeder: str) -> float:
        return float(self._daily["feeders"].get(feeder, {}).get("commanded_g", 0.0))

    def _add_today(self, feeder: str, pond: str, *, commanded_g: float = 0.0,
                   measured_g: float = 0.0, also: dict | None = None) -> None:
        """Count grams in today's totals; saved with the documents ``also`` (key: value)
        in one transaction."""
        for section, name in (("feeders", feeder), ("ponds", pond)):
            t = self._daily[section].setdefault(name, {"commanded_g": 0.0, "measured_g": 0.0})
            t["commanded_g"] = round(max(0.0, t["commanded_g"] + commanded_g), 1)
            t["measured_g"] = round(max(0.0, t["measured_g"] + measured_g), 1)
        self.state.set_many({"ff.daily": self._daily, **(also or {})})

    def fed_today_g(self, name: str) -> float:
        """Grams that went out today (measured), for a pond or a feeder name."""
        for section in ("ponds", "feeders"):
            if name in self._daily[section]:
                return float(self._daily[section][name]["measured_g"])
        return 0.0

    def _logged(self, pond: str, result: FeedResult, measured: float) -> dict:
        """The feed log with this feeding added (for the caller to save)."""
        log = self.state.get("ff.feed_log") or {}
        day = self._daily["day"]
        entry = log.setdefault(pond, {}).setdefault(
            day, {"measured_g": 0.0, "commanded_g": 0.0, "feedings": 0})
        entry["measured_g"] = round(entry["measured_g"] + measured, 1)
        entry["commanded_g"] = round(entry["commanded_g"] + result.commanded_g, 1)
        entry["feedings"] += 1
        return log

    def _trim_log(self) -> None:
        log = self.state.get("ff.feed_log") or {}
        keep = self.config.feed_log_days
        for pond, days in log.items():
            if len(days) > keep:
                log[pond] = dict(sorted(days.items())[-keep:])
        self.state.set("ff.feed_log", log)

    def feed_log(self) -> dict:
        """``{pond: {day: {measured_g, commanded_g, feedings}}}`` for feed-conversion reports."""
        return self.state.get("ff.feed_log") or {}

    # -- pause and skip ---------------------------------------------------------------------
    def _load_holds(self) -> Holds:
        doc = self.state.get("ff.holds")
        if doc is None:  # saved before the holds were one document
            pause = self.state.get("ff.pause") or {}
            doc = {"paused_until": pause.get("until"),
                   "skip_next": self.state.get("ff.skip_next") or []}
        return Holds.from_doc(doc)

    def _save_holds(self) -> None:
        self.state.set("ff.holds", self.holds.to_doc())

    def _paused_until(self, now: datetime) -> str | None:
        if self.holds.reason(now, rain_delay=False) == "paused":
            return _iso(self.holds.paused_until)
        return None

    def _check_pause_end(self) -> None:
        until = self.holds.paused_until
        if "pause" in self.holds.expire(self.clock.now()):
            self._save_holds()
            self.publisher.event("resumed", reason="pause_ended", until=_iso(until))

    # -- sensors --------------------------------------------------------------------------------
    def poll(self) -> None:
        """Read every water-quality sensor and idle hopper; raise and clear alarms."""
        with self._lock:
            now = self.clock.now()
            for name, drv in self.sensors.items():
                try:
                    values = drv.read()
                except SensorError as exc:
                    logger.info("sensor %s: %s", name, exc)
                    continue
                if not isinstance(values, dict):
                    values = {drv.quantity: values}
                for q, v in values.items():
                    self.values[(name, q)].update(v, now)
            for fname, gauge in self.hoppers.items():
                if self.feeders[fname].busy:
                    continue  # the feeder reads its own hopper while it runs
                try:
                    gauge.read()
                except SensorError as exc:
                    logger.info("hopper %s: %s", fname, exc)
            self._sensor_alarms()
            self._hopper_alarms()
            if self.clock_synced() and self._mark is not None:
                # For catching up after a power cut: feeding times up to the mark are
                # handled (not ``now``: one may have fallen due since the last tick).
                self.state.set("ff.alive", _iso(self._mark))

    def _stale_alarm(self, key: str, value: SensorValue, stale_after_s: float,
                     **details) -> None:
        """Raise ``sensor_stale`` once a sensor has been silent ``stale_after_s`` (counted
        from the daemon's start for one never read); clear it when it reads again."""
        now = self.clock.now()
        if not value.is_stale(now, stale_after_s):
            self._clear(key, **details)
            return
        since = value.reading.ts if value.reading is not None else self._started_at
        if since is not None and (now - since).total_seconds() >= stale_after_s:
            what = f"{details.get('sensor')}" + (f" {details['quantity']}"
                                                 if "quantity" in details else "")
            self._raise(key, "sensor_stale", f"sensor {what}: no good reading for "
                        f"{stale_after_s:g} s or more", **details)

    def _sensor_alarms(self) -> None:
        for spec in self.config.sensors:
            for q in sensor_quantities(spec):
                self._stale_alarm(f"sensor_stale:{spec.name}:{q}", self.values[(spec.name, q)],
                                  spec.stale_after_s, sensor=spec.name, quantity=q,
                                  policy=self.config.interlocks.stale_policy)

    def _hopper_alarms(self) -> None:
        for fname, gauge in self.hoppers.items():
            self._stale_alarm(f"sensor_stale:{fname}:hopper", gauge.value,
                              gauge.spec.stale_after_s, sensor=f"{fname}.hopper")
            pct = gauge.pct()
            if pct is None:
                continue
            days = hopper_days_left(gauge.grams(), self.feeder_daily_plan_g(fname))
            if pct <= gauge.spec.empty_pct:
                self._raise(f"hopper_empty:{fname}", "hopper_empty",
                            f"feeder {fname}: hopper empty ({pct:.0f} %)", feeder=fname,
                            hopper_pct=pct)
            elif pct > gauge.spec.empty_pct + 2:
                self._clear(f"hopper_empty:{fname}", feeder=fname, hopper_pct=pct)
            if pct < gauge.spec.low_pct:
                self._raise(f"hopper_low:{fname}", "hopper_low",
                            f"feeder {fname}: feed low ({pct:.0f} %, about {days} days left)",
                            feeder=fname, hopper_pct=pct, days_left=days)
            elif pct >= gauge.spec.low_pct + 5:
                self._clear(f"hopper_low:{fname}", feeder=fname, hopper_pct=pct)

    def water_quality(self, pond: str) -> WaterQuality:
        now = self.clock.now()
        found: dict[str, Reading] = {}
        by_name = {s.name: s for s in self.config.sensors}
        for name in self._ponds[pond].sensors:
            spec = by_name[name]
            for q in sensor_quantities(spec):
                v = self.values[(name, q)]
                found[q] = (Reading.missing() if v.is_stale(now, spec.stale_after_s)
                            else Reading.fresh(v.value))
        return WaterQuality(**found)

    def _raise(self, key: str, code: str, message: str, **details) -> None:
        if key in self._latched:
            return
        self._latched.add(key)
        self.alarm(code, message, **details)

    def _clear(self, key: str, **details) -> None:
        if key not in self._latched:
            return
        self._latched.discard(key)
        code = key.split(":", 1)[0]
        self.publisher.event("alarm_cleared", code=code, message=f"{code} cleared", **details)

    # -- telemetry ------------------------------------------------------------------------------
    def readings(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {}
            for pond in self._ponds:
                wq = self.water_quality(pond)
                for q in QUANTITIES:
                    r = getattr(wq, q)
                    if r is not None:
                        out[f"{q}.{pond}"] = r.value
                out[f"feed_g_today.{pond}"] = self.fed_today_g(pond)
            for fname, feeder in self.feeders.items():
                out[f"feed_g_today.{fname}"] = self.fed_today_g(fname)
                out[f"feeder_locked.{fname}"] = feeder.fault is not None
                out[f"rate_trim.{fname}"] = feeder.trim
                gauge = self.hoppers.get(fname)
                if gauge is not None:
                    out[f"hopper_pct.{fname}"] = gauge.pct()
                    out[f"hopper_days_left.{fname}"] = hopper_days_left(
                        gauge.grams(), self.feeder_daily_plan_g(fname))
                    out[f"garbled_lines.{fname}.hopper"] = gauge.garbled
            for name, drv in self.sensors.items():
                out[f"garbled_lines.{name}"] = drv.garbled
            out["paused"] = self._paused_until(self.clock.now()) is not None
            return out

    # -- commands -------------------------------------------------------------------------------
    def handle_command(self, cmd_id: str, action: str, params, reply) -> None:
        handler = {
            "feed_now": self._cmd_feed_now, "skip_next": self._cmd_skip_next,
            "pause": self._cmd_pause, "resume": self._cmd_resume,
            "stop_all": self._cmd_stop_all, "clear_fault": self._cmd_clear_fault,
        }.get(action)
        if handler is None:
            reply("rejected", f"fish_feeder unit does not know action {action!r}")
            return
        try:
            p = command_params(action, params)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "params"
            reply("rejected", f"bad params: {where}: {first['msg']}")
            return
        with self._lock:
            handler(cmd_id, p, reply)

    def _known_feeder(self, name: str | None, reply) -> bool:
        if name is None or name in self.feeders:
            return True
        reply("rejected", f"unknown feeder {name!r}; known: {sorted(self.feeders)}")
        return False

    def _cmd_feed_now(self, cmd_id, p: FeedNowParams, reply) -> None:
        if not self._known_feeder(p.feeder, reply):
            return
        name, dose = p.feeder, p.dose_g
        feeder = self.feeders[name]
        if feeder.fault is not None:
            reply("rejected", f"feeder {name} is locked out ({feeder.fault}); send clear_fault")
            return
        if feeder.busy or any(p.feeder == name for p in self._pending):
            reply("rejected", f"feeder {name} is busy")
            return
        spec = feeder.spec
        clamp = clamp_dose(float(dose), max_dose_g=min(spec.max_dose_g,
                                                       feeder.max_dose_for_motor_g()),
                           max_daily_g=spec.max_daily_g, fed_today_g=self._fed_today(name))
        clamped = (self._clamped(name, clamp, source="command", pond=spec.pond, cmd_id=cmd_id)
                   if clamp.clamped else None)
        if clamp.allowed_g < MIN_DOSE_G:
            reply("rejected", f"daily cap reached ({self._fed_today(name):g} of "
                  f"{spec.max_daily_g:g} g today)", clamped=clamped)
            return
        now = _iso(self.clock.now())
        # Try first, answer after: a feeding that starts is saved as in progress before
        # 'accepted' goes out (a unit killed just after answering then reports it cut
        # short, with this command's id); one that is skipped answers 'failed' itself.
        answers: list[tuple] = []
        p = Pending(feeder=name, pond=spec.pond, plan_g=clamp.allowed_g, source="command",
                    due=now, retry_until=now, cmd_id=cmd_id,
                    reply=lambda *answer, **_: answers.append(answer))
        settled = self._try(p)
        p.reply = reply
        if answers:
            reply(*answers[0])
            return
        reply("accepted", f"feeding {clamp.allowed_g:g} g", clamped=clamped)
        if not settled:
            self._pending.append(p)  # cannot happen for an idle feeder; kept for safety

    def _cmd_skip_next(self, cmd_id, p: SkipNextParams, reply) -> None:
        if p.zone is not None:
            reply("rejected", "a fish feeder has no zones")
            return
        if not self._known_feeder(p.feeder, reply):
            return
        targets = [p.feeder] if p.feeder else list(self.feeders)
        self.holds.skip(targets)
        self._save_holds()
        reply("done", f"next feeding skipped for {', '.join(targets)}")

    def _cmd_pause(self, cmd_id, p: PauseParams, reply) -> None:
        if not self.clock_synced():
            reply("rejected", "clock not synchronised: a time-bounded pause cannot be trusted")
            return
        until = p.until
        try:
            self.holds.pause(until, self.clock.now())
        except HoldRefused as exc:
            reply("rejected", str(exc))
            return
        self._save_holds()
        self.publisher.event("paused", until=_iso(until), cmd_id=cmd_id)
        reply("done", f"scheduled feedings paused until {_iso(until)}")

    def _cmd_resume(self, cmd_id, params, reply) -> None:
        pause = self.holds.resume()
        self._save_holds()
        if pause:
            self.publisher.event("resumed", reason="command", cmd_id=cmd_id)
        reply("done", "resumed" if pause else "was not paused")

    def _cmd_stop_all(self, cmd_id, params, reply) -> None:
        stopped = [f.name for f in self.feeders.values() if f.abort("stopped")]
        for p in self._pending:
            self._skipped(p, "stopped", stopped_by=cmd_id)
        self._pending = []
        self._save_pending()
        reply("done", f"stopped: {', '.join(stopped) or 'nothing was running'}")

    def _cmd_clear_fault(self, cmd_id, p: ClearFaultParams, reply) -> None:
        if not self._known_feeder(p.feeder, reply):
            return
        name = p.feeder
        fault = self.feeders[name].clear_fault()
        locks = self.state.get("ff.lockouts") or {}
        locks.pop(name, None)
        self.state.set("ff.lockouts", locks)
        if fault is None:
            reply("done", f"feeder {name} was not locked")
            return
        self.publisher.event("alarm_cleared", code=f"feeder_{fault}", feeder=name,
                             cleared_by="command", cmd_id=cmd_id,
                             message=f"feeder {name}: lockout cleared by an operator")
        reply("done", f"feeder {name} unlocked")

    # -- remote config --------------------------------------------------------------------------
    def apply_remote_config(self, version: int, body: dict) -> None:
        """Replace plans, species and thresholds of ponds; hard limits stay local.

        ``body`` is ``{"ponds": {name: {"plan": {...}, "species": ..., "thresholds":
        {...}}}}``; a pond it does not name runs its local plan. Raises ``ConfigError``
        (and changes nothing) when the body is invalid or older than the version in force.
        """
        where = f"remote config v{version}"
        if not isinstance(version, int) or version < 1:
            raise ConfigError(where, [("version", "must be a positive integer")])
        if version < self._remote_version:
            raise ConfigError(where, [("version", f"older than version {self._remote_version} "
                                                  "already in force")])
        ponds = self._validate_remote(where, body)
        if isinstance(body, RemoteBody):  # as the link decoded it: kept as it was sent
            body = body.model_dump(mode="json", exclude_unset=True)
        with self._lock:
            self._ponds = ponds
            self._thresholds_cache = {}
            self._remote_version = version
            self.state.set("ff.remote_config", {"version": version, "body": body})
            self._planner = self._feeding_planner()
        logger.info("remote config v%d in force", version)

    def _validate_remote(self, where: str, body) -> dict[str, PondSpec]:
        problems: list[tuple[str, str]] = []
        if isinstance(body, RemoteBody):  # decoded by the link with the protocol's model
            parsed = body
        else:
            if not isinstance(body, dict):
                raise ConfigError(where, [("(body)", "must be a JSON object")])
            problems = [(key, "not settable remotely: hardware and hard limits (max_dose_g, "
                         "max_daily_g, max_on_s) stay in the unit's local config")
                        for key in body if key != "ponds"]
            if problems:
                raise ConfigError(where, problems)
            try:
                parsed = RemoteBody.model_validate(body)
            except ValidationError as exc:
                raise ConfigError(where, list(config_problems(exc))) from None
        ponds = {p.name: p for p in self.config.ponds}
        for name, change in parsed.ponds.items():
            if name not in ponds:
                problems.append((f"ponds.{name}", f"no pond named {name!r} on this unit"))
                continue
            merged = ponds[name].model_dump()
            for key in ("species", "plan", "thresholds"):
                value = getattr(change, key)
                if value is not None:
                    merged[key] = value.model_dump() if hasattr(value, "model_dump") else value
            try:
                ponds[name] = PondSpec.model_validate(merged)
            except ValidationError as exc:
                problems += [(f"ponds.{name}.{f}", r) for f, r in config_problems(exc)]
        if problems:
            raise ConfigError(where, problems)
        return ponds

    def _load_remote_config(self) -> None:
        saved = self.state.get("ff.remote_config")
        if not saved:
            return
        try:
            self._ponds = self._validate_remote(f"remote config v{saved['version']}",
                                                saved["body"])
            self._thresholds_cache = {}
            self._remote_version = int(saved["version"])
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            logger.error("saved remote config no longer fits the local config: %s", exc)
            self.alarm("remote_config_invalid",
                       "the saved remote config does not fit the local config; running "
                       f"the local plan: {exc}")


APP = FishFeederApp
"""The app of this kind (``smartcity-edge`` picks it by the config's kind)."""
