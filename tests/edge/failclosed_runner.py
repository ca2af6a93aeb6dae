"""Runs the base App with two valves under run_app; used by test_service_failclosed.

Turns valve1 on, writes "ready" to the status file, and when run_app returns writes the
mock pins' states to the same file, so the test can see what the process left behind.
"""

import json
import sys

from gpiozero.pins.mock import MockFactory

from edge.app import App
from edge.clock import SystemClock
from edge.config import load_config
from edge.publisher import MemoryPublisher
from edge.service import run_app


def main(config_path, status_path):
    config = load_config(config_path)
    factory = MockFactory()
    clock = SystemClock()
    app = App(config, pin_factory=factory, clock=clock, publisher=MemoryPublisher(clock))
    original_start = app.start

    def start():
        original_start()
        app.outputs["valve1"].on()
        with open(status_path, "w") as f:
            json.dump({"ready": True, "valve1": factory.pin(17).state}, f)

    app.start = start
    try:
        run_app(app, tick_s=0.05)
    finally:
        with open(status_path, "w") as f:
            json.dump({"stopped": True, "pins": {p: factory.pin(p).state for p in (17, 27)}}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
