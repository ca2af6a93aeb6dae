"""How many bytes does each unit daemon write to its storage (the SD card) in a day?

Each daemon (irrigation, fish feeder) runs for real: ``smartcity-edge run`` with the
example config (config/*.example.toml; only its state_dir, broker and clock check
changed, as in bench/edge.py) on mock pins, in a subprocess, with a private Mosquitto
and a controller stand-in that stores and acks what it receives
(tests/edge/link/link_helpers.py ``AckingController``). Its state dir (``state.db``,
``outbox.db``) is on a real disk, not tmpfs (``--dir``, default /var/tmp): the kernel
counts in ``/proc/<pid>/io`` ``write_bytes`` what a process sends to a block device, and
a tmpfs has none. Its log goes to tmpfs (/dev/shm) when there is one, as a unit's goes
to the journal; the log's size is reported apart. It writes no bytecode
(``PYTHONDONTWRITEBYTECODE``), as a unit whose packages were compiled at install.

The field behind the pins: the irrigation unit's rain switch reads dry (a mock pin
pulled up reads "wet" in the example's wiring); the fish feeder's probes, hoppers and
rotation sensors are the simulator's (``edge.sim.fish_feeder``, aerators on), so a
feeding is a normal one, not a jam nor one held back for low oxygen.

A day cannot be waited for. Measured instead, from ``write_bytes`` at the start and the
end of each window:

1. an idle window at the example's telemetry interval (300 s), and at the same time a
   window of a second daemon of the same config but for telemetry every second: two
   equations give the background rate (checkpoints, marks) and the cost of one
   telemetry sample (stored, published, acked, deleted). Samples are counted by their
   time stamp, so one written in a window but delivered after it counts;
2. a manual run (irrigation: ``run_zone`` of 10 s and of 60 s, for the fixed cost of a
   run and the cost of each second of watering) and a feeding (``feed_now``), less the
   background and the telemetry samples over the same time.

Then bytes a day = background x 86,400 s + per sample x samples a day + the runs and
feedings of the example's busiest day (its programs' starts counted over a year with
``protocol.planner``; a cycle-and-soak run counts one run per cycle). Syncs are not
counted: /proc has no counter of a process's fsync calls.

    .venv/bin/python bench/writes.py [--idle-s 300] [--fast-s 60] [--quick] [--json FILE]
    .venv/bin/python bench/writes.py --old-writes   # the marks saved as before
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
import tempfile
import threading
import time
import tomllib
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]),
                str(Path(__file__).resolve().parents[1] / "tests" / "edge" / "link")]
from bench.common import (  # noqa: E402
    Figure,
    machine,
    print_figures,
    print_table,
    start_broker,
    wait_until,
    write_json,
)
from bench.edge_timing import Commander  # noqa: E402
from bench.edge_unit import (  # noqa: E402
    EXAMPLE,
    FISH_FEEDER_EXAMPLE,
    spawn,
    stop,
    unit_config,
)

GOAL_MB_DAY = 20.0
MB = 1_000_000
SCRIPT = Path(__file__).resolve()
EXAMPLES = {"irrigation": EXAMPLE, "fish_feeder": FISH_FEEDER_EXAMPLE}


# --------------------------------------------------------------------------- the daemon

def unit_process(kind: str, config: str, old: bool = False) -> int:
    """``smartcity-edge run --pin-factory mock`` with the field behind the pins (see the
    module's docstring)."""
    from edge.config import validate_config
    from edge.daemon import run_unit

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parsed = validate_config(config)
    if old:
        old_marks()
    if kind == "irrigation":
        from edge.irrigation.app import IrrigationApp

        def app_class(cfg, **kwargs):
            app = IrrigationApp(cfg, **kwargs)
            if cfg.rain is not None:  # dry weather: the rain switch's dry level
                spec = cfg.input(cfg.rain.input)
                pin = app.pin_factory.pin(spec.pin)
                (pin.drive_high if not spec.active_high else pin.drive_low)()
            return app
    else:
        from edge.clock import SystemClock
        from edge.fish_feeder.app import FishFeederApp
        from edge.sim.fish_feeder import FishFeederSim

        # Aerators on: oxygen near saturation at any hour, so the interlocks let a
        # feeding go whenever the bench asks for one.
        sim = FishFeederSim(parsed, SystemClock(), seed=7,
                            ponds={p.name: {"reaeration_per_h": 5.0} for p in parsed.ponds})

        def app_class(cfg, **kwargs):
            app = FishFeederApp(cfg, **kwargs, **sim.app_kwargs())
            sim.attach(app)
            sim.start_realtime()
            return app
    return run_unit(config, pin_factory="mock", app_class=app_class)


def old_marks() -> None:
    """The behaviour before the marks were saved only when they pass a start: the
    irrigation unit's schedule mark at every checkpoint (``[runs] checkpoint_s``), the
    fish feeder's catch-up mark at every water-quality poll (``[water] poll_s``)."""
    from edge.fish_feeder.app import FishFeederApp
    from edge.fish_feeder.pending import iso_utc
    from edge.irrigation.planning import Planning

    def save_alive(app, mark):
        app.state.set("ff.alive", iso_utc(mark))
        app._alive = mark

    Planning.restart_mark = property(lambda planning: planning.mark)
    FishFeederApp._save_alive = save_alive


def proc_io(pid: int) -> dict[str, int]:
    """``/proc/<pid>/io`` as numbers (``write_bytes``: to the block device; ``wchar``:
    every byte passed to write(), page cache and pipes included)."""
    out = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = int(value)
    return out


def filesystem(path: Path) -> str:
    """The type of the file system ``path`` is on (from /proc/mounts)."""
    best, kind = "", "unknown"
    path = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount, fstype, *_ = line.split()
        if (path == mount or path.startswith(mount.rstrip("/") + "/")) and \
                len(mount) >= len(best):
            best, kind = mount, fstype
    return kind


class Daemon:
    """One unit daemon in a subprocess, its controller stand-in and its commander."""

    def __init__(self, kind: str, workdir: Path, logdir: Path, broker, name: str,
                 telemetry_s: float | None = None, old: bool = False):
        from link_helpers import AckingController

        self.kind = kind
        self.config_path = unit_config(workdir, broker, name, example=EXAMPLES[kind],
                                       telemetry_s=telemetry_s)
        self.config = tomllib.loads(self.config_path.read_text())
        opd, device = self.config["unit"]["opd"], self.config["unit"]["device_id"]
        self.log = logdir / f"{name}.log"
        self.controller = AckingController(broker, client_id=f"bench-ack-{name}",
                                           opd=opd, device=device).start()
        # A unit's bytecode is compiled when it is installed: the daemon writes none.
        env = dict(os.environ, PYTHONPATH=str(SCRIPT.parents[1]), PYTHONDONTWRITEBYTECODE="1")
        self.proc = spawn([sys.executable, str(SCRIPT), "--unit-process", kind,
                           str(self.config_path), *(["--old-writes"] if old else [])],
                          self.log, env=env)
        self.commander = Commander(broker, opd, device)
        self.closed = False

    def io(self) -> dict[str, int]:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the {self.kind} daemon exited with {self.proc.returncode};"
                               f" see {self.log}")
        return proc_io(self.proc.pid)

    def samples(self, span: dict) -> int:
        """Telemetry samples the unit made (its ``ts``) within a window's ``span``."""
        return sum(1 for doc in self.controller.payloads().values()
                   if "type" not in doc and span["from"] <= _utc(doc["ts"]) <= span["to"])

    def settle(self, warmup_s: float, timeout: float = 30.0) -> None:
        """Wait until the unit is online, then ``warmup_s`` for its start to be over."""
        if not self.commander.online.wait(timeout):
            raise TimeoutError(f"the {self.kind} daemon did not come online; see {self.log}")
        time.sleep(warmup_s)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.commander.close()
        finally:
            try:
                stop(self.proc)
            finally:
                self.controller.close()


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _now() -> datetime:
    return datetime.now(UTC)


