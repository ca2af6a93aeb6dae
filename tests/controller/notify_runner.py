"""A controller process that only delivers notifications: ``python notify_runner.py
CONFIG``. Opens the store, starts `controller.notify` and prints ``ready``; SIGTERM stops
it. tests/controller/test_notify_sigkill.py kills it with SIGKILL instead."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from controller.notify.worker import start
from controller.settings import load_settings
from controller.store import Store


def main(config: str) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Store.open(settings.database.target) as store:
        worker = start(store, settings)
        print("ready", flush=True)
        stop.wait()
        worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
