"""A real irrigation unit in its own process, for the controller's end-to-end test.

``edge.daemon.build_unit`` + ``edge.service.run_app``, on gpiozero mock pins that also
write every output change to a log file (``time pin state`` per line), so the test can see
when a valve really opened and closed, even after it SIGKILLs this process.

    python unit_process.py CONFIG_FILE PIN_LOG
"""

from __future__ import annotations

import logging
import sys
import time

from gpiozero.pins.mock import MockFactory, MockPin

from edge.config import load_config
from edge.daemon import build_unit
from edge.link import LinkOptions
from edge.service import run_app

FAST = LinkOptions(reconnect_min_s=0.1, reconnect_max_s=0.5, resend_after_s=2.0,
                   status_min_interval_s=0.2, drain_rate_per_s=1000.0)


class RecordingPin(MockPin):
    log = None

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed and self._function == "output" and RecordingPin.log is not None:
            RecordingPin.log.write(f"{time.time():.3f} {self.info.name} {int(value)}\n")
            RecordingPin.log.flush()
        return changed


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s unit %(levelname)s %(name)s: %(message)s")
    config = load_config(argv[0])
    RecordingPin.log = open(argv[1], "a")  # noqa: SIM115 - lives as long as the process
    unit = build_unit(config, pin_factory=MockFactory(pin_class=RecordingPin),
                      link_options=FAST)
    try:
        run_app(unit, tick_s=0.05)
    finally:
        unit.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
