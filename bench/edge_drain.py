"""How long does a unit take to deliver a day's backlog after its network returns?

A unit offline for 24 hours holds about 1,440 telemetry samples (one a minute) and some
200 events in its outbox. This script fills an outbox with that, starts a private
Mosquitto on a free port, a controller stand-in that stores by seq and acks each
delivery, and the unit's link; it times the drain from connect until the controller has
acked the last seq and the outbox is empty, for the default drain rate and unlimited.

    .venv/bin/python bench/edge_drain.py [--telemetry 1440] [--events 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "edge" / "link")]

from gpiozero.pins.mock import MockFactory  # noqa: E402
from link_helpers import AckingController, LimitApp, unit_toml  # noqa: E402

from edge.config import parse_config  # noqa: E402
from edge.daemon import build_unit  # noqa: E402
from edge.link import LinkOptions  # noqa: E402
from tests.support.broker import MosquittoBroker  # noqa: E402


def run(broker, workdir: Path, telemetry: int, events: int, options: LinkOptions) -> dict:
    config = parse_config(tomllib.loads(unit_toml(broker, workdir / "state")))
    unit = build_unit(config, pin_factory=MockFactory(), app_class=LimitApp,
                      link_options=options, sync_check=lambda: True)
    link = unit.link
    t0 = time.perf_counter()
    every = max(1, telemetry // max(1, events))
    made_events = 0
    for i in range(telemetry):
        link.telemetry({"moisture_pct.lawn": 30.0 + i % 10, "flow_lpm.main": 0.0},
                       {"valve1": False})
        if made_events < events and i % every == 0:
            link.event("run_finished", zone="lawn", duration_s=600, water_l=182.5)
            made_events += 1
    while made_events < events:
        link.event("run_finished", zone="lawn", duration_s=600, water_l=182.5)
        made_events += 1
    fill_s = time.perf_counter() - t0
    last = link.outbox.next_seq - 1

    controller = AckingController(broker, client_id=f"bench-{time.monotonic_ns()}").start()
    time.sleep(0.5)  # let the controller subscribe
    t0 = time.perf_counter()
    unit.start()  # adds a "started" event
    last += 1
    while controller.upto < last or link.outbox.backlog:
        unit.tick()
        time.sleep(0.01)
        if time.perf_counter() - t0 > 600:
            raise TimeoutError("drain did not finish in 10 minutes")
    drain_s = time.perf_counter() - t0
    result = {"rows": last, "fill_s": fill_s, "drain_s": drain_s,
              "deliveries": controller.deliveries, "acks": controller.acks_sent}
    controller.close()
    unit.close()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--telemetry", type=int, default=1440)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    default = LinkOptions()
    cases = [
        (f"default ({default.drain_rate_per_s:.0f}/s, window {default.window})", default),
        ("unlimited rate, window 100", dataclasses.replace(default, drain_rate_per_s=None)),
    ]
    print(f"backlog: {args.telemetry} telemetry + {args.events} events")
    print(f"{'drain rate':34} {'rows':>6} {'fill s':>7} {'drain s':>8} {'rows/s':>8} "
          f"{'deliveries':>10}")
    with MosquittoBroker(log_all=False) as broker:
        for name, options in cases:
            with tempfile.TemporaryDirectory(prefix="edge-drain-") as tmp:
                r = run(broker, Path(tmp), args.telemetry, args.events, options)
            print(f"{name:34} {r['rows']:>6} {r['fill_s']:>7.2f} {r['drain_s']:>8.2f} "
                  f"{r['rows'] / r['drain_s']:>8.0f} {r['deliveries']:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
