"""Runs IrrigationApp in a process of its own, for the SIGTERM/SIGKILL tests.

    python irrigation_runner.py CONFIG WORKDIR [ZONE DURATION_S]

Builds the app on gpiozero mock pins with a SystemClock, a StateStore file and a
publisher that appends every event as a JSON line to WORKDIR/events.jsonl. It writes:

- WORKDIR/boot.json right after the app is built (before start): wall time and the
  output states, so a test can see how soon after process start everything is off;
- WORKDIR/states.json on every tick: the outputs (app view and raw mock pin levels);
- WORKDIR/final.json after the service loop returned (a clean stop).

With ZONE and DURATION_S it starts a run through handle_command once started.
"""

import json
import os
import sys
import time

T0 = time.time()

from gpiozero.pins.mock import MockFactory, MockPWMPin  # noqa: E402

from edge.clock import SystemClock  # noqa: E402
from edge.config import load_config  # noqa: E402
from edge.irrigation.app import IrrigationApp  # noqa: E402
from edge.service import run_app  # noqa: E402
from edge.state import StateStore  # noqa: E402


class JsonLinesPublisher:
    def __init__(self, path, clock):
        self.path = path
        self.clock = clock

    def _write(self, doc):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(doc, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def event(self, type, **details):
        self._write({"type": type, "ts": self.clock.now().isoformat(), **details})

    def telemetry(self, readings, outputs):
        pass


def write_json(path, doc):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def main(config_path, workdir, zone=None, duration_s=None):
    config = load_config(config_path)
    factory = MockFactory(pin_class=MockPWMPin)
    clock = SystemClock()
    app = IrrigationApp(config, pin_factory=factory, clock=clock,
                        publisher=JsonLinesPublisher(os.path.join(workdir, "events.jsonl"), clock),
                        state=StateStore(os.path.join(workdir, "state.db")),
                        clock_synced=lambda: True)

    def states():
        pins = {o.name: bool(factory.pin(o.pin).state) == o.active_high
                for o in config.outputs}
        return {"t": time.time(), "pid": os.getpid(), "outputs": app.outputs.states(),
                "pins": pins}

    write_json(os.path.join(workdir, "boot.json"), dict(states(), started=T0))

    original_start, original_tick = app.start, app.tick

    def start():
        original_start()
        if zone is not None:
            app.handle_command("runner-1", "run_zone",
                               {"zone": zone, "duration_s": int(duration_s)},
                               lambda *a, **k: None)

    def tick():
        original_tick()
        write_json(os.path.join(workdir, "states.json"), states())

    app.start, app.tick = start, tick
    run_app(app, tick_s=0.05)
    write_json(os.path.join(workdir, "final.json"), states())


if __name__ == "__main__":
    main(*sys.argv[1:])
