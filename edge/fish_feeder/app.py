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
  stale policy applies (``inputs``: ``Inputs``);
- commands (``feed_now``, ``skip_next``, ``pause``, ``resume``, ``stop_all``,
  ``clear_fault``) and the controller's remote config (plans and thresholds only)
  (``commands``: ``RemoteControl``, whose methods the app has);
- durable state in the ``StateStore`` (keys ``ff.*``): today's totals per feeder and
  pond (the daily cap survives a restart), the feed log per pond and day (``ledger``:
  ``FeedLedger``), the pause and
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
from datetime import datetime, timedelta
from typing import Any, ClassVar

from protocol.kinds.fish_feeder import RemoteBody
from protocol.models import (
    MIN_DOSE_G,
    ReplyCode,
)
from protocol.planner import MAX_CATCH_UP, Plan, Site, StartPlanner

from ..app import App
from ..limits import Clamp
from ..outlook import OutlookCache
from .commands import RemoteControl
from .config import FishFeederConfig, PondSpec
from .devices import Feeder, FeedResult
from .inputs import Inputs
from .ledger import FeedLedger
from .pending import Pending, iso_utc, parse_utc
from .rules import (
    WaterQuality,
    hopper_days_left,
    next_rate_trim,
    plan_doses,
    split_ration,
)
from .species import thresholds_for

logger = logging.getLogger(__name__)

# MIN_DOSE_G (from protocol.models): a dose smaller than it is not worth turning a motor on
# for, and a feed_now asking less is refused.
QUANTITIES = ("do_mg_l", "temp_c", "ph")


