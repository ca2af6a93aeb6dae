"""Campaign 3: an irrigation unit SIGKILLed in the middle of a run, over and over.

A real irrigation unit (``faults.unit_process irrigation``: ``IrrigationApp`` with its
MQTT link and outbox, two zones and a booster pump on gpiozero mock pins) talks to a
private Mosquitto and ``smartcity-controller serve``. Each cycle:

1. asks the controller's API for ``run_zone`` (a two-minute run) unless a resumed run is
   already going, and waits until the mock pins show the zone's valve open;
2. waits a random moment (every fifth cycle: none at all, to land right after the valve
   opened) and SIGKILLs the unit;
3. starts it again (its config saying ``on_interrupted = "drop"``, or ``"resume"`` every
   ``--resume-every`` cycles) and measures, from the moment it was spawned, how long until
   its pins report says every output is driven off;
4. waits until the controller's database holds the ``run_interrupted`` event of the
   killed run.

Every ``--stop-kill-every`` cycles the kill aims at the end of a run instead: the
controller sends ``stop_all`` and the unit is killed the moment its pins show the valve
closed, which is after it stored ``run_finished`` and before (or just after) it saved
the run as gone. That restart uses ``on_interrupted = "drop"``; the run must then have
``run_finished`` or ``run_interrupted``, never both.

At the end every run must have exactly one ``run_interrupted`` per kill that cut it,
exactly one ``run_started``, and at most one ``run_finished`` (none after a
``run_interrupted`` that dropped it); nothing the unit's outbox assigned may be missing
or doubled at the controller, no output may have come on after a restart without a
command (or a resumed run), and every restart must have had its outputs off within 2 s.

    .venv/bin/python -m faults.unit_kills --cycles 50 [--resume-every 4]
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from faults.common import (
    Budget,
    ControllerProcess,
    Report,
    UnitProcess,
    count_device,
    main_with,
    outbox_state,
    parser,
    start_broker,
    wait_until,
)
from tests.support.unit_toml import Pump

DEVICE, OPD = "taman-uk-01", "dlh"
RUN_S = 120
ZONES = {"zone1": "valve-1", "zone2": "valve-2"}
PINS = {"GPIO17": "valve-1", "GPIO27": "valve-2", "GPIO24": "pompa"}
PIN_OF = {output: int(gpio.removeprefix("GPIO")) for gpio, output in PINS.items()}
RESERVE_S = 45.0
RECOVERY_KILL_S = (0.003, 0.013)  # after the boot report: when the restart records the run

@dataclass
class PinsReport:
    """One incarnation's pins report (see ``faults.unit_process``)."""

    boot_at: float | None = None
    process_t0: float | None = None
    boot_states: dict[str, bool] = field(default_factory=dict)
    changes: list[tuple[float, str, int]] = field(default_factory=list)
    stopped_states: dict[str, bool] | None = None

    def is_on(self, output: str) -> bool:
        state = False
        for _, name, value in self.changes:
            if name == output:
                state = bool(value)
        return state

    def all_off(self) -> bool:
        return not any(self.is_on(name) for name in PINS.values())

    def first_on_after(self, t: float) -> float | None:
        """When an output first came on at or after ``t`` (None: never)."""
        return next((at for at, _, v in self.changes if v and at >= t), None)


def read_pins(path: Path) -> PinsReport:
    report = PinsReport()
    if not path.exists():
        return report
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split(" ", 3)
        if parts[0] == "boot" and len(parts) == 4:
            report.boot_at, report.process_t0 = float(parts[1]), float(parts[2])
            report.boot_states = json.loads(parts[3])
        elif parts[0] == "stopped" and len(parts) >= 3:
            report.stopped_states = json.loads(line.split(" ", 2)[2])
        elif len(parts) == 3 and parts[1] in PINS:
            report.changes.append((float(parts[0]), PINS[parts[1]], int(parts[2])))
    return report


