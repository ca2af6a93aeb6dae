"""Units in their own processes, for the fault campaigns. Two roles::

    python -m faults.unit_process producer CONFIG --rate 20 --stop-file FILE
    python -m faults.unit_process irrigation CONFIG --pins FILE

Both run the real daemon path: ``edge.daemon.build_unit`` (state store, outbox, MQTT
link, app on gpiozero mock pins) driven by ``edge.service.run_app`` until SIGTERM.

``producer``: an app that publishes ``--rate`` messages a second through the link,
alternately a telemetry sample and an event, each numbered (``n``) so a logical message
stored twice under two seqs would show too, until ``--stop-file`` exists.

``irrigation``: the real ``IrrigationApp``. Its mock pins report to ``--pins``, one line
each, flushed at once, so the report survives a SIGKILL:

- ``boot <wall time> <process start time> <{"output": on?}>`` right after the unit is
  built (every output constructed, and so driven off) and before it starts;
- ``<wall time> <pin name> <0|1>`` on every output change;
- ``stopped <wall time> <{"output": on?}>`` after a clean stop.
"""

from __future__ import annotations

import time

T0 = time.time()  # the process started (before the imports below)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from gpiozero.pins.mock import MockFactory, MockPin  # noqa: E402

from edge.app import App  # noqa: E402
from edge.config import load_config  # noqa: E402
from edge.daemon import build_unit  # noqa: E402
from edge.link import LinkOptions  # noqa: E402
from edge.service import run_app  # noqa: E402
from protocol.models import ReplyCode  # noqa: E402

CAMPAIGN_LINK = LinkOptions(reconnect_min_s=0.2, reconnect_max_s=2.0, resend_after_s=5.0,
                            status_min_interval_s=1.0)
"""Default link options except quicker reconnects and ack-stall resends, so a campaign
cycle takes seconds, not minutes. Window and drain rate stay at their defaults."""


class ProducerApp(App):
    """Publishes a steady stream of numbered telemetry samples and events."""

    kind = "irrigation"
    rate_per_s = 20.0
    stop_file: Path | None = None

    def start(self) -> None:
        super().start()
        self._t0 = self.clock.monotonic()
        self._made = 0

    def tick(self) -> None:
        super().tick()
        if self.stop_file is not None and self.stop_file.exists():
            return
        due = int((self.clock.monotonic() - self._t0) * self.rate_per_s) - self._made
        for _ in range(min(due, 200)):
            self._made += 1
            n = self._made
            if n % 2:
                self.publisher.telemetry({"moisture_pct.zone1": 30.0 + n % 7, "n.count": n},
                                         self.outputs.states())
            else:
                self.publisher.event("run_started", zone="zone1", duration_s=60,
                                     source="fault-campaign", n=n)

    def handle_command(self, cmd_id, action, params, reply) -> None:
        reply("rejected", ReplyCode.UNKNOWN_ACTION, action=action)

    def apply_remote_config(self, version, body) -> None:
        pass

    def readings(self) -> dict:
        return {}


class RecordingPin(MockPin):
    """A mock pin that writes every output change to the pins report."""

    report = None
    lock = threading.Lock()

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed and self._function == "output":
            write_report(f"{time.time():.4f} {self.info.name} {int(value)}")
        return changed


def write_report(line: str) -> None:
    with RecordingPin.lock:
        if RecordingPin.report is not None:
            RecordingPin.report.write(line + "\n")
            RecordingPin.report.flush()


def producer(config_path: str, rate_per_s: float, stop_file: str) -> int:
    from edge.daemon import run_unit

    ProducerApp.rate_per_s = rate_per_s
    ProducerApp.stop_file = Path(stop_file)
    return run_unit(config_path, app_class=ProducerApp, link_options=CAMPAIGN_LINK,
                    tick_s=0.05)


def irrigation(config_path: str, pins_path: str) -> int:
    config = load_config(config_path)
    RecordingPin.report = open(pins_path, "a", encoding="ascii")  # noqa: SIM115 - process-long
    factory = MockFactory(pin_class=RecordingPin)
    unit = build_unit(config, pin_factory=factory, link_options=CAMPAIGN_LINK)

    def states() -> dict[str, bool]:
        return {o.name: bool(factory.pin(o.pin).state) == o.active_high
                for o in config.outputs}

    write_report(f"boot {time.time():.4f} {T0:.4f} {json.dumps(states())}")
    try:
        run_app(unit, tick_s=0.05)
    finally:
        unit.close()
        write_report(f"stopped {time.time():.4f} {json.dumps(states())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m faults.unit_process")
    sub = p.add_subparsers(dest="role", required=True)
    prod = sub.add_parser("producer")
    prod.add_argument("config")
    prod.add_argument("--rate", type=float, required=True)
    prod.add_argument("--stop-file", required=True)
    irr = sub.add_parser("irrigation")
    irr.add_argument("config")
    irr.add_argument("--pins", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s unit %(levelname)s %(name)s: %(message)s")
    if args.role == "producer":
        logging.getLogger("edge.link").setLevel(logging.WARNING)  # one line per event
        return producer(args.config, args.rate, args.stop_file)
    return irrigation(args.config, args.pins)


if __name__ == "__main__":
    sys.exit(main())
