"""The irrigation daemon: ``IrrigationApp`` wires the rules to the valves and sensors.

One method, ``_step()``, moves everything forward. It runs on every ``tick()`` of the
service loop and, through a wake-up timer on the injected clock, at the exact moment
something is due (a cycle ends, a master valve's delay is over, a program starts), so a
valve closes on time even between ticks and a ``VirtualClock`` test runs a week in
seconds. Each step:

1. accounts water time and litres of what is flowing, rolls the daily totals at local
   midnight;
2. reads the debounced rain switch, the flow rate, the soil probes' staleness;
3. ends cycles that are due, raises leak and no-flow alarms;
4. turns program starts that fell due into queued runs (or ``run_skipped`` events), and
   starts sensor runs where the soil is dry;
5. starts what the queue, the sequential groups, the cap on concurrent zones and the
   daily water budget allow (``rules.pick_startable``), and drives the master valve or
   pump with its delays;
6. saves what must survive a restart (``StateStore``).

A *run* is one zone watered for a planned time, possibly in several cycles with soaks in
between; events are ``run_started`` (first cycle), ``run_finished`` (with ``duration_s``
of water, ``litres`` and how it ``ended``), or ``run_skipped`` (with the ``reason``) when
it never ran. Runs queue; nothing is silently dropped.

A run is saved before it is announced and before its valve opens; its reports are stored
once per run (``App.event_once``, keys ``run_started:<run id>:<created>``,
``run_finished:...``, ``run_skipped:...``). The outbox and the state file are two files,
so a kill can fall between a report and the save after it; the next start asks the
outbox what was reported (``_recover_runs``) and neither reports a run twice nor waters
again a run that had ended.
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from protocol.holds import ALL, HoldRefused, Holds
from protocol.models import PauseParams, RainDelayParams, RunZoneParams, SkipNextParams
from protocol.planner import MAX_CATCH_UP, Plan, Site, StartPlanner

from ..app import App, command_params
from ..errors import ConfigError
from ..sensors.base import SensorError, SensorValue
from .config import IrrigationConfig, IrrigationProgramConfig, parse_program
from .devices import build_devices
from .rules import (
    MIN_RUN_S,
    Candidate,
    Debouncer,
    FlowRate,
    adjusted_s,
    clamp,
    moisture_gate,
    moisture_need,
    pick_startable,
    split_cycles,
)

logger = logging.getLogger(__name__)

STATE_PROGRAM = "irrigation.program"
STATE_HOLDS = "irrigation.holds"
STATE_TODAY = "irrigation.today"
STATE_RUNS = "irrigation.runs"
STATE_ZONES = "irrigation.zones"
STATE_MARK = "irrigation.schedule_mark"

MASTER_MARGIN_S = 1.0
"""A run may start only if the master's maximum on-time still covers it by this much."""
END_TOLERANCE_S = 0.5
"""A valve forced off this close to its planned end simply finished."""
_EPS = 1e-6


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat()


def _dt(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text)


def _planner(program: IrrigationProgramConfig, site: Site) -> StartPlanner:
    return StartPlanner([Plan.of(p) for p in program.programs], site)


def _key(event: str, run: Run) -> str:
    """The outbox key of a report made once per run."""
    return f"{event}:{run.run_id}:{run.created}"


@dataclass
class Run:
    """One zone watered for a planned time, in one or more cycles."""

    run_id: str
    zone: str
    trigger: str  # schedule | sensor | manual
    cycles: list[float]  # cycle lengths still to do, the running one first
    soak_s: float
    planned_s: float
    seq: int = 0
    program: str | None = None
    planned_at: str | None = None  # local time of the planned start
    cmd_id: str | None = None
    created: str = ""
    state: str = "queued"  # queued | active | soaking
    started: str | None = None
    done_s: float = 0.0
    cycle_done_s: float = 0.0
    litres: float = 0.0
    cycles_done: int = 0
    resumed: bool = False
    resumed_reported: bool = False
    interruptions: int = 0  # run_interrupted reports saved with the run
    # in this process only
    not_before: float = field(default=0.0, metadata={"runtime": True})
    cycle_s: float = field(default=0.0, metadata={"runtime": True})
    valve_open: bool = field(default=False, metadata={"runtime": True})
    water_since: float | None = field(default=None, metadata={"runtime": True})
    acct_mark: float = field(default=0.0, metadata={"runtime": True})
    announce: bool = field(default=False, metadata={"runtime": True})  # run_started due

    @property
    def automatic(self) -> bool:
        return self.trigger != "manual"

    def to_doc(self) -> dict:
        doc = {f.name: getattr(self, f.name) for f in fields(self)
               if not f.metadata.get("runtime")}
        doc["cycles"] = list(self.cycles)
        return doc

    @classmethod
    def from_doc(cls, doc: dict) -> Run:
        return cls(**doc)

    def details(self) -> dict:
        d: dict[str, Any] = {"run_id": self.run_id, "zone": self.zone, "trigger": self.trigger}
        if self.program:
            d["program"] = self.program
        if self.planned_at:
            d["planned_at"] = self.planned_at
        if self.cmd_id:
            d["cmd_id"] = self.cmd_id
        if self.resumed:
            d["resumed"] = True
        return d


class _Reject(Exception):
    """A command that cannot be accepted; the text goes back in the reply."""


@dataclass
class _ZoneState:
    latched: bool = False
    last_sensor_start: datetime | None = None
    blocked: str | None = None