def interrupted(db: Path, run_id: str) -> list[dict]:
    """The ``run_interrupted`` events of ``run_id`` at the controller, in seq order."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute(
            "SELECT details FROM events WHERE device_id = ? AND type = 'run_interrupted' "
            "AND json_extract(details, '$.run_id') = ? ORDER BY seq", (DEVICE, run_id))
        return [json.loads(r[0]) for r in rows]
    finally:
        conn.close()


def run_events(db: Path) -> dict[str, list[tuple[str, str | None]]]:
    """``run_id -> [(type, how), ...]`` of the run events at the controller, in seq
    order; ``how`` is the action or ended, and ``late`` for a ``run_started`` stored by a
    restart (it carries ``started``)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute(
            "SELECT json_extract(details, '$.run_id'), type, "
            "coalesce(json_extract(details, '$.action'), json_extract(details, '$.ended'), "
            "iif(json_extract(details, '$.started') IS NULL, NULL, 'late')) FROM events WHERE device_id = ? AND type IN ('run_started', 'run_finished', "
            "'run_interrupted', 'run_skipped') ORDER BY seq", (DEVICE,))
        runs: dict[str, list[tuple[str, str | None]]] = {}
        for run_id, type_, how in rows:
            runs.setdefault(run_id, []).append((type_, how))
        return runs
    finally:
        conn.close()


def all_interrupted(db: Path) -> Counter:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return Counter(r[0] for r in conn.execute(
            "SELECT json_extract(details, '$.run_id') FROM events WHERE device_id = ? "
            "AND type = 'run_interrupted'", (DEVICE,)))
    finally:
        conn.close()


class IrrigationUnit(UnitProcess):
    """The unit under test; each start gets its own pins report file."""

    def __init__(self, workdir: Path, broker):
        super().__init__(workdir, DEVICE, OPD,
                         {"host": broker.host, "port": broker.port, "telemetry_s": 2,
                          "zones": {zone: (valve, PIN_OF[valve]) for zone, valve in ZONES.items()},
                          "pump": Pump(output="pompa", pin=PIN_OF["pompa"], max_on_s=900,
                                       pre_s=0.5, post_s=0.5)},
                         "irrigation", [])
        self.broker = broker
        self.pins: Path | None = None

    def start_with(self, policy: str) -> float:
        self.write_config(on_interrupted=policy)
        self.pins = self.dir / f"pins-{self.starts + 1:03d}.log"
        self.role_args = ["--pins", str(self.pins)]
        return self.start()

    def report(self) -> PinsReport:
        return read_pins(self.pins)

    def wait_boot(self, timeout: float = 10.0) -> PinsReport:
        return wait_until(lambda: (r := self.report()).boot_at is not None and r, timeout,
                          "boot report", step=0.005)


