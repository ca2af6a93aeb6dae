"""The daemon's main loop: signals, systemd notify and watchdog, fail-closed exit."""

from __future__ import annotations

import logging
import signal
import threading

import sdnotify

logger = logging.getLogger(__name__)


class Notifier:
    """systemd notify (READY, WATCHDOG, STOPPING); silent when not under systemd."""

    def __init__(self):
        self._n = sdnotify.SystemdNotifier()

    def ready(self, status: str = "running"):
        self._n.notify(f"READY=1\nSTATUS={status}")

    def watchdog(self):
        self._n.notify("WATCHDOG=1")

    def stopping(self):
        self._n.notify("STOPPING=1")


def run_app(app, *, stop: threading.Event | None = None, tick_s: float = 0.2,
            notifier: Notifier | None = None, install_signals: bool = True) -> None:
    """Run ``app`` until SIGTERM/SIGINT or ``stop`` is set; always leaves outputs off.

    The watchdog is pinged from this loop only, so a stuck loop gets the unit restarted.
    """
    stop = stop or threading.Event()
    notifier = notifier or Notifier()
    previous = {}
    if install_signals:
        def _on_signal(signum, _frame):
            logger.info("signal %s: stopping", signal.Signals(signum).name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        app.start()
        notifier.ready()
        while not stop.is_set():
            app.tick()
            notifier.watchdog()
            stop.wait(tick_s)
    finally:
        notifier.stopping()
        app.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        logger.info("stopped; every output is off")
