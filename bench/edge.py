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

    .venv/bin/python bench/edge.py [--idle-s 30] [--quick] [--no-bytecode] [--stages]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/
from bench.common import (  # noqa: E402
    ROOT,
    Figure,
    cpu_seconds,
    machine,
    memory_kb,
    print_figures,
    print_table,
    start_broker,
    wait_until,
    write_json,
)

EXAMPLE = ROOT / "config" / "irrigation.example.toml"
PACKAGES = ("edge", "protocol")  # the project's packages a unit runs
RUN_S = 10  # the shortest manual run the irrigation app accepts (rules.MIN_RUN_S)


# --------------------------------------------------------------------------- unit process

def unit_process(config: str, pin_log: str) -> int:
    """``smartcity-edge run --pin-factory mock``, with mock pins that log each change as
    ``monotonic_time pin state``."""
    from gpiozero.pins.mock import MockFactory, MockPin

    import edge.hardware
    from edge.cli import main

    log = open(pin_log, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    class RecordingPin(MockPin):
        def _change_state(self, value):
            changed = super()._change_state(value)
            if changed and self._function == "output":
                log.write(f"{time.monotonic():.6f} {self.info.name} {int(value)}\n")
            return changed

    real = edge.hardware.make_pin_factory
    edge.hardware.make_pin_factory = lambda name: (
        MockFactory(pin_class=RecordingPin) if name == "mock" else real(name))
    return main(["run", "--config", config, "--pin-factory", "mock"])


def unit_config(workdir: Path, broker, name: str, *, master: bool = True) -> Path:
    """The example config with this machine's state dir, the bench broker and a trusted
    clock (a Pi with NTP; a command needs one). ``master=False`` drops the pump."""
    text = EXAMPLE.read_text()
    text = re.sub(r'(?m)^state_dir = .*$', f'state_dir = "{workdir / name}"', text)
    text = re.sub(r'(?m)^device_id = "(.*)"$', rf'device_id = "\1-{name}"', text)
    text = re.sub(r"(?ms)^\[broker\]\n.*?\n\n",
                  f'[broker]\nhost = "{broker.host}"\nport = {broker.port}\n\n', text)
    text = re.sub(r'(?m)^sync_check = .*$', 'sync_check = "assume_synced"', text)
    if not master:
        text = re.sub(r"(?ms)^\[master\]\n.*?\n\n", "", text)
    path = workdir / f"{name}.toml"
    path.write_text(text)
    tomllib.loads(text)
    return path


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None,
           cwd: Path = ROOT) -> subprocess.Popen:
    env = env or dict(os.environ, PYTHONPATH=str(ROOT))
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def edge_command() -> list[str]:
    """The installed ``smartcity-edge`` next to this Python, else ``python -m edge.cli``."""
    script = Path(sys.executable).with_name("smartcity-edge")
    return [str(script)] if script.exists() else [sys.executable, "-m", "edge.cli"]


def unit_tree(workdir: Path, bytecode: bool) -> Path:
    """A copy of the project's packages (no bytecode), compiled as ``pip install`` does
    if ``bytecode``. The daemon runs from it and never writes to it
    (``PYTHONDONTWRITEBYTECODE``), as under ``ProtectSystem=strict``."""
    src = workdir / "src"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if bytecode:
        subprocess.run([sys.executable, "-I", "-m", "compileall", "-q",
                        *(str(src / package) for package in PACKAGES)], check=True)
    return src


