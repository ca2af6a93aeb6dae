"""The edge bench's memory by stage (``bench/edge.py --stages``): a unit daemon's resident
set after each step of its start-up, each measured in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.common import print_table
from bench.edge_unit import unit_config, unit_env

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