def run(*, workdir: Path, cycles: int = 50, max_s: float = 900.0, seed: int | None = None,
        resume_every: int = 4, recovery_kill_every: int = 0, stop_kill_every: int = 0,
        delay_s: tuple[float, float] = (0.2, 3.0)) -> Report:
    """Run the campaign in ``workdir``; returns what it counted.

    ``recovery_kill_every``: every Nth cycle the restarted unit is killed once more,
    3-13 ms after its outputs were built, while it records the interrupted run (off by
    default; see docs/reliability.md for what it finds). ``stop_kill_every``: every Nth
    cycle the unit is killed as ``stop_all`` closes the valve (off by default)."""
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    budget = Budget(max_s)
    report = Report("unit_kills", cycles)
    report.figures["seed"] = seed
    broker = start_broker(workdir)
    controller = ControllerProcess(workdir, broker)
    controller.register([(DEVICE, OPD, "irrigation")])
    unit = IrrigationUnit(workdir, broker)
    expected: Counter = Counter()  # run_id -> kills that cut it
    in_process_s: list[float] = []
    record_s: list[float] = []
    policies: Counter = Counter()
    recovery_kills = 0
    stop_kills: Counter = Counter()  # how each run killed at its stop_all was recorded
    run_id: str | None = None
    run_zone: str | None = None
    commands: list[str] = []
    try:
        controller.start()
        t_spawn = unit.start_with("drop")
        boot = unit.wait_boot()
        report.figures["cold_start"] = f"outputs off {boot.boot_at - t_spawn:.2f} s after spawn"
        wait_until(lambda: outbox_state(unit.outbox)[0] > 0 and _online(controller), 20,
                   "unit online at the controller")
        for cycle in range(cycles):
            if budget.exhausted(RESERVE_S):
                report.problems.append(f"wall-clock cap: stopped after {report.cycles_done} "
                                       f"cycles")
                break
            if run_id is None:
                run_zone = sorted(ZONES)[cycle % len(ZONES)]
                t_cmd = time.time()
                ghost = unit.report().first_on_after(0.0)
                if ghost is not None:
                    report.problems.append(f"cycle {cycle}: an output came on at {ghost:.3f} "
                                           f"after a restart with nothing to run")
                response = controller.api("POST", f"/api/v1/devices/{DEVICE}/commands", json={
                    "action": "run_zone", "params": {"zone": run_zone, "duration_s": RUN_S}})
                response.raise_for_status()
                commands.append(response.json()["id"])
                run_id = f"manual:{commands[-1]}"
            else:
                t_cmd = time.time()  # a resumed run: its valve opens again on its own
            valve = ZONES[run_zone]
            try:
                wait_until(lambda: unit.report().is_on(valve), 20,  # noqa: B023
                           f"{valve} open", step=0.005)
            except TimeoutError as exc:
                report.problems.append(f"cycle {cycle}: {exc} (asked at {t_cmd:.3f})")
                break
            time.sleep(0.0 if cycle % 5 == 0 else rng.uniform(*delay_s))
            stop_kill = bool(stop_kill_every) and cycle % stop_kill_every == stop_kill_every - 1
            if stop_kill:
                controller.api("POST", f"/api/v1/devices/{DEVICE}/commands", json={
                    "action": "stop_all", "params": {}}).raise_for_status()
                try:
                    wait_until(lambda: not unit.report().is_on(valve), 20,  # noqa: B023
                               f"{valve} closed by stop_all", step=0.001)
                except TimeoutError as exc:
                    report.problems.append(f"cycle {cycle}: {exc}")
                    break
            unit.kill()
            killed = run_id
            if not stop_kill:
                expected[killed] += 1
            policy = ("resume" if not stop_kill and resume_every
                      and cycle % resume_every == resume_every - 1 else "drop")
            policies[policy] += 1
            restarts = 2 if (recovery_kill_every and cycle % recovery_kill_every == 0
                             and policy == "drop" and not stop_kill) else 1
            for restart in range(restarts):
                if restart:  # killed again while it records the interrupted run
                    time.sleep(rng.uniform(*RECOVERY_KILL_S))
                    unit.kill()
                    recovery_kills += 1
                t_spawn = unit.start_with(policy)
                boot = unit.wait_boot()
                boot_seq = outbox_state(unit.outbox)[0]
                report.outputs_off_s.append(boot.boot_at - t_spawn)
                in_process_s.append(boot.boot_at - boot.process_t0)
                if any(boot.boot_states.values()):
                    report.problems.append(f"cycle {cycle}: outputs on at boot "
                                           f"{boot.boot_states}")
            if policy == "drop":
                run_id = run_zone = None
            if stop_kill:
                try:
                    how = _stop_kill_outcome(controller, unit, boot_seq, killed)
                except TimeoutError as exc:
                    report.problems.append(f"cycle {cycle}: {exc}")
                else:
                    stop_kills[how] += 1
                    expected[killed] += how in ("interrupted", "both")
                report.cycles_done += 1
                continue
            t_restart = time.monotonic()
            try:
                events = wait_until(
                    lambda: len(e := interrupted(controller.db, killed)) >= expected[killed]  # noqa: B023
                    and e, 30, f"run_interrupted of {killed} at the controller")
                record_s.append(time.monotonic() - t_restart)
                action = events[-1].get("action")
                want = "resumed" if policy == "resume" else "dropped"
                if action != want:
                    report.problems.append(f"cycle {cycle}: run_interrupted says {action!r}, "
                                           f"policy {policy!r}")
            except TimeoutError as exc:
                report.problems.append(f"cycle {cycle}: {exc}")
            report.cycles_done += 1
        _finish(report, controller, unit, run_id, expected, commands)
    finally:
        unit.stop()
        controller.stop()
        broker.close()
    if in_process_s:
        report.figures["in_process"] = (f"outputs off max {max(in_process_s):.2f} s after the "
                                        f"interpreter started (imports included)")
    if record_s:
        report.figures["interrupted_at"] = (f"run_interrupted at the controller max "
                                            f"{max(record_s):.2f} s after the restart")
    report.figures["policies"] = dict(policies)
    if stop_kill_every:
        report.figures["stop_kills"] = (
            f"{sum(stop_kills.values())} kills as stop_all closed the valve: "
            f"{stop_kills['finished']} recorded run_finished, {stop_kills['interrupted']} "
            f"run_interrupted (killed before the stop), {stop_kills['both']} both, "
            f"{stop_kills['neither']} neither")
        if stop_kills["both"] or stop_kills["neither"]:
            report.problems.append(f"runs stopped by stop_all and killed: "
                                   f"{stop_kills['both']} got run_finished and "
                                   f"run_interrupted, {stop_kills['neither']} neither")
            report.lost += stop_kills["neither"]
    if recovery_kill_every:
        report.figures["recovery_kills"] = recovery_kills
    again = _reported_again(unit.log)
    report.figures["reported_again"] = (
        f"{again['run_interrupted']} run_interrupted reported again by a start killed "
        f"before it saved the run (the outbox kept the first copy); {again['ended']} runs "
        f"found ended at a start (end reported, removal not saved) and removed")
    report.wall_s = budget.elapsed_s
    return report


