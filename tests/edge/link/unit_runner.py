"""A unit in its own process, for the tests that kill it: ``edge.daemon.run_unit`` with an
app that produces events (and telemetry, from the config) until its outbox has assigned
``total`` seqs, then keeps running so the link drains and serves acks.

    python unit_runner.py CONFIG_FILE TOTAL [PER_TICK [TICK_S]]
"""

import logging
import sys

from link_helpers import FAST, LimitApp

from edge.daemon import run_unit


class ProducerApp(LimitApp):
    total = 1000
    per_tick = 4

    def tick(self):
        super().tick()
        outbox = self.publisher.outbox
        for _ in range(self.per_tick):
            if outbox.next_seq > self.total:
                return
            self.publisher.event("run_started", zone="lawn", duration_s=1, source="test")


def main(argv):
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s unit %(levelname)s %(name)s: %(message)s")
    ProducerApp.total = int(argv[1])
    if len(argv) > 2:
        ProducerApp.per_tick = int(argv[2])
    tick_s = float(argv[3]) if len(argv) > 3 else 0.05
    return run_unit(argv[0], app_class=ProducerApp, link_options=FAST, tick_s=tick_s)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