def unit_env(src: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")


# --------------------------------------------------------------------------- 1. memory, CPU

def idle_unit(workdir: Path, broker, warmup_s: float, idle_s: float, src: Path) -> dict:
    config = unit_config(workdir, broker, "idle-unit")
    proc = _spawn([*edge_command(), "run", "--config", str(config), "--pin-factory", "mock"],
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
        _stop(proc)


# --------------------------------------------------------------------------- memory by stage

STAGES = r"""
import sys, time
def mark(stage):
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    print(stage, status["VmRSS"].split()[0], status["VmHWM"].split()[0], len(sys.modules),
          sep="\t", flush=True)
mark("Python started")
if sys.argv[1] == "pydantic":
    from pydantic import BaseModel
    class Model(BaseModel):
        x: int
    Model(x=1)
    mark("pydantic imported, one model built and used")
    sys.exit()
from edge import cli
cli.build_parser()
mark("edge.cli imported, parser built (argparse, logging)")
from pydantic import BaseModel
class Model(BaseModel):
    x: int
Model(x=1)
mark("pydantic, one model built and used")
import paho.mqtt.client
mark("paho-mqtt (imports ssl, http.client, urllib.request)")
import json, sqlite3
mark("sqlite3, json")
import protocol
mark("protocol (its pydantic models)")
import gpiozero
mark("gpiozero (its package imports every device class)")
import astral.sun, schedule, tomllib, zoneinfo
mark("astral, schedule, tomllib, zoneinfo")
import edge.config, edge.irrigation.config
mark("edge.config, irrigation config models and rules, edge.app")
import edge.daemon, edge.service
mark("edge.daemon, link, outbox, state, service")
import minimalmodbus, serial
mark("pyserial, minimalmodbus (the config's serial and Modbus probes)")
import edge.irrigation.app, edge.irrigation.devices, edge.sensors.soil
mark("irrigation app, devices, sensor drivers")
from edge.hardware import make_pin_factory
config = edge.config.load_config(sys.argv[1])
factory = make_pin_factory("mock")
mark("config read and validated, mock pin factory")
unit = edge.daemon.build_unit(config, pin_factory=factory)
mark("unit built (outputs, sensors, state.db, outbox.db)")
unit.start()
deadline = time.monotonic() + 10
while not unit.link.connected and time.monotonic() < deadline:
    unit.tick()
    time.sleep(0.05)
mark("started, link up")
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    unit.tick()
    time.sleep(0.2)
mark(f"after {sys.argv[2]} s of running")
unit.close()
"""


def memory_stages(workdir: Path, broker, src: Path, run_s: float) -> list[dict]:
    """VmRSS and VmHWM in a fresh interpreter after each step of a unit's start-up: its
    imports one group at a time, in the order of their dependencies, then the steps of
    ``smartcity-edge run`` (config, unit, start); and pydantic with one model alone."""
    config = unit_config(workdir, broker, "stages-unit")
    rows = []
    for argv in (["pydantic"], [str(config), str(run_s)]):
        with (workdir / "stages.log").open("ab") as log:
            out = subprocess.run([sys.executable, "-c", STAGES, *argv], env=unit_env(src),
                                 cwd=workdir, stdout=subprocess.PIPE, stderr=log, text=True,
                                 timeout=120, check=True).stdout
        for line in out.splitlines():
            stage, rss, hwm, modules = line.split("\t")
            rows.append({"stage": stage, "rss_kb": int(rss), "hwm_kb": int(hwm),
                         "modules": int(modules)})
    return rows


# --------------------------------------------------------------------------- 2. valve timing

class Commander:
    """Sends commands to one unit over MQTT and waits for its final replies."""

    def __init__(self, broker, opd: str, device: str):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        from protocol import Channel, topic

        self.cmd_topic = topic(opd, device, Channel.CMD)
        self.status_topic = topic(opd, device, Channel.STATUS)
        self.replies: dict[str, list[str]] = {}
        self.online = threading.Event()
        self.changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"bench-commander-{uuid.uuid4().hex[:6]}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(
            [(topic(opd, device, Channel.CMD_REPLY), 1), (self.status_topic, 1)])
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        from protocol import CommandReply, Status, decode
        if msg.topic == self.status_topic:
            if decode(Status, msg.payload).online:
                self.online.set()
            return
        reply = decode(CommandReply, msg.payload)
        with self.changed:
            self.replies.setdefault(reply.id, []).append(reply.status.value)
            self.changed.notify_all()

    def send(self, action: str, **params) -> str:
        from protocol import Command, encode
        now = datetime.now(UTC)
        command = Command(id=uuid.uuid4().hex, issued_at=now,
                          expires_at=now + timedelta(minutes=5), action=action, params=params)
        self.client.publish(self.cmd_topic, encode(command), qos=1)
        return command.id

    def wait_final(self, command_ids: list[str], timeout: float) -> dict[str, list[str]]:
        final = {"done", "failed", "rejected", "expired"}
        deadline = time.monotonic() + timeout
        with self.changed:
            while not all(final & set(self.replies.get(i, [])) for i in command_ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = {i: self.replies.get(i) for i in command_ids}
                    raise TimeoutError(f"no final reply: {got}")
                self.changed.wait(left)
        return {i: self.replies[i] for i in command_ids}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def on_intervals(lines: list[str], pins: set[str]) -> dict[str, list[tuple[float, float]]]:
    """pin -> [(on_at, off_at)] of ``pins`` from pin log lines."""
    opened: dict[str, float] = {}
    out: dict[str, list[tuple[float, float]]] = {}
    for line in lines:
        t, pin, state = line.split()
        if pin not in pins:
            continue
        if state == "1":
            opened[pin] = float(t)
        elif pin in opened:
            out.setdefault(pin, []).append((opened.pop(pin), float(t)))
    return out


def valve_timing(workdir: Path, broker, rounds: list[list[str]], master: bool) -> dict:
    config_path = unit_config(workdir, broker, "timing-unit", master=master)
    config = tomllib.loads(config_path.read_text())
    pins = {f"GPIO{o['pin']}": o["name"] for o in config["outputs"]}
    valve_of = {z["name"]: z["valve"] for z in config["zones"]}
    m = config.get("master")
    pre_s, post_s = (m["pre_s"], m["post_s"]) if m else (0.0, 0.0)
    pin_log = workdir / "timing-pins.log"
    proc = _spawn([sys.executable, str(Path(__file__).resolve()), "--unit-process",
                   str(config_path), str(pin_log)], workdir / "timing-unit.log")
    commander = Commander(broker, config["unit"]["opd"], config["unit"]["device_id"])
    rows, replies = [], {}
    try:
        if not commander.online.wait(30):
            raise TimeoutError("the timing unit did not come online")
        for zones in rounds:
            mark = len(pin_log.read_text().splitlines()) if pin_log.exists() else 0
            ids = [commander.send("run_zone", zone=z, duration_s=RUN_S) for z in zones]
            replies |= commander.wait_final(ids, timeout=RUN_S + pre_s + post_s + 30)
            wait_until(lambda: not _any_on(pin_log, pins), 10, "every output off")
            lines = pin_log.read_text().splitlines()[mark:] if pin_log.exists() else []
            for pin, spans in on_intervals(lines, set(pins)).items():
                name = pins[pin]
                expected = RUN_S if name == (m or {}).get("output") else \
                    RUN_S + pre_s + post_s
                zone = next((z for z, v in valve_of.items() if v == name), None)
                for on, off in spans:
                    rows.append({"output": name, "zone": zone, "on_s": off - on,
                                 "expected_s": expected,
                                 "error_ms": 1000 * abs(off - on - expected)})
    finally:
        commander.close()
        _stop(proc)
    return {"rows": rows, "replies": replies}


def _any_on(pin_log: Path, pins: dict[str, str]) -> bool:
    state: dict[str, str] = {}
    lines = pin_log.read_text().splitlines() if pin_log.exists() else []
    for line in lines:
        _, pin, value = line.split()
        if pin in pins:
            state[pin] = value
    return "1" in state.values()


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


def print_stages(rows: list[dict]) -> int:
    table, previous = [], 0.0
    for r in rows:
        mib = r["hwm_kb"] / 1024
        plus = "" if r["stage"] == "Python started" else f"{mib - previous:+.1f}"
        table.append((r["stage"], f"{r['rss_kb'] / 1024:.1f}", f"{mib:.1f}", plus,
                      r["modules"]))
        previous = mib
    print_table("Memory by stage of start-up (each row: after that step; two processes)",
                ["stage", "VmRSS MiB", "VmHWM MiB", "+ MiB", "modules"], table)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    return 0


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