def window(daemon: Daemon, seconds: float) -> dict:
    """Bytes written and logged over ``seconds`` of ``daemon`` (its telemetry samples are
    counted afterwards, by their time: ``Daemon.samples``)."""
    io0, t0, at0 = daemon.io(), time.monotonic(), _now()
    log0 = daemon.log.stat().st_size
    time.sleep(seconds)
    io1, t1, at1 = daemon.io(), time.monotonic(), _now()
    return {"s": t1 - t0, "from": at0, "to": at1,
            "log_bytes": daemon.log.stat().st_size - log0,
            **{k: io1[k] - io0[k] for k in ("write_bytes", "wchar")}}


def action(daemon: Daemon, command: str, timeout: float, after_s: float, **params) -> dict:
    """Bytes written from sending ``command`` until it is done and its reports acked."""
    io0, t0, at0 = daemon.io(), time.monotonic(), _now()
    cmd = daemon.commander.send(command, **params)
    replies = daemon.commander.wait_final([cmd], timeout)[cmd]
    time.sleep(after_s)  # the run's last events, the post-run save, the acks
    io1, t1, at1 = daemon.io(), time.monotonic(), _now()
    return {"s": t1 - t0, "from": at0, "to": at1, "replies": replies,
            **{k: io1[k] - io0[k] for k in ("write_bytes", "wchar")}}


