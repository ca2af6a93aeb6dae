"""What does an edge unit cost, how exactly does it time a valve, how fast does it catch up?

Three measurements, on loopback with a private Mosquitto:

1. Memory and idle CPU: ``smartcity-edge run --pin-factory mock`` with the example
   irrigation config (config/irrigation.example.toml; only its state_dir, broker and
   clock check changed for this machine) in a subprocess. Its CPU time is read from
   /proc over an idle window (nothing scheduled, telemetry every 5 min), and its peak
   resident set (VmHWM) at the end, after the whole window of running. The daemon runs
   the project's packages as a unit does: from a copy of ``edge/`` and ``protocol/``
   it may not write to, with their bytecode compiled beforehand, as ``pip install``
   does when a unit is installed (docs/provisioning.md); ``--no-bytecode`` leaves that
   out, so the daemon compiles the modules itself at every start (as with an editable
   install, whose source directory the daemon may not write to).
   ``--stages`` only prints the daemon's memory after each step of its start-up (and a
   bare Python and pydantic with one model for reference), to see where it goes.
2. Valve timing: the same config in a second daemon whose mock pins log each change
   with its time. The bench sends ``run_zone`` commands (10 s) over MQTT and compares
   how long each valve and the pump were really on with what the config asks: the pump
   runs the watering time; a zone valve opens ``pre_s`` before the pump and closes
   ``post_s`` after it (``[master]``).
3. Catch-up: a day offline (1,440 telemetry samples and 200 events in the outbox)
   drained to a controller stand-in that acks what it stores (bench/edge_drain.py), at
   the default drain rate and without a limit.

The unit under test (its config, package tree and process) is in ``bench/edge_unit.py``,
the memory by stage in ``bench/edge_stages.py``, the valve timing in
``bench/edge_timing.py``.

    .venv/bin/python bench/edge.py [--idle-s 30] [--quick] [--no-bytecode] [--stages]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/
from bench.common import (  # noqa: E402
    Figure,
    cpu_seconds,
    machine,
    memory_kb,
    print_figures,
    print_table,
    start_broker,
    write_json,
)
from bench.edge_stages import memory_stages, print_stages  # noqa: E402
from bench.edge_timing import RUN_S, unit_process, valve_timing  # noqa: E402
from bench.edge_unit import (  # noqa: E402
    PACKAGES,
    edge_command,
    spawn,
    stop,
    unit_config,
    unit_env,
    unit_tree,
)

# --------------------------------------------------------------------------- 1. memory, CPU

def idle_unit(workdir: Path, broker, warmup_s: float, idle_s: float, src: Path) -> dict:
    config = unit_config(workdir, broker, "idle-unit")
    proc = spawn([*edge_command(), "run", "--config", str(config), "--pin-factory", "mock"],
                 workdir / "idle-unit.log", env=unit_env(src), cwd=workdir)
    try:
        started = time.monotonic()
        time.sleep(warmup_s)
        if proc.poll() is not None:
            raise RuntimeError(f"smartcity-edge exited with {proc.returncode}; see "
                               f"{workdir / 'idle-unit.log'}")
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(idle_s)
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
        memory = memory_kb(proc.pid)
        return {"running_s": t1 - started, "idle_s": t1 - t0,
                "cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0), "startup_cpu_s": cpu0,
                "rss_kb": memory["VmRSS"], "peak_rss_kb": memory["VmHWM"]}
    finally:
        stop(proc)


# --------------------------------------------------------------------------- 3. drain

def drain_cases(workdir: Path, broker, telemetry: int, events: int) -> list[dict]:
    from bench import edge_drain
    from edge.link import LinkOptions

    default = LinkOptions()
    cases = [(f"default ({default.drain_rate_per_s:.0f}/s)", default)]
    if default.drain_rate_per_s != 100.0:
        cases.append(("100/s (the earlier default)",
                      dataclasses.replace(default, drain_rate_per_s=100.0)))
    cases.append(("no rate limit", dataclasses.replace(default, drain_rate_per_s=None)))
    out = []
    for name, options in cases:
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            r = edge_drain.run(broker, Path(tmp), telemetry, events, options)
        out.append({"case": name, "default": options is default} | r)
    return out


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-s", type=float, default=30.0, help="idle CPU window")
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--telemetry", type=int, default=1440, help="backlog samples")
    parser.add_argument("--events", type=int, default=200, help="backlog events")
    parser.add_argument("--quick", action="store_true",
                        help="3 s windows, one run without the pump, a 1-hour backlog")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="no compiled bytecode for the daemon: it compiles at start")
    parser.add_argument("--stages", action="store_true",
                        help="only the daemon's memory after each step of its start-up")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--unit-process", nargs=2, metavar=("CONFIG", "PIN_LOG"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.unit_process:
        return unit_process(*args.unit_process)
    logging.basicConfig(level=logging.WARNING)
    master = not args.quick
    # Two pairs of zones that may run together (different groups, two at most).
    rounds = [["rumput-utara", "bunga"], ["rumput-selatan", "pohon-median"]]
    if args.quick:
        args.idle_s, args.warmup_s, args.telemetry, args.events = 3.0, 2.0, 60, 10
        rounds = [["rumput-utara", "bunga"]]
    print(f"edge: example irrigation unit, mock pins; {machine()}")
    bytecode = not args.no_bytecode
    compiled = list(PACKAGES) if bytecode else []
    print("bytecode: " + (f"{', '.join(compiled)} compiled before start, as pip install "
                          "does" if compiled else
                          "none; the daemon compiles the project's modules at start"))
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp, start_broker() as broker:
        workdir = Path(tmp)
        src = unit_tree(workdir, bytecode)
        if args.stages:
            return print_stages(memory_stages(workdir, broker, src, args.idle_s))
        idle = threading.Thread(target=lambda: results.update(
            idle=idle_unit(workdir, broker, args.warmup_s, args.idle_s, src)))
        idle.start()
        try:
            results["timing"] = valve_timing(workdir, broker, rounds, master)
        finally:
            idle.join()
        results["drain"] = drain_cases(workdir, broker, args.telemetry, args.events)
    idle, timing, drain = results["idle"], results["timing"], results["drain"]

    print_table(f"Daemon at rest ({idle['idle_s']:.0f} s idle after {args.warmup_s:.0f} s "
                "warm-up)", ["figure", "value"],
                [("CPU while idle, % of one core", f"{idle['cpu_pct']:.2f}"),
                 ("CPU to start, s", f"{idle['startup_cpu_s']:.2f}"),
                 ("resident set now, MiB", f"{idle['rss_kb'] / 1024:.1f}"),
                 ("peak resident set (VmHWM), MiB", f"{idle['peak_rss_kb'] / 1024:.1f}")])
    print_table(f"Output on-time for run_zone {RUN_S:.0f} s"
                + ("" if master else " (no pump: [master] removed)"),
                ["output", "zone", "expected s", "measured s", "error ms"],
                [(r["output"], r["zone"] or "-", f"{r['expected_s']:.3f}",
                  f"{r['on_s']:.3f}", f"{r['error_ms']:.1f}") for r in timing["rows"]])
    print_table(f"Catch-up after a day offline ({args.telemetry} samples + {args.events} "
                "events)", ["drain rate", "rows", "drain s", "rows/s"],
                [(d["case"], d["rows"], d["drain_s"], d["rows"] / d["drain_s"])
                 for d in drain])

    peak_mib = idle["peak_rss_kb"] / 1024
    worst_ms = max((r["error_ms"] for r in timing["rows"]), default=float("inf"))
    done = sum(1 for statuses in timing["replies"].values() if "done" in statuses)
    runs = sum(len(z) for z in rounds)
    default_drain = next(d for d in drain if d["default"])
    lost = default_drain["rows"] - default_drain["deliveries"] if \
        default_drain["deliveries"] < default_drain["rows"] else 0
    figures = [
        Figure("peak RSS after running", "<= 40 MiB",
               f"{peak_mib:.1f} MiB ({idle['running_s']:.0f} s)", peak_mib <= 40),
        Figure("idle CPU", "<= 1 % of a core", f"{idle['cpu_pct']:.2f} %",
               idle["cpu_pct"] <= 1.0),
        Figure("valve/pump on-time error, worst", "<= 100 ms", f"{worst_ms:.1f} ms",
               worst_ms <= 100),
        Figure("runs done", str(runs), str(done), done == runs),
        Figure(f"drain a {default_drain['rows']}-row backlog (default rate)",
               "<= 10 s", f"{default_drain['drain_s']:.1f} s",
               default_drain["drain_s"] <= 10),
        Figure("rows not delivered", "0", str(lost), lost == 0),
    ]
    print_figures("Figures", figures)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    write_json(args.json, {"bench": "edge", "bytecode": bool(compiled), "idle": idle,
                           "timing": timing["rows"],
                           "runs": runs, "runs_done": done, "drain": drain,
                           "outputs_measured": len(timing["rows"]), "figures": figures})
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