def _stop_kill_outcome(controller: ControllerProcess, unit: IrrigationUnit, boot_seq: int,
                       run_id: str) -> str:
    """How the run killed as stop_all closed its valve ended up at the controller, once
    the restarted unit's first telemetry sample (so everything its start reported) is
    acknowledged: ``finished`` (by the stop), ``interrupted`` (dropped by the restart),
    ``both`` or ``neither``."""
    def first_sample() -> int | None:
        conn = sqlite3.connect(controller.db, timeout=30)
        try:
            row = conn.execute("SELECT min(seq) FROM telemetry WHERE device_id = ? AND "
                               "seq > ?", (DEVICE, boot_seq)).fetchone()
            return row[0]
        finally:
            conn.close()

    sample = wait_until(first_sample, 30, "a telemetry sample of the restarted unit",
                        step=0.05)
    wait_until(lambda: _acked(controller.db) >= sample, 30, "the controller's ack", step=0.05)
    seen = run_events(controller.db).get(run_id, [])
    # A run resumed after an earlier kill has a run_interrupted "resumed" already; this
    # restart drops an interrupted run.
    ends = (("run_finished", "stopped") in seen, ("run_interrupted", "dropped") in seen)
    return {(True, False): "finished", (False, True): "interrupted",
            (True, True): "both"}.get(ends, "neither")


def _reported_again(log: Path) -> Counter:
    """From the unit's log: events by type that the link found stored already under
    their key (reports made again by a start that found the state of before a kill),
    and as ``ended`` the runs a start found ended and removed."""
    found: Counter = Counter()
    if not log.exists():
        return found
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if "edge.link: event " in line and "was stored already" in line:
            found[line.split("edge.link: event ", 1)[1].split(" ", 1)[0]] += 1
        elif "had ended before the unit stopped" in line:
            found["ended"] += 1
    return found


def _online(controller: ControllerProcess) -> bool:
    response = controller.api("GET", f"/api/v1/devices/{DEVICE}")
    return response.status_code == 200 and response.json().get("online") is True