# --------------------------------------------------------------------------- the day

def busiest_day(kind: str, config_path: Path) -> dict:
    """What the example's schedule does on its busiest local day of a year."""
    from edge.config import validate_config

    config = validate_config(config_path)
    if kind == "fish_feeder":
        feedings = sum(len(p.plan.times) * len(config.feeders_of(p.name))
                       for p in config.ponds)
        return {"feedings": feedings}
    from protocol.planner import Plan, Site, StartPlanner

    program = config.program
    site = Site.from_config(config.site)
    planner = StartPlanner([Plan.of(p) for p in program.programs], site)
    by_name = {p.name: p for p in program.programs}
    best = {"runs": 0, "cycles": 0, "watering_s": 0.0, "day": None}
    day = date(2026, 1, 1)
    while day.year == 2026:
        t0 = datetime.combine(day, dtime(), site.tz)
        runs = cycles = 0
        watering_s = 0.0
        for planned in planner.between(t0, t0 + timedelta(days=1)):
            for pz in by_name[planned.program].zones:
                cycle = program.rules_for(pz.zone).cycle_min
                runs += 1
                cycles += math.ceil(pz.duration_min / cycle) if cycle else 1
                watering_s += pz.duration_min * 60.0
        if watering_s > best["watering_s"]:
            best = {"runs": runs, "cycles": cycles, "watering_s": watering_s,
                    "day": day.isoformat()}
        day += timedelta(days=1)
    return best