class FishFeederApp(RemoteControl, App):
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
        self._latched: set[str] = set()
        self._started_at: datetime | None = None
        self.inputs = Inputs(config, clock=clock, pin_factory=pin_factory,
                             ports=dict(ports or {}), distance_sources=distance_sources or {},
                             alarm=self.alarm, raise_alarm=self._raise, clear_alarm=self._clear)
        self.sensors = self.inputs.sensors  # name -> driver
        self.values = self.inputs.values  # (sensor, quantity) -> SensorValue
        self.hoppers = self.inputs.hoppers  # feeder -> HopperGauge
        self.feeders: dict[str, Feeder] = {}
        for spec in config.feeders:
            hopper = self.inputs.build_hopper(spec)
            pulses = self.pulse_counter(spec.rotation_input) if spec.rotation_input else None
            self.feeders[spec.name] = Feeder(spec, self.outputs[spec.motor], clock,
                                             pulses=pulses, hopper=hopper)
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
        self.ledger = FeedLedger(config, self.state, clock, lambda: self.clock_synced())
        self.site = Site.from_config(config.site)
        self.holds = self._load_holds()
        self._planner = self._feeding_planner()
        self._mark: datetime | None = None  # feeding times up to here are handled
        self._outlook = OutlookCache()  # holds and next feeding, for the status
        self._alive: datetime | None = None  # the mark as saved (``ff.alive``)

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
            self.ledger.roll_day()
            self._recover()
        self.scheduler.every_s(self.config.water.poll_s, self.poll, "water_poll")
        self.poll()

    def tick(self) -> None:
        super().tick()
        try:
            with self._lock:
                self.ledger.roll_day()
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
            self.inputs.close()

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
            if parse_utc(p.retry_until) < now:
                self._skipped(p, "window_passed_during_restart")
            else:
                self._pending.append(p)
        # Feeding times that passed while the daemon was down (power cut, reboot) are
        # taken from the last moment it was alive (on a trusted clock).
        alive = self.state.get("ff.alive")
        self._alive = parse_utc(alive) if alive else None
        self._mark = now
        if alive and self.clock_synced():
            self._mark = max(parse_utc(alive), now - MAX_CATCH_UP)
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
            self._save_alive(now)  # these slots are handled: no catch-up

    def _slot_due(self, pond: str, hhmm: str, due: datetime, now: datetime,
                  late: str | None) -> None:
        doses = dict(self.pond_doses(pond))
        if hhmm not in doses:
            return
        feeders = self.config.feeders_of(pond)
        window = timedelta(seconds=self.config.interlocks.postpone_window_s)
        for spec, grams in zip(feeders, split_ration(doses[hhmm], len(feeders)), strict=True):
            p = Pending(feeder=spec.name, pond=pond, plan_g=grams, source="schedule",
                        due=iso_utc(due), retry_until=iso_utc(due + window), slot=hhmm)
            held = self.holds.reason(now, rain_delay=False)
            if late is not None:
                self._skipped(p, late, due=iso_utc(due))
            elif not self.clock_synced():
                self._skipped(p, "clock_not_synced")
            elif held is not None:
                self._skipped(p, held, until=iso_utc(self.holds.paused_until))
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
        pct = self.inputs.empty_hopper(p.feeder)
        if pct is not None:
            return self._skipped(p, "hopper_empty", hopper_pct=pct)
        decision = self.inputs.interlock(self.thresholds(p.pond), self._ponds[p.pond].sensors)
        if decision.action == "skip":
            return self._skipped(p, decision.reason, **decision.details)
        if decision.action == "postpone":
            if now < parse_utc(p.retry_until):
                if not p.postponed:
                    p.postponed = True
                    self.publisher.event(
                        "feeding_postponed", pond=p.pond, feeder=p.feeder, slot=p.slot,
                        plan_g=p.plan_g, reason=decision.reason, retry_until=p.retry_until,
                        source=p.source, **decision.details)
                    self._save_pending()
                return False
            waited = (now - parse_utc(p.due)).total_seconds()
            return self._skipped(p, decision.reason, waited_s=round(waited), **decision.details)
        asked = round(p.plan_g * decision.factor, 1)
        clamp = self.ledger.clamp(feeder, asked)
        if clamp.clamped:
            self._clamped(p.feeder, clamp, source=p.source, pond=p.pond, cmd_id=p.cmd_id)
        if clamp.allowed_g < MIN_DOSE_G:
            return self._skipped(p, "daily_cap_reached", asked_g=asked,
                                 max_daily_g=spec.max_daily_g)
        dose = clamp.allowed_g
        feeding = {"id": uuid.uuid4().hex, "pond": p.pond, "planned_g": dose,
                   "reserved_g": dose, "started_at": iso_utc(now), "source": p.source,
                   **({"cmd_id": p.cmd_id} if p.cmd_id else {})}
        runs = self.state.get("ff.in_progress") or {}
        runs[p.feeder] = feeding
        # Reserved until measured, in the transaction that saves the feeding in progress.
        self.ledger.add(p.feeder, p.pond, commanded_g=dose, also={"ff.in_progress": runs})
        info = {"plan_g": p.plan_g, "factor": decision.factor, "reduced_by": decision.reason,
                "slot": p.slot, "source": p.source, "cmd_id": p.cmd_id}
        try:
            feeder.start(dose, lambda result: self._fed(p, feeding, info, result))
        except (RuntimeError, ValueError) as exc:
            runs.pop(p.feeder, None)
            self.ledger.add(p.feeder, p.pond, commanded_g=-dose, also={"ff.in_progress": runs})
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
            self.ledger.add(p.feeder, p.pond,
                            commanded_g=result.commanded_g - feeding["reserved_g"],
                            measured_g=measured,
                            also={"ff.in_progress": runs,
                                  "ff.feed_log": self.ledger.logged(p.pond, result, measured)})
            self.event_once(f"feed_dispensed:{feeding['id']}", "feed_dispensed", **report)
            runs.pop(p.feeder, None)
            self.state.set("ff.in_progress", runs)
            self._learn_rate(p.feeder, result)
            if result.fault in ("jam", "no_feed"):
                code = "feeder_jam" if result.fault == "jam" else "feeder_no_feed"
                what = ("no rotation" if result.fault == "jam"
                        else "the auger turns but the hopper weight does not drop")
                locks = self.state.get("ff.lockouts") or {}
                locks[p.feeder] = {"code": code, "since": iso_utc(self.clock.now())}
                self.state.set("ff.lockouts", locks)
                self.alarm(code, f"feeder {p.feeder}: {what} within "
                           f"{self.feeders[p.feeder].spec.confirm_timeout_s:g} s; motor off, "
                           "feeder locked until clear_fault or a restart",
                           feeder=p.feeder, pond=p.pond, dispensed_g=measured)
            if p.reply is not None:
                if result.fault is None:
                    p.reply("done", ReplyCode.FEEDING_DONE, feeder=p.feeder,
                            dispensed_g=round(measured, 1),
                            planned_g=round(result.planned_g, 1))
                else:
                    p.reply("failed", ReplyCode.FEEDING_FAILED, feeder=p.feeder,
                            fault=result.fault, dispensed_g=round(measured, 1))

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
            p.reply("failed", ReplyCode.FEEDING_SKIPPED, feeder=p.feeder, reason=reason)
        return True

    def _clamped(self, feeder: str, clamp, **details) -> dict:
        c = Clamp("dose_g", clamp.asked_g, clamp.allowed_g, clamp.limit)
        self.publisher.event("limit_clamped", feeder=feeder, **c.as_dict(),
                             **{k: v for k, v in details.items() if v is not None})
        return c.as_dict()

    # -- daily totals (edge.fish_feeder.ledger) -------------------------------------------------
    def _fed_today(self, feeder: str) -> float:
        """Grams a feeder was told to give today (what the daily cap counts)."""
        return self.ledger.commanded_today(feeder)

    def fed_today_g(self, name: str) -> float:
        """Grams that went out today (measured), for a pond or a feeder name."""
        return self.ledger.fed_today_g(name)

    def feed_log(self) -> dict:
        """``{pond: {day: {measured_g, commanded_g, feedings}}}`` for feed-conversion reports."""
        return self.ledger.feed_log()

    # -- sensors (edge.fish_feeder.inputs) ----------------------------------------------------
    def poll(self) -> None:
        """Read every water-quality sensor and idle hopper; raise and clear alarms."""
        with self._lock:
            self.inputs.read(busy=lambda name: self.feeders[name].busy)
            self.inputs.check_alarms(self._started_at, self.feeder_daily_plan_g)
            if self.clock_synced() and self._mark is not None:
                # For catching up after a power cut: feeding times up to the mark are
                # handled (not ``now``: one may have fallen due since the last tick).
                self._save_alive(self._mark)

    def _save_alive(self, mark: datetime) -> None:
        """Save ``mark`` as the catch-up mark if a feeding time lies between the saved
        one and it (a restart from the saved one would take that feeding up again).
        Otherwise a restart from either finds the same feeding times: the state file is
        not written (a unit's storage wears with every write)."""
        if self._alive is not None and not self._planner.between(self._alive, mark):
            return
        self.state.set("ff.alive", iso_utc(mark))
        self._alive = mark

    def water_quality(self, pond: str) -> WaterQuality:
        return self.inputs.water_quality(self._ponds[pond].sensors)

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

APP = FishFeederApp
"""The app of this kind (``smartcity-edge`` picks it by the config's kind)."""