def _finish(report: Report, controller: ControllerProcess, unit: IrrigationUnit,
            run_id: str | None, expected: Counter, commands: list[str]) -> None:
    """Stop what still runs, let the outbox catch up, then count everything."""
    if run_id is None:
        ghost = unit.report().first_on_after(0.0)
        if ghost is not None:
            report.problems.append(f"an output came on at {ghost:.3f} after the last restart "
                                   f"with nothing to run")
    else:
        controller.api("POST", f"/api/v1/devices/{DEVICE}/commands",
                       json={"action": "stop_all", "params": {}}).raise_for_status()
        try:
            wait_until(lambda: unit.report().all_off(), 20, "every output off after stop_all")
        except TimeoutError as exc:
            report.problems.append(str(exc))
    # The unit keeps sending telemetry: wait until the controller acked what it has now.
    assigned, _ = outbox_state(unit.outbox)
    try:
        wait_until(lambda: _acked(controller.db) >= assigned, 30, "the controller's ack",
                   step=0.2)
    except TimeoutError as exc:
        report.problems.append(str(exc))
    report.add(count_device(controller.db, DEVICE, unit.outbox))
    got = all_interrupted(controller.db)
    doubled = sum(max(0, got[r] - n) for r, n in expected.items())
    missing = sum(max(0, n - got[r]) for r, n in expected.items())
    strays = sum(n for r, n in got.items() if r not in expected)
    report.figures["run_interrupted"] = (f"{sum(got.values())} at the controller for "
                                         f"{sum(expected.values())} kills of "
                                         f"{len(expected)} runs: {missing} missing, "
                                         f"{doubled} doubled, {strays} unexpected")
    if doubled or missing or strays:
        report.problems.append(f"run_interrupted: {missing} missing, {doubled} doubled, "
                               f"{strays} for runs never killed")
        report.doubled += doubled + strays
        report.lost += missing
    _check_run_events(report, run_events(controller.db), [f"manual:{c}" for c in commands])
    statuses = Counter(controller.api("GET", f"/api/v1/commands/{c}").json().get("status")
                       for c in commands)
    report.figures["commands"] = dict(statuses)
    rc = unit.stop()
    stopped = unit.report().stopped_states
    if rc != 0 or stopped is None or any(stopped.values()):
        report.problems.append(f"clean stop: exit {rc}, outputs {stopped}")


def _check_run_events(report: Report, events: dict, runs: list[str]) -> None:
    """Each run (all opened their valve): one ``run_started``, first; at most one
    ``run_finished``, and none after a ``run_interrupted`` that dropped the run."""
    started_missing = started_doubled = finished_doubled = finished_after_drop = 0
    finished = late = 0
    for run_id in runs:
        seen = events.get(run_id, [])
        starts = sum(1 for t, _ in seen if t == "run_started")
        late += sum(1 for t, how in seen if t == "run_started" and how == "late")
        started_missing += starts == 0
        started_doubled += max(0, starts - 1)
        if seen and seen[0][0] != "run_started":
            report.problems.append(f"{run_id}: {seen[0][0]} before its run_started")
        ends = [i for i, (t, _) in enumerate(seen) if t == "run_finished"]
        finished += len(ends)
        finished_doubled += max(0, len(ends) - 1)
        drops = [i for i, (t, how) in enumerate(seen)
                 if t == "run_interrupted" and how == "dropped"]
        finished_after_drop += bool(ends and drops)
    strays = sorted(set(events) - set(runs))
    report.figures["run_started"] = (f"{len(runs) - started_missing} of {len(runs)} runs "
                                     f"announced once: {started_missing} missing, "
                                     f"{started_doubled} doubled; {late} announced by the "
                                     f"restart (killed after saving the run, before "
                                     f"announcing it)")
    report.figures["run_finished"] = (f"{finished} at the controller: {finished_doubled} "
                                      f"doubled, {finished_after_drop} for runs also "
                                      f"reported dropped")
    if started_missing or started_doubled or finished_doubled or finished_after_drop:
        report.problems.append(
            f"run events: {started_missing} run_started missing, {started_doubled} doubled; "
            f"{finished_doubled} run_finished doubled, {finished_after_drop} for dropped runs")
        report.doubled += started_doubled + finished_doubled + finished_after_drop
        report.lost += started_missing
    if strays:
        report.problems.append(f"run events for runs never commanded: {strays[:5]}")


def _acked(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        row = conn.execute("SELECT acked_seq FROM device_seq WHERE device_id = ?",
                           (DEVICE,)).fetchone()
        return row[0] if row else 0
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], cycles=50, max_s=900)
    p.add_argument("--resume-every", type=int, default=4,
                   help="every Nth restart runs with on_interrupted = resume (0: never)")
    p.add_argument("--recovery-kill-every", type=int, default=0,
                   help="every Nth cycle also kill the restarted unit while it records the "
                        "interrupted run (default 0: never)")
    p.add_argument("--stop-kill-every", type=int, default=0,
                   help="every Nth cycle send stop_all and kill the unit the moment its "
                        "valve closes (default 0: never)")
    args = p.parse_args(argv)
    return main_with(run, args, resume_every=args.resume_every,
                     recovery_kill_every=args.recovery_kill_every,
                     stop_kill_every=args.stop_kill_every)


if __name__ == "__main__":
    sys.exit(main())