def measure(kind: str, workdir: Path, logdir: Path, broker, args, results: dict) -> None:
    """Every window of one kind of daemon; the figures go into ``results[kind]``. The
    daemon with telemetry every second runs beside the idle one, at the same time."""
    out: dict = {}
    workdir, logdir = workdir / kind, logdir / kind
    workdir.mkdir()
    logdir.mkdir()
    daemon = Daemon(kind, workdir, logdir, broker, "idle", old=args.old_writes)
    fast = Daemon(kind, workdir, logdir, broker, "fast", telemetry_s=1, old=args.old_writes)
    try:
        fast.settle(0)
        wait_until(lambda: any("type" not in doc for doc in fast.controller.payloads().values()),
                   60, f"a first telemetry sample from the {kind} daemon")
        daemon.settle(args.warmup_s)

        def fast_window():
            try:
                out["fast"] = window(fast, args.fast_s)
            finally:
                fast.close()

        beside = threading.Thread(target=fast_window, daemon=True)
        beside.start()
        out["idle"] = window(daemon, args.idle_s)
        if kind == "irrigation":
            zone = daemon.config["zones"][0]["name"]
            master = daemon.config.get("master") or {}
            after = master.get("post_s", 0) + master.get("pre_s", 0) + args.after_s
            for key, seconds in (("run_short", 10), ("run_long", args.long_run_s)):
                out[key] = action(daemon, "run_zone", seconds + 60, after, zone=zone,
                                  duration_s=seconds)
                out[key]["run_s"] = seconds
        else:
            feeder = daemon.config["feeders"][0]
            out["feeding"] = action(daemon, "feed_now", 120, args.after_s,
                                    feeder=feeder["name"], dose_g=float(args.dose_g))
        beside.join()
        time.sleep(2)  # the last samples reach the stand-ins
    finally:
        fast.close()
        daemon.close()
    if "fast" not in out:
        raise RuntimeError(f"no window with telemetry every second; see {fast.log}")
    for name, w in out.items():
        w["samples"] = (fast if name == "fast" else daemon).samples(w)
    out["day"] = busiest_day(kind, daemon.config_path)
    results[kind] = out