class IrrigationApp(App):
    """Park watering: zones on valves, schedules, sensor rules, overrides, hard limits."""

    kind = "irrigation"
    schedule_model = IrrigationProgramConfig

    def __init__(self, config: IrrigationConfig, *, pin_factory, clock, publisher,
                 state=None, clock_synced=None, soil_readers=None):
        # The base class builds every output, off, before anything else happens.
        super().__init__(config, pin_factory=pin_factory, clock=clock, publisher=publisher,
                         state=state, clock_synced=clock_synced)
        self._lock = threading.RLock()
        self.site = Site.from_config(config.site)
        self.zones = config.zone_map()
        self._zone_by_valve = {z.valve: z.name for z in config.zones}
        self.devices = build_devices(config, self, soil_readers=soil_readers)
        self._debounce = Debouncer(config.rain.debounce_s) if config.rain else None
        self._flow_rate = (FlowRate(config.flow.pulses_per_l, config.flow.window_s)
                           if config.flow else None)
        self._soil = {zone: SensorValue() for zone in self.devices.soil}
        self._soil_stale = dict.fromkeys(self.devices.soil, False)
        self._soil_errors = dict.fromkeys(self.devices.soil, 0)

        self.program, self._program_version = self._load_program()
        self._planner = _planner(self.program, self.site)
        self._load_state()

        self.raining = False
        self.leak_active = False
        self._supply = "off"  # off | pre | on | post
        self._supply_until = 0.0
        self._master_rest = False
        self._released: list[str] = []
        self._draining: set[str] = set()
        self._replies: dict[str, Any] = {}
        self._wake_handle = None
        self._wake_at: float | None = None
        self._last_count: int | None = None
        self._quiet_since: float | None = clock.monotonic()
        self._leak_since: float | None = None
        self._dry_since: float | None = None
        self._last_save = float("-inf")
        self._saved: dict[str, Any] = {}
        self._dirty = True
        self._started_at: datetime | None = None
        self._failing = False

    # ------------------------------------------------------------------ durable state
    def _load_program(self) -> tuple[IrrigationProgramConfig, int]:
        doc = self.state.get(STATE_PROGRAM)
        if doc:
            try:
                return (parse_program(doc["body"], self.zones,
                                      f"saved remote config v{doc['version']}"),
                        int(doc["version"]))
            except (ConfigError, KeyError, TypeError, ValueError) as exc:
                logger.error("saved remote config no longer fits this unit: %s", exc)
                self.alarm("config_invalid", "saved remote config no longer fits the local "
                           "config; running the local default program", error=str(exc))
        return self.config.program, 0

    def _load_state(self) -> None:
        holds = self.state.get(STATE_HOLDS) or {}
        self.holds = Holds.from_doc(holds)
        self.faults: dict[str, str] = {z: r for z, r in holds.get("faults", {}).items()
                                       if z in self.zones}
        self.today: dict = self.state.get(STATE_TODAY) or {}
        runs = []
        for doc in self.state.get(STATE_RUNS) or []:
            try:
                run = Run.from_doc(doc)
            except TypeError:
                logger.error("dropping an unreadable saved run: %r", doc)
                continue
            if run.zone in self.zones:
                runs.append(run)
        self.runs: list[Run] = runs
        self._seq = itertools.count(max((r.seq for r in runs), default=0) + 1)
        zones = self.state.get(STATE_ZONES) or {}
        self._zone_state = {
            z: _ZoneState(latched=bool(zones.get(z, {}).get("latched", False)),
                          last_sensor_start=_dt(zones.get(z, {}).get("last_sensor_start")))
            for z in self.zones
        }
        self._mark = _dt(self.state.get(STATE_MARK))
        self._next_start = None  # the next planned start after _next_from (a cache)
        self._next_from: datetime | None = None  # None: not computed yet

    def _docs(self) -> dict[str, Any]:
        return {
            STATE_HOLDS: {**self.holds.to_doc(), "faults": dict(self.faults)},
            STATE_TODAY: self.today,
            STATE_RUNS: [r.to_doc() for r in self.runs],
            STATE_ZONES: {z: {"latched": s.latched,
                              "last_sensor_start": _iso(s.last_sensor_start)}
                          for z, s in self._zone_state.items()},
            STATE_MARK: _iso(self._mark),
        }

    def _save(self, mono: float, force: bool = False) -> None:
        if not (force or self._dirty or mono - self._last_save >= self.config.runs.checkpoint_s):
            return
        changed = {key: doc for key, doc in self._docs().items() if self._saved.get(key) != doc}
        if changed:
            self.state.set_many(changed)  # one transaction: runs and totals agree on disk
            for key, doc in changed.items():
                self._saved[key] = _copy(doc)
        self._last_save = mono
        self._dirty = False

    @property
    def current_config_version(self) -> int:
        """Version of the program in force (0: the local file's default program)."""
        return self._program_version

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        super().start()
        if self.devices.soil:
            self.scheduler.every_s(self.config.soil.poll_s, self._poll_soil, "soil")
        with self._lock:
            self._started_at = self.clock.now()
            self._recover_runs()
        self._poll_soil()
        with self._lock:
            self._step_safe()

    def tick(self) -> None:
        super().tick()
        with self._lock:
            self._step_safe()

    def busy(self) -> bool:
        """A run is queued, watering or soaking between cycles, or an output is on."""
        with self._lock:
            return bool(self.runs) or super().busy()

    def close(self) -> None:
        if self._closed:
            return
        with self._lock:
            try:
                self._cancel_wake()
                self._account(self.clock.monotonic())
            except Exception:  # noqa: BLE001 - outputs must go off whatever happens
                logger.exception("accounting at close failed")
            finally:
                super().close()  # every output off
            try:
                now = self.clock.now()
                for run in list(self.runs):
                    run.valve_open = False
                    self._finish(run, "shutdown", now)
                self._supply = "off"
                self._save(self.clock.monotonic(), force=True)
            except Exception:  # noqa: BLE001 - still close the devices
                logger.exception("saving state at close failed")
            finally:
                self.devices.close()

    def _recover_runs(self) -> None:
        """After an unclean stop: settle runs whose end was reported, record interrupted
        runs, then resume or drop them.

        Reports go to the outbox and runs to the state file, two files, and a kill can
        fall between the two writes. So each report is stored under a key and this start
        asks the outbox what was reported:

        - a run whose ``run_finished`` (or ``run_skipped``) is stored had ended, and only
          the save that removes it was lost: it is removed, never resumed;
        - a run saved as started is announced (``run_started``, stored once: the run is
          saved before it is announced, so it may be missing), then reported interrupted
          under the key (run, creation, interruptions saved so far). A start killed
          before its own save below reports it again under the same key, which the
          outbox stores once; the key changes only when the run is saved again.

        A run of which the outbox cannot say whether it ended is dropped, not resumed."""
        mono = self.clock.monotonic()
        policy = self.config.runs.on_interrupted
        for run in list(self.runs):
            ended = self._end_reported(run)
            if ended:
                logger.warning("run %s had ended before the unit stopped (its end is "
                               "reported, its removal was not saved): removed", run.run_id)
                self.runs.remove(run)
                continue
            if run.state == "queued":
                continue
            remaining = list(run.cycles)
            if run.state == "active" and remaining:
                remaining[0] = max(0.0, remaining[0] - run.cycle_done_s)
            remaining = [c for c in remaining if c >= MIN_RUN_S]
            resume = policy == "resume" and bool(remaining)
            if resume and ended is None:
                logger.error("cannot tell whether run %s ended (outbox unreadable): "
                             "dropped, not resumed", run.run_id)
                resume = False
            action = "resumed" if resume else "dropped"
            self._report_started(run, started=run.started)
            run.interruptions += 1
            self.event_once(
                f"run_interrupted:{run.run_id}:{run.created}:{run.interruptions}",
                "run_interrupted", **run.details(), started=run.started,
                planned_s=round(run.planned_s, 1), done_s=round(run.done_s, 1),
                remaining_s=round(sum(remaining), 1), action=action, policy=policy)
            logger.warning("run %s was interrupted; %s", run.run_id, action)
            if action == "dropped":
                self.runs.remove(run)
                continue
            run.cycles, run.state, run.resumed = remaining, "soaking", True
            run.resumed_reported = False
            run.cycle_done_s, run.not_before = 0.0, mono
        self._dirty = True
        self._save(mono, force=True)

    def _end_reported(self, run: Run) -> bool | None:
        """Whether the run's ``run_finished`` or ``run_skipped`` is stored (None: the
        outbox cannot tell)."""
        answers = [self.event_stored(_key("run_finished", run)),
                   self.event_stored(_key("run_skipped", run))]
        if True in answers:
            return True
        return None if None in answers else False

    # ------------------------------------------------------------------ the step
    def _wake(self) -> None:
        with self._lock:
            self._wake_handle = None
            self._wake_at = None
            self._step_safe()

    def _cancel_wake(self) -> None:
        if self._wake_handle is not None:
            self._wake_handle.cancel()
        self._wake_handle = None
        self._wake_at = None

    def _step_safe(self) -> None:
        if self._closed:
            return
        try:
            self._step()
        except Exception as exc:  # noqa: BLE001 - fail closed, keep the daemon alive
            logger.exception("irrigation step failed; every output off")
            self._fail_safe(exc)
        else:
            self._failing = False

    def _fail_safe(self, exc: BaseException) -> None:
        try:
            self._cut_supply()
            self.outputs.all_off()
        finally:
            now = self.clock.now()
            for run in list(self.runs):
                if run.state != "queued":
                    self._finish(run, "error", now)
            if not self._failing:  # one alarm per failure streak, not one per tick
                self._failing = True
                self.alarm("engine_error",
                           f"irrigation step failed: {exc}; every output is off")

    def _step(self) -> None:
        now, mono = self.clock.now(), self.clock.monotonic()
        self._account(mono)
        self._roll_day(now)
        self._read_rain(now, mono)
        self._end_due_cycles(now, mono)
        self._check_flow(now, mono)
        self._check_soil(now)
        self._check_schedule(now)
        self._sensor_runs(now)
        self._expire_queue(now)
        self._dispatch(now, mono)
        self._save(mono)  # a run is on disk as active before its valve opens
        self._announce_started()  # ... and before it is announced
        self._drive_supply(mono)
        self._save(mono)
        self._arm(now, mono)

    # -- accounting -----------------------------------------------------------------
    def _zone_today(self, zone: str) -> dict:
        return self.today.setdefault("zones", {}).setdefault(zone, {"water_s": 0.0,
                                                                     "litres": 0.0})

    def _used_today_s(self) -> float:
        return sum(z["water_s"] for z in self.today.get("zones", {}).values())

    def _account(self, mono: float) -> None:
        flowing = [r for r in self.runs if r.state == "active" and r.water_since is not None]
        for r in flowing:
            upto = min(mono, r.water_since + r.cycle_s)
            dt = max(0.0, upto - r.acct_mark)
            r.acct_mark = max(r.acct_mark, upto)
            r.done_s += dt
            r.cycle_done_s += dt
            self._zone_today(r.zone)["water_s"] += dt
        if self.devices.flow is None:
            return
        count = self.devices.flow.count
        self._flow_rate.add(mono, count)
        if self._last_count is None:
            self._last_count = count
            return
        litres = self.devices.flow.litres(count - self._last_count)
        self._last_count = count
        if litres <= 0:
            return
        self.today["meter_l"] = self.today.get("meter_l", 0.0) + litres
        if not flowing:
            self.today["other_l"] = self.today.get("other_l", 0.0) + litres
            return
        weights = [self.zones[r.zone].flow_lpm or 1.0 for r in flowing]
        total = sum(weights)
        for r, w in zip(flowing, weights, strict=True):
            share = litres * w / total
            r.litres += share
            self._zone_today(r.zone)["litres"] += share

    def _roll_day(self, now: datetime) -> None:
        day = now.astimezone(self.site.tz).date().isoformat()
        if self.today.get("date") == day:
            return
        if self.today.get("date"):
            logger.info("day %s: %.1f water min, %.0f L", self.today["date"],
                        self._used_today_s() / 60, self.today.get("meter_l", 0.0))
        self.today = {"date": day, "zones": {}, "meter_l": 0.0, "other_l": 0.0}
        self._dirty = True

    # -- inputs ---------------------------------------------------------------------
    def _read_rain(self, now: datetime, mono: float) -> None:
        if self.devices.rain is None:
            return
        wet = self._debounce.update(self.devices.rain.wet, mono)
        delay = timedelta(hours=self.program.rain_delay_h)
        if wet and not self.raining:
            self.raining = True
            logger.info("rain sensor wet: stopping automatic runs")
            for run in [r for r in self.runs if r.automatic]:
                self._stop(run, "rain", now)
            self._settle_outputs()
        elif not wet and self.raining:
            self.raining = False
            logger.info("rain sensor dry: rain delay of %.1f h", self.program.rain_delay_h)
            self.holds.extend_rain_delay(now + delay)
            self._dirty = True
        if self.raining:
            # The delay runs from the last moment the sensor was wet.
            if self.holds.extend_rain_delay(now + delay, slack=timedelta(minutes=1)):
                self._dirty = True

    def _poll_soil(self) -> None:
        """Read every soil probe (outside the lock: a serial read may take a while)."""
        for zone, reader in self.devices.soil.items():
            try:
                value = float(reader.read())
            except SensorError as exc:
                logger.debug("soil probe of %s: %s", zone, exc)
                self._soil_errors[zone] += 1
                continue
            except Exception:  # noqa: BLE001 - a driver bug must not stop the others
                logger.exception("soil probe of %s failed", zone)
                self._soil_errors[zone] += 1
                continue
            with self._lock:
                self._soil[zone].update(value, self.clock.now())

    def _is_stale(self, zone: str, now: datetime) -> bool:
        rule = self.program.rules_for(zone).moisture
        max_age = (rule.stale_after_min if rule else 30.0) * 60.0
        value = self._soil[zone]
        if value.reading is None:
            since = self._started_at or now
            return (now - since).total_seconds() > max_age
        return value.is_stale(now, max_age)

    def _check_soil(self, now: datetime) -> None:
        for zone, value in self._soil.items():
            stale = self._is_stale(zone, now)
            if stale != self._soil_stale[zone]:
                self._soil_stale[zone] = stale
                rule = self.program.rules_for(zone).moisture
                fallback = rule.on_stale if rule else "schedule"
                if stale:
                    self.alarm("sensor_stale",
                               f"soil probe of {zone} gave no good reading; zone falls back "
                               f"to: {fallback}", zone=zone, fallback=fallback,
                               last_reading=_iso(value.reading.ts if value.reading else None))
                else:
                    logger.info("soil probe of %s reads again", zone)
                    self.publisher.event("alarm_cleared", code="sensor_stale",
                                         message=f"soil probe of {zone} reads again",
                                         zone=zone, moisture_pct=round(value.value, 1))
            rule = self.program.rules_for(zone).moisture
            if not stale and rule is not None and value.value is not None:
                zs = self._zone_state[zone]
                latched = moisture_need(zs.latched, value.value, rule)
                if latched != zs.latched:
                    zs.latched = latched
                    self._dirty = True

    def _moisture_gate(self, zone: str, now: datetime) -> str | None:
        if zone not in self._soil:
            return None
        rule = self.program.rules_for(zone).moisture
        return moisture_gate(self._soil[zone].value, self._soil_stale[zone], rule)

    def _hold_reason(self, now: datetime, trigger: str = "schedule") -> str | None:
        """Why no automatic run may start now, or None.

        A rain delay holds scheduled runs; a run a soil probe asks for waits only while
        it is raining (the probe sees what the rain did to the soil).
        """
        if self.holds.expire(now):
            self._dirty = True
        if self.holds.reason(now) == "paused":
            return "paused"
        if self.raining:
            return "rain"
        reason = self.holds.reason(now, rain_delay=trigger != "sensor")
        if reason is not None:
            return reason
        if self.leak_active:
            return "leak"
        return None

    # -- flow -----------------------------------------------------------------------
    def _check_flow(self, now: datetime, mono: float) -> None:
        spec = self.config.flow
        if spec is None:
            return
        lpm = self._flow_rate.lpm
        quiet = (self._quiet_since is not None and mono - self._quiet_since >= spec.settle_s
                 and (lpm >= spec.leak_lpm or self.leak_active) and not self.outputs.any_on())
        if quiet and lpm >= spec.leak_lpm:
            self._dry_since = None
            if self._leak_since is None:
                self._leak_since = mono
            if not self.leak_active and mono - self._leak_since >= spec.leak_s:
                self.leak_active = True
                self.outputs.all_off()
                self.alarm("leak", f"{lpm:.1f} L/min flowing with every valve closed",
                           flow_lpm=round(lpm, 2), outputs=self.outputs.states())
        else:
            self._leak_since = None
            if self.leak_active and quiet:
                if self._dry_since is None:
                    self._dry_since = mono
                if mono - self._dry_since >= spec.leak_s:
                    self.leak_active = False
                    self._dry_since = None
                    logger.info("leak cleared")
                    self.publisher.event("alarm_cleared", code="leak",
                                         message="no more flow with every valve closed",
                                         flow_lpm=round(lpm, 2))
        # No flow: a zone has had water for no_flow_s, and the meter shows (almost) none.
        dead = [r for r in self.runs if r.state == "active" and r.water_since is not None
                and mono - r.water_since >= spec.no_flow_s
                and self._flow_rate.covered_s() >= min(spec.window_s, spec.no_flow_s) - _EPS]
        if dead and lpm < spec.no_flow_below_lpm:
            zones = sorted(r.zone for r in dead)
            for run in dead:
                self.faults[run.zone] = "no_flow"
                self._stop(run, "no_flow", now)
            self._dirty = True
            self._settle_outputs()
            self.alarm("no_flow", f"valve open but {lpm:.2f} L/min through the meter: "
                       f"zone(s) {', '.join(zones)} stopped", zones=zones,
                       flow_lpm=round(lpm, 2), outputs=self.outputs.states())

    # -- the schedule -----------------------------------------------------------------
    def _check_schedule(self, now: datetime) -> None:
        if self._mark is None or now < self._mark:
            self._mark = self._next_from = now  # first step, or the clock was stepped back
            self._next_start = self._planner.next_after(now)
            return
        if self._next_from is not None and self._next_from <= self._mark:
            nxt = self._next_start
            horizon = nxt.at if nxt is not None else self._next_from + timedelta(days=7)
            if now < horizon:
                self._mark = now  # nothing falls due before the next start: no expansion
                return
        after = max(self._mark, now - MAX_CATCH_UP)
        for planned in self._planner.between(after, now):
            self._planned_start(planned, now)
        self._mark = now
        self._next_start, self._next_from = self._planner.next_after(now), now

    def _planned_start(self, planned, now: datetime) -> None:
        program = next((p for p in self.program.programs if p.name == planned.program), None)
        if program is None:
            return
        base = {"trigger": "schedule", "program": program.name,
                "planned_at": planned.at.isoformat()}
        zones = [pz.zone for pz in program.zones]
        late_s = (now - planned.at).total_seconds()
        if late_s > self.config.runs.late_start_grace_s:
            reason = "missed"
        elif not self.clock_synced():
            reason = "clock_not_synced"
        elif self.holds.take_skip(ALL):
            self._dirty = True
            reason = "skip_next"
        else:
            reason = self._hold_reason(now)
        if reason is not None:
            self.publisher.event("run_skipped", zones=zones, reason=reason, **base)
            return
        for pz in program.zones:
            run_id = f"{program.name}@{planned.at:%Y-%m-%dT%H:%M}:{pz.zone}"
            total = adjusted_s(pz.duration_min, self.program.watering_pct, program.watering_pct)
            if self.holds.take_skip(pz.zone):
                self._dirty = True
                reason = "skip_next"
            elif pz.zone in self.faults:
                reason = "zone_fault"
            elif total < MIN_RUN_S:
                reason = "watering_pct"
            else:
                reason = self._moisture_gate(pz.zone, now)
            if reason is not None:
                self.publisher.event("run_skipped", run_id=run_id, zone=pz.zone, reason=reason,
                                     **self._moisture_detail(pz.zone), **base)
                continue
            self._enqueue(run_id, pz.zone, "schedule", total, now, program=program.name,
                          planned_at=planned.at.isoformat())

    def _moisture_detail(self, zone: str) -> dict:
        if zone in self._soil and self._soil[zone].value is not None:
            return {"moisture_pct": round(self._soil[zone].value, 1)}
        return {}

    def _sensor_runs(self, now: datetime) -> None:
        for zone in self._soil:
            rule = self.program.rules_for(zone).moisture
            if rule is None or rule.start_below_pct is None:
                continue
            zs = self._zone_state[zone]
            if self._soil_stale[zone] or not zs.latched:
                zs.blocked = None
                continue
            if any(r.zone == zone for r in self.runs):
                continue
            if zs.last_sensor_start is not None:
                since = (now - zs.last_sensor_start).total_seconds()
                if since < 0:  # the clock was stepped back
                    zs.last_sensor_start = now
                    continue
                if since < rule.min_interval_min * 60:
                    continue
            reason = self._hold_reason(now, "sensor")
            if reason is None and zone in self.faults:
                reason = "zone_fault"
            if reason is None and self._budget_left_s() < MIN_RUN_S:
                reason = "daily_limit"
            if reason is not None:
                if zs.blocked != reason:
                    zs.blocked = reason
                    self.publisher.event("run_skipped", zone=zone, trigger="sensor",
                                         reason=reason, **self._moisture_detail(zone))
                continue
            zs.blocked = None
            zs.last_sensor_start = now
            self._dirty = True
            run_id = f"sensor:{zone}:{now.astimezone(self.site.tz):%Y-%m-%dT%H:%M:%S}"
            self._enqueue(run_id, zone, "sensor", rule.run_min * 60.0, now)

    def _zone_max_cycle_s(self, zone: str) -> tuple[float, str, float]:
        """The longest cycle a zone may run, the output that limits it and that output's
        configured ``max_on_s`` (the cycle is shorter by the master's delays and margin)."""
        valve = self.devices.valves[zone]
        m = self.config.master
        if m is None:
            return valve.max_on_s, valve.name, valve.max_on_s
        master = self.devices.master
        if m.kind == "valve":
            candidates = [(valve.max_on_s, valve.name, valve.max_on_s),
                          (master.max_on_s - m.pre_s - m.post_s - MASTER_MARGIN_S, master.name,
                           master.max_on_s)]
        else:
            candidates = [(valve.max_on_s - m.pre_s - m.post_s, valve.name, valve.max_on_s),
                          (master.max_on_s - MASTER_MARGIN_S, master.name, master.max_on_s)]
        return min(candidates)

    def _enqueue(self, run_id: str, zone: str, trigger: str, total_s: float, now: datetime,
                 *, program: str | None = None, planned_at: str | None = None,
                 cmd_id: str | None = None, split: bool = True) -> tuple[Run, list]:
        rules = self.program.rules_for(zone)
        cycle_s = rules.cycle_min * 60.0 if (split and rules.cycle_min) else None
        cycles = split_cycles(total_s, cycle_s)
        zmax, output, max_on_s = self._zone_max_cycle_s(zone)
        clamps = []
        if cycles and max(cycles) > zmax:
            cycles = [min(c, zmax) for c in cycles]
            _, c = clamp(total_s, sum(cycles), "duration_s", "max_on_s")
            clamps.append((c, {"output": output, "max_on_s": round(max_on_s, 1)}))
        run = Run(run_id=run_id, zone=zone, trigger=trigger, cycles=cycles,
                  soak_s=rules.soak_min * 60.0 if len(cycles) > 1 else 0.0,
                  planned_s=sum(cycles), seq=next(self._seq), program=program,
                  planned_at=planned_at, cmd_id=cmd_id, created=now.isoformat())
        for c, extra in clamps:
            self._report_clamp(c, run, **extra)
        self.runs.append(run)
        self._dirty = True
        logger.info("queued %s: %s for %.0f s in %d cycle(s)", run_id, zone, run.planned_s,
                    len(cycles))
        return run, [c for c, _ in clamps]

    def _report_clamp(self, c, run: Run, **extra) -> None:
        self.publisher.event("limit_clamped", **c.as_dict(), run_id=run.run_id, zone=run.zone,
                             **({"cmd_id": run.cmd_id} if run.cmd_id else {}), **extra)

    def _expire_queue(self, now: datetime) -> None:
        max_wait = timedelta(minutes=self.config.runs.max_queue_wait_min)
        for run in [r for r in self.runs if r.state == "queued"]:
            created = _dt(run.created)
            if created is not None and now - created > max_wait:
                self._finish(run, "queue_timeout", now)

    # -- starting and ending ------------------------------------------------------------
    def _budget_left_s(self, exclude: Run | None = None) -> float:
        """Water seconds left today: the daily limit less what ran and what the started
        runs (but ``exclude``) still have to do. A run holds its announced water from its
        first cycle to its end, so its later cycles are never cut by other zones."""
        committed = sum(max(0.0, sum(r.cycles) - r.cycle_done_s) for r in self.runs
                        if r is not exclude and r.started is not None and r.state != "queued")
        return self.config.limits.max_daily_water_min * 60.0 - self._used_today_s() - committed

    def _master_budget_ok(self, cycle_s: float, mono: float) -> bool:
        m = self.config.master
        if m is None or self._supply == "off":
            return True
        master = self.devices.master
        pending_pre = max(0.0, self._supply_until - mono) if self._supply == "pre" else 0.0
        if m.kind == "valve":
            need = master.on_for_s + pending_pre + cycle_s + m.post_s + MASTER_MARGIN_S
        else:
            need = master.on_for_s + pending_pre + cycle_s + MASTER_MARGIN_S
        return need <= master.max_on_s

    def _dispatch(self, now: datetime, mono: float) -> None:
        m = self.config.master
        if m is not None and m.kind == "pump" and self._supply == "post":
            return  # the pump is stopping; start again once the valves have closed
        if self._master_rest:
            if self._supply != "off":
                return
            self._master_rest = False
        ready = sorted((r for r in self.runs if r.state in ("queued", "soaking")
                        and r.not_before <= mono + _EPS),
                       key=lambda r: (r.automatic, r.seq))
        if not ready:
            return
        startable = []
        for run in ready:
            if run.automatic:
                reason = self._hold_reason(now, run.trigger)
                reason = reason or ("zone_fault" if run.zone in self.faults else None)
                reason = reason or self._moisture_gate(run.zone, now)
                if reason is not None:
                    self._finish(run, reason, now)
                    continue
            startable.append(run)
        active = [r for r in self.runs if r.state == "active"]
        running = [(r.zone, self.zones[r.zone].group) for r in active]
        running += [(z, self.zones[z].group) for z in self._draining]
        by_id = {r.run_id: r for r in startable}
        picked = pick_startable(
            [Candidate(r.run_id, r.zone, self.zones[r.zone].group) for r in startable],
            running, self.config.limits.max_concurrent_zones)
        for run_id in picked:
            run = by_id[run_id]
            left = self._budget_left_s(exclude=run)
            if left < MIN_RUN_S:
                self._finish(run, "daily_limit", now)
                continue
            remaining = sum(run.cycles)
            if remaining > left + _EPS:
                # What is left of the run, cut to the daily limit, in equal cycles no
                # longer than before (so run_started announces what will run).
                _, c = clamp(remaining, left, "duration_s", "max_daily_water_min")
                self._report_clamp(c, run, used_today_min=round(self._used_today_s() / 60, 1))
                run.cycles = split_cycles(left, max(run.cycles))
                run.planned_s -= remaining - left
            if not self._master_budget_ok(run.cycles[0], mono):
                self._master_rest = True
                logger.info("master %s rests before %s", m.output if m else "-", run.run_id)
                break
            self._begin_cycle(run, now)

    def _begin_cycle(self, run: Run, now: datetime) -> None:
        run.state = "active"
        run.cycle_s = run.cycles[0]
        run.cycle_done_s = 0.0
        run.water_since = None
        run.valve_open = False
        if run.started is None:
            run.started = now.isoformat()
            run.announce = True  # once the run is saved as active (``_step``)
        elif run.resumed and not run.resumed_reported:
            run.resumed_reported = True
            self.publisher.event("run_resumed", **run.details(), started=run.started,
                                 done_s=round(run.done_s, 1),
                                 remaining_s=round(sum(run.cycles), 1))
        self._dirty = True

    def _announce_started(self) -> None:
        for run in self.runs:
            if run.announce:
                self._report_started(run)

    def _report_started(self, run: Run, **extra) -> None:
        """Store the run's ``run_started``, once per run (a restart that finds the run
        saved as started reports it too, in case the kill came before the report)."""
        run.announce = False
        self.event_once(_key("run_started", run), "run_started", **run.details(),
                        planned_s=round(run.planned_s, 1),
                        cycles=run.cycles_done + len(run.cycles), soak_s=round(run.soak_s, 1),
                        **self._moisture_detail(run.zone), **extra)

    def _end_due_cycles(self, now: datetime, mono: float) -> None:
        for run in [r for r in self.runs if r.state == "active" and r.water_since is not None]:
            if mono + _EPS >= run.water_since + run.cycle_s:
                self._cycle_done(run, now, mono)

    def _cycle_done(self, run: Run, now: datetime, mono: float) -> None:
        run.cycles.pop(0)
        run.cycles_done += 1
        run.cycle_done_s = 0.0
        run.water_since = None
        run.valve_open = False
        self._released.append(run.zone)
        if run.cycles:
            run.state = "soaking"
            run.not_before = mono + run.soak_s
            self._dirty = True
        else:
            self._finish(run, "completed", now)

    def _stop(self, run: Run, ended: str, now: datetime) -> None:
        """End a run at once (its valve closes in ``_settle_outputs``)."""
        if run.valve_open:
            self._released.append(run.zone)
        run.valve_open = False
        run.water_since = None
        self._finish(run, ended, now)

    def _finish(self, run: Run, ended: str, now: datetime) -> None:
        if run in self.runs:
            self.runs.remove(run)
        self._dirty = True
        # Reported before the save that removes the run: a restart that still finds the
        # run asks the outbox for these keys (``_recover_runs``).
        if run.started is None:
            self.event_once(_key("run_skipped", run), "run_skipped", **run.details(),
                            reason=ended, **self._moisture_detail(run.zone))
            detail = f"run of {run.zone} skipped: {ended}"
        else:
            if run.announce:  # ended in the step that started it
                self._report_started(run)
            self.event_once(_key("run_finished", run), "run_finished", **run.details(),
                            started=run.started, duration_s=round(run.done_s, 1),
                            litres=round(run.litres, 1), cycles=run.cycles_done,
                            planned_s=round(run.planned_s, 1), ended=ended)
            detail = f"{run.zone}: {run.done_s:.0f} s, {run.litres:.1f} L ({ended})"
        reply = self._replies.pop(run.run_id, None)
        if reply is not None:
            try:
                reply("done" if ended == "completed" else "failed", detail)
            except Exception:  # noqa: BLE001 - a reply problem is the link's to report
                logger.exception("reply for %s failed", run.run_id)

    # -- outputs ----------------------------------------------------------------------
    def _drive_supply(self, mono: float) -> None:
        """Move the master valve or pump through off/pre/on/post, open and close valves."""
        m = self.config.master
        active = [r for r in self.runs if r.state == "active"]
        active_zones = {r.zone for r in active}
        if m is None:
            self._supply = "on" if active else "off"
        elif m.kind == "valve":
            if active:
                if self._supply == "off":
                    self.devices.master.on()
                    self._supply, self._supply_until = "pre", mono + m.pre_s
                elif self._supply == "post":
                    self._supply = "on"
                if self._supply == "pre" and mono + _EPS >= self._supply_until:
                    self._supply = "on"
            else:
                if self._supply in ("on", "pre"):
                    self._supply, self._supply_until = "post", mono + m.post_s
                if self._supply == "post" and mono + _EPS >= self._supply_until:
                    self.devices.master.off()
                    self._supply = "off"
        else:  # pump: valves open first, the pump stops first
            if self._supply == "post" and mono + _EPS >= self._supply_until:
                self._supply = "off"  # the draining valves close below
            if active:
                if self._supply == "off":
                    self._supply, self._supply_until = "pre", mono + m.pre_s
                if self._supply == "pre" and mono + _EPS >= self._supply_until:
                    self.devices.master.on()
                    self._supply = "on"
            else:
                if self._supply == "pre":
                    self._supply = "off"
                elif self._supply == "on":
                    self.devices.master.off()
                    self._supply, self._supply_until = "post", mono + m.post_s
                    self._draining |= set(self._released)
                    if m.post_s <= 0:
                        self._supply = "off"
        # Close what ended before opening anything, so the caps hold at every instant.
        # A zone that runs again at once is closed and reopened, so its valve's
        # max_on_s counts from the new opening.
        for zone in self._released:
            if zone not in self._draining:
                self.devices.valves[zone].off()
        self._released.clear()
        if self._supply == "off" and self._draining:
            for zone in self._draining:
                if zone not in active_zones:
                    self.devices.valves[zone].off()
            # A soak is the valve's closed time: it starts now, not when the pump stopped.
            for run in self.runs:
                if run.state == "soaking" and run.zone in self._draining:
                    run.not_before = max(run.not_before, mono + run.soak_s)
            self._draining.clear()
        valve_ok = m is None or (self._supply == "on" if m.kind == "valve"
                                 else self._supply in ("pre", "on"))
        water_ok = m is None or self._supply == "on"
        for run in active:
            if valve_ok and not run.valve_open:
                self.devices.valves[run.zone].on()
                run.valve_open = True
            if water_ok and run.valve_open and run.water_since is None:
                run.water_since = run.acct_mark = mono
        busy = active or self._supply != "off" or self._draining
        if busy or self._quiet_since is None:
            if self.outputs.any_on():
                self._quiet_since = None
            elif self._quiet_since is None:
                self._quiet_since = mono

    def _settle_outputs(self) -> None:
        """After runs were stopped abruptly: close their valves; with nothing left
        running, cut the supply at once (no post-run delay)."""
        if not any(r.state == "active" for r in self.runs):
            self._cut_supply()
            return
        for zone in self._released:
            if not any(r.zone == zone and r.state == "active" for r in self.runs):
                self.devices.valves[zone].off()
        self._released.clear()

    def _cut_supply(self) -> None:
        if self.devices.master is not None:
            self.devices.master.off()  # pump (or master) first, then the valves
        for valve in self.devices.valves.values():
            valve.off()
        for run in self.runs:
            run.valve_open = False
            run.water_since = None
        self._supply = "off"
        self._released.clear()
        self._draining.clear()
        self._master_rest = False
        if self._quiet_since is None:
            self._quiet_since = self.clock.monotonic()

    def _limit_hit(self, output, on_s: float) -> None:
        """An output hit its ``max_on_s`` (the output layer already switched it off)."""
        with self._lock:
            mono, now = self.clock.monotonic(), self.clock.now()
            zone = self._zone_by_valve.get(output.name)
            run = next((r for r in self.runs if r.zone == zone and r.state == "active"), None)
            if (run is not None and run.water_since is not None
                    and abs(mono - (run.water_since + run.cycle_s)) <= END_TOLERANCE_S):
                self._step_safe()  # the cycle ended at its planned time anyway
                return
            super()._limit_hit(output, on_s)
            if output is self.devices.master:
                victims = [r for r in self.runs if r.state == "active"]
            else:
                victims = [run] if run is not None else []
            for r in victims:
                self._stop(r, "max_on_time", now)
            self._settle_outputs()
            self._step_safe()

    def _arm(self, now: datetime, mono: float) -> None:
        """Wake up exactly when the next thing is due."""
        times = []
        for r in self.runs:
            if r.state == "active" and r.water_since is not None:
                times.append(r.water_since + r.cycle_s)
            elif r.state == "soaking":
                times.append(r.not_before)
        if self._supply in ("pre", "post"):
            times.append(self._supply_until)
        if self._debounce is not None and self._debounce.pending_until() is not None:
            times.append(self._debounce.pending_until())
        if self._next_start is not None:
            times.append(mono + (self._next_start.at - now).total_seconds())
        times = [t for t in times if t > mono + _EPS]
        if not times:
            self._cancel_wake()
            return
        t = min(times)
        if self._wake_at is not None and abs(self._wake_at - t) < _EPS:
            return
        self._cancel_wake()
        self._wake_at = t
        self._wake_handle = self.clock.call_later(t - mono, self._wake)

    # ------------------------------------------------------------------ commands
    def handle_command(self, cmd_id: str, action: str, params: dict, reply) -> None:
        handlers = {"run_zone": self._cmd_run_zone, "stop_all": self._cmd_stop_all,
                    "skip_next": self._cmd_skip_next, "pause": self._cmd_pause,
                    "resume": self._cmd_resume, "rain_delay": self._cmd_rain_delay}
        handler = handlers.get(action)
        if handler is None:
            reply("rejected", f"irrigation unit does not know action {action!r}")
            return
        answering = True

        def reply_when_saved(status, detail="", clamped=None):
            # What the handler's answer reports (a queued run, a pause) is on disk before
            # the answer: a unit killed just after answering must not forget what it said.
            # A run's own end, answered later from `_finish`, is saved with its events.
            if answering and status != "rejected":
                self._save(self.clock.monotonic(), force=True)
            reply(status, detail, clamped=clamped)

        try:
            with self._lock:
                try:
                    handler(cmd_id, command_params(action, params), reply_when_saved)
                finally:
                    answering = False
                self._step_safe()
        except _Reject as exc:
            reply("rejected", str(exc))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "params"
            reply("rejected", f"bad params: {where}: {first['msg']}")
        except Exception as exc:  # noqa: BLE001 - answer every command
            logger.exception("command %s %s failed", cmd_id, action)
            reply("failed", str(exc))

    def _cmd_run_zone(self, cmd_id, p: RunZoneParams, reply) -> None:
        if p.zone not in self.zones:
            raise _Reject(f"no zone named {p.zone!r} (zones: {', '.join(self.zones)})")
        now, mono = self.clock.now(), self.clock.monotonic()
        self._account(mono)
        self._roll_day(now)
        zmax, output, max_on_s = self._zone_max_cycle_s(p.zone)
        clamps = []
        allowed, c = clamp(p.duration_s, zmax, "duration_s", "max_on_s")
        if c:
            clamps.append((c, {"output": output, "max_on_s": round(max_on_s, 1)}))
        allowed, c = clamp(allowed, max(0.0, self._budget_left_s()), "duration_s",
                           "max_daily_water_min")
        if c:
            clamps.append((c, {"used_today_min": round(self._used_today_s() / 60, 1)}))
        report = [c.as_dict() for c, _ in clamps] or None
        for c, extra in clamps:
            self.publisher.event("limit_clamped", **c.as_dict(), zone=p.zone, cmd_id=cmd_id,
                                 **extra)
        if allowed < MIN_RUN_S:
            reply("rejected", f"daily water limit reached "
                              f"({self.config.limits.max_daily_water_min:g} min)",
                  clamped=report)
            return
        self.faults.pop(p.zone, None)  # an operator's explicit try clears a fault
        run, _ = self._enqueue(f"manual:{cmd_id}", p.zone, "manual", allowed, now,
                               cmd_id=cmd_id, split=False)
        self._replies[run.run_id] = reply
        reply("accepted", f"zone {p.zone} for {allowed:.0f} s", clamped=report)

    def _cmd_stop_all(self, cmd_id, params, reply) -> None:
        now = self.clock.now()
        n = len(self.runs)
        for run in list(self.runs):
            self._stop(run, "stop_all", now)
        self._cut_supply()
        reply("done", f"stopped {n} run(s); every output off")

    def _cmd_skip_next(self, cmd_id, p: SkipNextParams, reply) -> None:
        if p.feeder is not None:
            raise _Reject("an irrigation unit has no feeders")
        if p.zone is not None and p.zone not in self.zones:
            raise _Reject(f"no zone named {p.zone!r}")
        self.holds.skip([p.zone or ALL])
        self._dirty = True
        reply("done", f"next scheduled run of {p.zone or 'every zone'} will be skipped")

    def _cmd_pause(self, cmd_id, p: PauseParams, reply) -> None:
        if not self.clock_synced():
            raise _Reject("clock not synchronised: time-bounded commands are refused")
        now = self.clock.now()
        try:
            until = self.holds.pause(p.until, now)
        except HoldRefused as exc:
            raise _Reject(str(exc)) from None
        for run in list(self.runs):
            self._stop(run, "paused", now)
        self._cut_supply()
        self._dirty = True
        self.publisher.event("paused", until=until.isoformat(), cmd_id=cmd_id)
        reply("done", f"paused until {until.astimezone(self.site.tz).isoformat()}")

    def _cmd_resume(self, cmd_id, params, reply) -> None:
        cleared = self.holds.resume()
        cleared += [name for name, v in (("faults", self.faults),
                                         ("leak", self.leak_active)) if v]
        self.faults.clear()
        self.leak_active = False
        self._dirty = True
        self.publisher.event("resumed", cleared=cleared, cmd_id=cmd_id)
        reply("done", "cleared: " + (", ".join(cleared) or "nothing"))

    def _cmd_rain_delay(self, cmd_id, p: RainDelayParams, reply) -> None:
        try:
            self.holds.rain_delay(p.hours, self.clock.now())
        except HoldRefused as exc:
            raise _Reject(str(exc)) from None
        self._dirty = True
        reply("done", f"rain delay {p.hours:g} h")

    # ------------------------------------------------------------------ remote config
    def apply_remote_config(self, version: int, body: dict) -> None:
        """Replace the program (schedules, sensor thresholds); raises ``ConfigError``.

        Hard limits are not part of the program and stay local; runs already queued or
        running finish under the rules they started with.
        """
        source = f"remote config v{version}"
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ConfigError(source, [("version", f"must be a whole number >= 0, got "
                                                   f"{version!r}")])
        if not isinstance(body, dict | IrrigationProgramConfig):
            raise ConfigError(source, [("(body)", "must be a JSON object")])
        program = parse_program(body, self.zones, source)  # as is when the link decoded it
        with self._lock:
            self.program = program
            self._program_version = int(version)
            self._planner = _planner(program, self.site)
            self._next_start, self._next_from = None, None
            self.state.set(STATE_PROGRAM, {"version": int(version),
                                           "body": program.model_dump(mode="json")})
            logger.info("remote config v%s applied: %d program(s)", version,
                        len(program.programs))
            self._step_safe()

    # ------------------------------------------------------------------ telemetry
    def readings(self) -> dict[str, Any]:
        with self._lock:
            now = self.clock.now()
            r: dict[str, Any] = {}
            for zone, value in self._soil.items():
                if value.value is not None:
                    r[f"moisture_pct.{zone}"] = round(value.value, 1)
                r[f"moisture_stale.{zone}"] = self._soil_stale[zone]
                r[f"sensor_errors.{zone}"] = self._soil_errors[zone]
            if self.devices.rain is not None:
                r["rain"] = self.raining
            delay = self.holds.rain_delay_until
            r["rain_delay_h"] = round(max(0.0, (delay - now).total_seconds() / 3600), 2) \
                if delay else 0.0
            if self._flow_rate is not None:
                r["flow_lpm"] = round(self._flow_rate.lpm, 2)
            zones_today = self.today.get("zones", {})
            r["water_l_today"] = round(sum(z["litres"] for z in zones_today.values()), 1)
            r["water_min_today"] = round(self._used_today_s() / 60, 2)
            for zone in self.zones:
                zt = zones_today.get(zone, {"water_s": 0.0, "litres": 0.0})
                r[f"water_l_today.{zone}"] = round(zt["litres"], 1)
                r[f"water_min_today.{zone}"] = round(zt["water_s"] / 60, 2)
            if self.devices.flow is not None:
                r["meter_l_today"] = round(self.today.get("meter_l", 0.0), 1)
            r["paused"] = self.holds.reason(now, rain_delay=False) == "paused"
            r["leak"] = self.leak_active
            r["zones_running"] = sum(1 for x in self.runs if x.state == "active")
            r["runs_queued"] = sum(1 for x in self.runs if x.state != "active")
            return r

    def status(self) -> dict[str, Any]:
        """A summary for ``selftest`` and the status message."""
        with self._lock:
            return {"config_version": self._program_version, "supply": self._supply,
                    "runs": [r.to_doc() for r in self.runs], "faults": dict(self.faults),
                    "paused_until": _iso(self.holds.paused_until),
                    "rain_delay_until": _iso(self.holds.rain_delay_until),
                    "outputs": self.outputs.states()}


def _copy(doc):
    if isinstance(doc, dict):
        return {k: _copy(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_copy(v) for v in doc]
    return doc


APP = IrrigationApp
"""The app of this kind (``smartcity-edge`` picks it by the config's kind)."""
