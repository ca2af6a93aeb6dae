"""The irrigation daemon: ``IrrigationApp`` wires the rules to the valves and sensors.

The app holds the parts and moves them forward together; each part is its own module:

- ``inputs``: the rain switch, the soil probes, the flow meter and their faults;
- ``ledger``: today's water time and litres, the daily budget, the per-cycle limits;
- ``planning``: program starts that fall due, and sensor runs where the soil is dry;
- ``queue``: the runs (queued, watering, soaking) and their reports;
- ``supply``: the master valve or pump and the zone valves, one pure function of what
  should water, what is applied and the time;
- ``commands``: the remote commands;
- ``persist``: what is saved so that a restart neither forgets nor doubles anything.

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
   pump with its delays (``supply.sequence``);
6. saves what must survive a restart (``StateStore``): a run is saved before it is
   announced and before its valve opens (a restart asks the outbox what was reported:
   ``RunQueue.recover``).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from protocol.planner import Site

from ..app import App
from ..errors import ConfigError
from .commands import Commands
from .config import IrrigationConfig, IrrigationProgramConfig, parse_program
from .devices import build_devices
from .inputs import Inputs
from .ledger import MASTER_MARGIN_S, WaterLedger, master_covers, zone_max_cycle_s
from .persist import (
    STATE_HOLDS,
    STATE_MARK,
    STATE_PROGRAM,
    STATE_RUNS,
    STATE_TODAY,
    STATE_ZONES,
    Checkpoint,
    Saved,
    load,
    load_program,
    save_program,
)
from .persist import docs as state_docs
from .planning import Planning
from .queue import Run, RunQueue
from .rules import EPS_S, MIN_RUN_S, Candidate, clamp, iso, pick_startable, split_cycles
from .supply import Applied, sequence

__all__ = ["APP", "MASTER_MARGIN_S", "STATE_HOLDS", "STATE_MARK", "STATE_PROGRAM", "STATE_RUNS",
           "STATE_TODAY", "STATE_ZONES", "IrrigationApp", "Run"]

logger = logging.getLogger(__name__)

END_TOLERANCE_S = 0.5
"""A valve forced off this close to its planned end simply finished."""


class IrrigationApp(App):
    """Park watering: zones on valves, schedules, sensor rules, overrides, hard limits."""

    kind = "irrigation"
    schedule_model = IrrigationProgramConfig

    def __init__(self, config: IrrigationConfig, *, pin_factory, clock, publisher,
                 state=None, clock_synced=None, soil_readers=None):
        # The base class builds every output, off, before anything else happens.
        super().__init__(config, pin_factory=pin_factory, clock=clock, publisher=publisher,
                         state=state, clock_synced=clock_synced)
        self.lock = threading.RLock()
        self.site = Site.from_config(config.site)
        self.zones = config.zone_map()
        self._zone_by_valve = {z.valve: z.name for z in config.zones}
        self.devices = build_devices(config, self, soil_readers=soil_readers)
        self.checkpoint = Checkpoint(self.state, config.runs.checkpoint_s)

        self.program, self._program_version = load_program(self.state, self.zones,
                                                           config.program, self.alarm)
        saved = load(self.state, self.zones)
        self.holds, self.faults = saved.holds, saved.faults
        self.ledger = WaterLedger(saved.today, tz=self.site.tz,
                                  max_daily_water_min=config.limits.max_daily_water_min,
                                  flow_lpm={z: s.flow_lpm for z, s in self.zones.items()})
        self.inputs = Inputs(config, app=self, lock=self.lock, zone_state=saved.zone_state,
                             changed=self.changed)
        self.queue = RunQueue(saved.runs, app=self, detail=self.inputs.moisture_detail,
                              changed=self.changed)
        self.planning = Planning(self, self.program, self.site, saved.mark)
        self.commands = Commands(self)

        self._applied = Applied()  # what the supply sequencing last switched
        self._master_rest = False
        self._wake_handle = None
        self._wake_at: float | None = None
        self._failing = False

    # ------------------------------------------------------------------ the parts' view
    runs = property(lambda self: self.queue.runs, doc="The runs, in queue order.")
    today = property(lambda self: self.ledger.today, doc="Today's water totals.")
    raining = property(lambda self: self.inputs.raining, doc="The rain switch is wet.")
    leak_active = property(lambda self: self.inputs.leak_active, doc="A leak is raised.")

    @property
    def supply(self) -> str:
        """The master's phase: ``off``, ``pre``, ``on`` or ``post``."""
        return self._applied.phase.state

    @property
    def current_config_version(self) -> int:
        """Version of the program in force (0: the local file's default program)."""
        return self._program_version

    def outlook(self):
        return self.planning.outlook(self.clock.now())

    def changed(self) -> None:
        """Something to save has changed: the next step saves it."""
        self.checkpoint.changed()

    def save(self, force: bool = False) -> None:
        self._save(self.clock.monotonic(), force)

    def _save(self, mono: float, force: bool = False) -> None:
        self.checkpoint.save(self._docs, mono, force)

    def _docs(self) -> dict[str, Any]:
        return state_docs(Saved(holds=self.holds, faults=self.faults, today=self.ledger.today,
                                runs=self.queue.runs, zone_state=self.inputs.zone_state,
                                mark=self.planning.restart_mark))

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        super().start()
        if self.devices.soil:
            self.scheduler.every_s(self.config.soil.poll_s, self.inputs.poll_soil, "soil")
        with self.lock:
            self.inputs.started_at = self.clock.now()
            mono = self.clock.monotonic()
            self.queue.recover(self.config.runs.on_interrupted, mono)
            self._save(mono, force=True)
        self.inputs.poll_soil()
        with self.lock:
            self.step_safe()

    def tick(self) -> None:
        super().tick()
        with self.lock:
            self.step_safe()

    def busy(self) -> bool:
        """A run is queued, watering or soaking between cycles, or an output is on."""
        with self.lock:
            return bool(self.runs) or super().busy()

    def close(self) -> None:
        if self._closed:
            return
        with self.lock:
            try:
                self._cancel_wake()
                self.account(self.clock.monotonic())
            except Exception:  # noqa: BLE001 - outputs must go off whatever happens
                logger.exception("accounting at close failed")
            finally:
                super().close()  # every output off
            try:
                now = self.clock.now()
                for run in list(self.queue.runs):
                    run.valve_open = False
                    self.queue.finish(run, "shutdown", now)
                self._applied = Applied()
                self._save(self.clock.monotonic(), force=True)
            except Exception:  # noqa: BLE001 - still close the devices
                logger.exception("saving state at close failed")
            finally:
                self.devices.close()

    # ------------------------------------------------------------------ the step
    def _wake(self) -> None:
        with self.lock:
            self._wake_handle = None
            self._wake_at = None
            self.step_safe()

    def _cancel_wake(self) -> None:
        if self._wake_handle is not None:
            self._wake_handle.cancel()
        self._wake_handle = None
        self._wake_at = None

    def step_safe(self) -> None:
        """One step; a step that fails turns every output off and raises an alarm."""
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
            self.cut_supply()
            self.outputs.all_off()
        finally:
            now = self.clock.now()
            for run in list(self.queue.runs):
                if run.state != "queued":
                    self.queue.finish(run, "error", now)
            if not self._failing:  # one alarm per failure streak, not one per tick
                self._failing = True
                self.alarm("engine_error",
                           f"irrigation step failed: {exc}; every output is off")

    def _step(self) -> None:
        now, mono = self.clock.now(), self.clock.monotonic()
        self.account(mono)
        self.roll_day(now)
        self._read_rain(now, mono)
        self._end_due_cycles(now, mono)
        self._check_flow(now, mono)
        self._check_soil(now)
        self.planning.check_schedule(now)
        self.planning.sensor_runs(now)
        self.queue.expire(now, timedelta(minutes=self.config.runs.max_queue_wait_min))
        self._dispatch(now, mono)
        self._save(mono)  # a run is on disk as active before its valve opens
        self.queue.announce_started()  # ... and before it is announced
        self._drive_supply(mono)
        self._save(mono)
        self._arm(now, mono)

    def account(self, mono: float) -> None:
        """Count the water time and litres of what flows, up to ``mono``."""
        count = self.inputs.add_flow(mono)
        self.ledger.account(self.queue.runs, mono, count, self.devices.flow)

    def roll_day(self, now: datetime) -> None:
        if self.ledger.roll_day(now):
            self.changed()

    def _read_rain(self, now: datetime, mono: float) -> None:
        turned = self.inputs.read_rain(mono)
        if self.devices.rain is None:
            return
        delay = timedelta(hours=self.program.rain_delay_h)
        if turned == "wet":
            logger.info("rain sensor wet: stopping automatic runs")
            for run in [r for r in self.queue.runs if r.automatic]:
                self.queue.stop(run, "rain", now)
            self.settle_outputs()
        elif turned == "dry":
            logger.info("rain sensor dry: rain delay of %.1f h", self.program.rain_delay_h)
            self.holds.extend_rain_delay(now + delay)
            self.changed()
        if self.inputs.raining:
            # The delay runs from the last moment the sensor was wet.
            if self.holds.extend_rain_delay(now + delay, slack=timedelta(minutes=1)):
                self.changed()

    def _end_due_cycles(self, now: datetime, mono: float) -> None:
        self.queue.end_due_cycles(now, mono)

    def _check_flow(self, now: datetime, mono: float) -> None:
        if self.config.flow is None:
            return
        self.inputs.check_leak(mono)
        dead = self.inputs.no_flow(self.queue.runs, mono)
        if dead:
            lpm = self.inputs.flow_rate.lpm
            zones = sorted(r.zone for r in dead)
            for run in dead:
                self.faults[run.zone] = "no_flow"
                self.queue.stop(run, "no_flow", now)
            self.changed()
            self.settle_outputs()
            self.alarm("no_flow", f"valve open but {lpm:.2f} L/min through the meter: "
                       f"zone(s) {', '.join(zones)} stopped", zones=zones,
                       flow_lpm=round(lpm, 2), outputs=self.outputs.states())

    def _check_soil(self, now: datetime) -> None:
        self.inputs.check_soil(now, self.program)

    # -- queueing and starting ----------------------------------------------------------
    def zone_max_cycle_s(self, zone: str) -> tuple[float, str, float]:
        return zone_max_cycle_s(self.devices.valves[zone], self.devices.master,
                                self.config.master)

    def queue_run(self, run_id: str, zone: str, trigger: str, total_s: float, now: datetime,
                  *, program: str | None = None, planned_at: str | None = None,
                  cmd_id: str | None = None, split: bool = True) -> Run:
        """Queue a run under the zone's cycle-and-soak rule (``split``) and limits."""
        rules = self.program.rules_for(zone)
        return self.queue.enqueue(
            run_id, zone, trigger, total_s, now,
            cycle_s=rules.cycle_min * 60.0 if (split and rules.cycle_min) else None,
            soak_s=rules.soak_min * 60.0, max_cycle=self.zone_max_cycle_s(zone),
            program=program, planned_at=planned_at, cmd_id=cmd_id)

    def _dispatch(self, now: datetime, mono: float) -> None:
        m = self.config.master
        phase = self._applied.phase.state
        if m is not None and m.kind == "pump" and phase == "post":
            return  # the pump is stopping; start again once the valves have closed
        if self._master_rest:
            if phase != "off":
                return
            self._master_rest = False
        ready = self.queue.ready(mono)
        if not ready:
            return
        startable = []
        for run in ready:
            if run.automatic:
                reason = self.planning.hold_reason(now, run.trigger)
                reason = reason or ("zone_fault" if run.zone in self.faults else None)
                reason = reason or self.inputs.moisture_gate(run.zone, self.program)
                if reason is not None:
                    self.queue.finish(run, reason, now)
                    continue
            startable.append(run)
        running = [(r.zone, self.zones[r.zone].group) for r in self.queue.active()]
        running += [(z, self.zones[z].group) for z in self._applied.draining]
        by_id = {r.run_id: r for r in startable}
        picked = pick_startable(
            [Candidate(r.run_id, r.zone, self.zones[r.zone].group) for r in startable],
            running, self.config.limits.max_concurrent_zones)
        for run_id in picked:
            run = by_id[run_id]
            left = self.ledger.budget_left_s(self.queue.runs, exclude=run)
            if left < MIN_RUN_S:
                self.queue.finish(run, "daily_limit", now)
                continue
            remaining = sum(run.cycles)
            if remaining > left + EPS_S:
                # What is left of the run, cut to the daily limit, in equal cycles no
                # longer than before (so run_started announces what will run).
                _, c = clamp(remaining, left, "duration_s", "max_daily_water_min")
                self.queue.report_clamp(
                    c, run, used_today_min=round(self.ledger.used_today_s() / 60, 1))
                run.cycles = split_cycles(left, max(run.cycles))
                run.planned_s -= remaining - left
            if not master_covers(m, self.devices.master, self._applied.phase, run.cycles[0],
                                 mono):
                self._master_rest = True
                logger.info("master %s rests before %s", m.output if m else "-", run.run_id)
                break
            self.queue.begin_cycle(run, now)

    # -- outputs ----------------------------------------------------------------------
    def _drive_supply(self, mono: float) -> None:
        """Switch what ``supply.sequence`` says: master, then closes, then opens."""
        active = self.queue.active()
        applied = Applied(self._applied.phase,
                          frozenset(r.zone for r in active if r.valve_open),
                          tuple(self.queue.released), self._applied.draining)
        act = sequence(self.config.master, applied, [r.zone for r in active], mono)
        if act.master is not None:
            (self.devices.master.on if act.master else self.devices.master.off)()
        for zone in act.close:
            self.devices.valves[zone].off()
        self.queue.released.clear()
        # A soak is the valve's closed time: it starts now, not when the pump stopped.
        for run in self.queue.runs:
            if run.state == "soaking" and run.zone in act.drained:
                run.not_before = max(run.not_before, mono + run.soak_s)
        for run in active:
            if run.zone in act.open and not run.valve_open:
                self.devices.valves[run.zone].on()
                run.valve_open = True
            if act.flowing and run.valve_open and run.water_since is None:
                run.water_since = run.acct_mark = mono
        self._applied = Applied(act.phase, draining=act.draining)
        busy = bool(active) or act.phase.state != "off" or bool(act.draining)
        self.inputs.note_outputs(busy, mono)

    def settle_outputs(self) -> None:
        """After runs were stopped abruptly: close their valves; with nothing left
        running, cut the supply at once (no post-run delay)."""
        if not self.queue.active():
            self.cut_supply()
            return
        for zone in self.queue.released:
            if not any(r.zone == zone and r.state == "active" for r in self.queue.runs):
                self.devices.valves[zone].off()
        self.queue.released.clear()

    def cut_supply(self) -> None:
        """Every valve and the master off at once (the pump or master first)."""
        if self.devices.master is not None:
            self.devices.master.off()  # pump (or master) first, then the valves
        for valve in self.devices.valves.values():
            valve.off()
        self.queue.valves_closed()
        self._applied = Applied()
        self._master_rest = False
        self.inputs.all_off(self.clock.monotonic())

    def _limit_hit(self, output, on_s: float) -> None:
        """An output hit its ``max_on_s`` (the output layer already switched it off)."""
        with self.lock:
            mono, now = self.clock.monotonic(), self.clock.now()
            zone = self._zone_by_valve.get(output.name)
            run = next((r for r in self.queue.active() if r.zone == zone), None)
            if (run is not None and run.water_since is not None
                    and abs(mono - (run.water_since + run.cycle_s)) <= END_TOLERANCE_S):
                self.step_safe()  # the cycle ended at its planned time anyway
                return
            super()._limit_hit(output, on_s)
            if output is self.devices.master:
                victims = self.queue.active()
            else:
                victims = [run] if run is not None else []
            for r in victims:
                self.queue.stop(r, "max_on_time", now)
            self.settle_outputs()
            self.step_safe()

    def _arm(self, now: datetime, mono: float) -> None:
        """Wake up exactly when the next thing is due."""
        times = [*self.queue.due_times(), self._applied.phase.until if
                 self._applied.phase.waiting else None, self.inputs.wake_at(),
                 self.planning.wake_at(now, mono)]
        times = [t for t in times if t is not None and t > mono + EPS_S]
        if not times:
            self._cancel_wake()
            return
        t = min(times)
        if self._wake_at is not None and abs(self._wake_at - t) < EPS_S:
            return
        self._cancel_wake()
        self._wake_at = t
        self._wake_handle = self.clock.call_later(t - mono, self._wake)

    # ------------------------------------------------------------------ commands
    def handle_command(self, cmd_id: str, action: str, params: dict, reply) -> None:
        self.commands.handle(cmd_id, action, params, reply)

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
        with self.lock:
            self.program = program
            self._program_version = int(version)
            self.planning.use(program)
            save_program(self.state, version, program)
            logger.info("remote config v%s applied: %d program(s)", version,
                        len(program.programs))
            self.step_safe()

    # ------------------------------------------------------------------ telemetry
    def readings(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock.now()
            r = self.inputs.readings()
            delay = self.holds.rain_delay_until
            r["rain_delay_h"] = round(max(0.0, (delay - now).total_seconds() / 3600), 2) \
                if delay else 0.0
            if self.inputs.flow_rate is not None:
                r["flow_lpm"] = round(self.inputs.flow_rate.lpm, 2)
            r.update(self.ledger.readings(self.zones, metered=self.devices.flow is not None))
            r["paused"] = self.holds.reason(now, rain_delay=False) == "paused"
            r["leak"] = self.inputs.leak_active
            r["zones_running"] = sum(1 for x in self.queue.runs if x.state == "active")
            r["runs_queued"] = sum(1 for x in self.queue.runs if x.state != "active")
            return r

    def status(self) -> dict[str, Any]:
        """A summary for ``selftest`` and the status message."""
        with self.lock:
            return {"config_version": self._program_version, "supply": self.supply,
                    "runs": [r.to_doc() for r in self.queue.runs],
                    "faults": dict(self.faults),
                    "paused_until": iso(self.holds.paused_until),
                    "rain_delay_until": iso(self.holds.rain_delay_until),
                    "outputs": self.outputs.states()}

APP = IrrigationApp
"""The app of this kind (``smartcity-edge`` picks it by the config's kind)."""