def per_day(kind: str, r: dict) -> dict:
    """Solve background rate and per-sample cost from the two windows; add up a day."""
    idle, fast = r["idle"], r["fast"]
    # write_bytes = background * s + samples * per_sample, for both windows.
    det = idle["s"] * fast["samples"] - fast["s"] * idle["samples"]
    if det <= 0:
        raise RuntimeError(f"{kind}: no more telemetry samples in the fast window than in "
                           f"the idle one ({fast['samples']}, {idle['samples']})")
    background = (idle["write_bytes"] * fast["samples"]
                  - fast["write_bytes"] * idle["samples"]) / det
    per_sample = (idle["s"] * fast["write_bytes"] - fast["s"] * idle["write_bytes"]) / det
    samples_day = 86_400 / r["telemetry_s"]
    parts = {"background": background * 86_400, "telemetry": per_sample * samples_day}
    day = r["day"]

    def own(w: dict) -> float:  # an action's bytes less the background and the samples
        return w["write_bytes"] - background * w["s"] - per_sample * w["samples"]

    if kind == "irrigation":
        short, long_ = r["run_short"], r["run_long"]
        per_s = max(0.0, (own(long_) - own(short)) / (long_["run_s"] - short["run_s"]))
        per_run = max(0.0, own(short) - per_s * short["run_s"])
        parts["runs"] = per_run * day["cycles"] + per_s * day["watering_s"]
        extra = {"per_run": per_run, "per_watering_s": per_s}
    else:
        feeding = own(r["feeding"])
        parts["feedings"] = max(0.0, feeding) * day["feedings"]
        extra = {"per_feeding": feeding}
    return {"background_per_s": background, "per_sample": per_sample, **extra,
            "parts": parts, "total": sum(parts.values()),
            "log_per_day": idle["log_bytes"] / idle["s"] * 86_400}


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-s", type=float, default=300.0,
                        help="window at the example's telemetry interval")
    parser.add_argument("--fast-s", type=float, default=60.0,
                        help="window with telemetry every second")
    parser.add_argument("--warmup-s", type=float, default=10.0)
    parser.add_argument("--long-run-s", type=int, default=60,
                        help="the longer run_zone (below the example's no-flow limit)")
    parser.add_argument("--dose-g", type=float, default=180.0, help="the feed_now dose")
    parser.add_argument("--after-s", type=float, default=5.0,
                        help="wait after a run or feeding ends (its reports, the acks)")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"),
                        help="where the units' state dirs go (a real disk, not tmpfs)")
    parser.add_argument("--only", choices=sorted(EXAMPLES), help="one daemon only")
    parser.add_argument("--old-writes", action="store_true",
                        help="the old behaviour: the schedule marks saved at every "
                             "checkpoint and sensor poll")
    parser.add_argument("--quick", action="store_true",
                        help="10 s windows, runs of 10 and 12 s: rough figures")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--unit-process", nargs=2, metavar=("KIND", "CONFIG"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.unit_process:
        return unit_process(*args.unit_process, old=args.old_writes)
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        args.idle_s, args.fast_s, args.warmup_s, args.long_run_s = 10.0, 10.0, 2.0, 12
        args.dose_g, args.after_s = 90.0, 2.0
    fs = filesystem(args.dir)
    if fs in ("tmpfs", "ramfs"):
        parser.error(f"--dir {args.dir} is on {fs}: write_bytes would be 0")
    shm = Path("/dev/shm")
    print(f"writes: example units, mock pins; state on {fs} ({args.dir}); {machine()}")
    if args.old_writes:
        print("old behaviour: schedule marks saved at every checkpoint and sensor poll")
    kinds = [args.only] if args.only else sorted(EXAMPLES)
    results: dict = {}
    errors: list[BaseException] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="bench-writes-", dir=args.dir)))
        logdir = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="bench-writes-log-", dir=shm if shm.is_dir() else workdir)))
        broker = stack.enter_context(start_broker())

        def run(kind):
            try:
                measure(kind, workdir, logdir, broker, args, results)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in kinds]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    figures, rows, days = [], [], {}
    for kind in kinds:
        r = results[kind]
        r["telemetry_s"] = tomllib.loads(EXAMPLES[kind].read_text())["telemetry"]["interval_s"]
        d = per_day(kind, r)
        days[kind] = d
        rows += [(kind, "background (checkpoints, marks)", f"{d['background_per_s']:.0f} B/s",
                  d["parts"]["background"] / MB),
                 (kind, f"telemetry every {r['telemetry_s']:g} s",
                  f"{d['per_sample']:,.0f} B/sample", d["parts"]["telemetry"] / MB)]
        if kind == "irrigation":
            day = r["day"]
            rows.append((kind, f"runs: {day['cycles']} cycles, "
                               f"{day['watering_s'] / 60:.0f} min ({day['day']})",
                         f"{d['per_run']:,.0f} B/run + {d['per_watering_s']:.0f} B/s",
                         d["parts"]["runs"] / MB))
        else:
            rows.append((kind, f"feedings: {r['day']['feedings']} a day",
                         f"{d['per_feeding']:,.0f} B/feeding", d["parts"]["feedings"] / MB))
        rows.append((kind, "total", "", d["total"] / MB))
        figures.append(Figure(f"{kind}: bytes written a day", f"<= {GOAL_MB_DAY:.0f} MB",
                              f"{d['total'] / MB:.1f} MB", d["total"] / MB <= GOAL_MB_DAY))
    print_table("Bytes written to storage a day (write_bytes of /proc/<pid>/io)",
                ["daemon", "part", "cost", "MB/day"], rows)
    print_table("Windows", ["daemon", "window", "s", "samples", "reply", "write_bytes",
                            "wchar"],
                [(k, w, results[k][w]["s"], results[k][w]["samples"],
                  results[k][w].get("replies", ["-"])[-1],
                  results[k][w]["write_bytes"], results[k][w]["wchar"])
                 for k in kinds for w in ("idle", "fast", "run_short", "run_long", "feeding")
                 if w in results[k]])
    print_table("Log lines (to the journal on a unit; not in the figures above)",
                ["daemon", "bytes a day at rest"],
                [(k, f"{days[k]['log_per_day'] / 1000:,.0f} kB") for k in kinds])
    print_figures("Figures", figures)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    write_json(args.json, {"bench": "writes", "filesystem": fs, "results": results,
                           "days": days, "figures": figures})
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
