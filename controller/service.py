"""``serve`` under systemd: tell it when the controller is ready, alive and stopping.

`ServiceNotifier` is a thread beside the server:

- ``READY=1`` once the API listens (uvicorn has started) and the lifespan has started the
  ingest (``smartcity-controller.service`` is ``Type=notify``);
- ``WATCHDOG=1`` every half ``WatchdogSec`` (systemd's ``WATCHDOG_USEC``), and only while
  `liveness_problems` finds nothing: the event loop answers, the ingest's writer and
  network threads run, and the database can start a write transaction. A controller that
  hangs or loses a loop is killed and restarted by systemd. A broker outage is not a
  liveness problem (restarting would not help); ``/healthz`` reports it;
- ``STOPPING=1`` when the server begins to shut down.

Off systemd (no ``NOTIFY_SOCKET``) the messages go nowhere.

`Headless` stands in for the HTTP server with ``serve --no-api``: it runs the app's
lifespan (ingest, periodic work) on an event loop of its own until SIGTERM or SIGINT,
with the attributes `ServiceNotifier` reads, so READY, WATCHDOG and STOPPING work alike.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

import sdnotify

from controller.api.deps import AppState

logger = logging.getLogger(__name__)

LOOP_TIMEOUT_S = 5.0  # the event loop must run a no-op within this


async def _noop() -> None:
    return None


def liveness_problems(state: AppState) -> list[str]:
    """What keeps the controller from working, whatever the broker does (empty: alive)."""
    problems: list[str] = []
    if state.loop is not None:
        try:
            asyncio.run_coroutine_threadsafe(_noop(), state.loop).result(LOOP_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - any failure means the loop does not answer
            problems.append(f"event loop did not answer within {LOOP_TIMEOUT_S:g} s")
    if state.ingest is not None:
        problems += state.ingest.problems()
    try:
        state.store.check_writable()
    except Exception as exc:  # noqa: BLE001 - reported, never raised
        problems.append(f"database not writable: {exc}")
    return problems


def watchdog_interval_s(environ: Mapping[str, str] = os.environ) -> float | None:
    """Half of systemd's watchdog timeout, or None when the watchdog is off."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


class ServiceNotifier(threading.Thread):
    """Runs beside ``uvicorn.Server``; ``stop()`` after the server returned."""

    def __init__(self, server: Any, app: Any, *, notifier: Any = None,
                 interval_s: float | None = None, poll_s: float = 0.2,
                 status: str = "ingest and API running"):
        super().__init__(name="systemd-notify", daemon=True)
        self.server, self.app, self.status = server, app, status
        self._n = notifier or sdnotify.SystemdNotifier()
        self.interval_s = watchdog_interval_s() if interval_s is None else interval_s
        self.poll_s = poll_s
        self._done = threading.Event()
        self._stopping_sent = False
        self._stopping_lock = threading.Lock()
        self._last_problems: list[str] = []

    def _state(self) -> AppState | None:
        return getattr(self.app.state, "controller", None)

    def run(self) -> None:
        while not self._done.is_set():
            if self.server.should_exit:
                return self.stopping()
            if self.server.started and self._state() is not None:
                break
            self._done.wait(self.poll_s)
        else:
            return
        self._n.notify(f"READY=1\nSTATUS={self.status}")
        logger.info("controller ready")
        next_ping = 0.0
        while not self._done.wait(self.poll_s):
            if self.server.should_exit:
                return self.stopping()
            if self.interval_s is None:
                continue
            now = time.monotonic()
            if now >= next_ping:
                self._watchdog()
                next_ping = now + self.interval_s

    def _watchdog(self) -> None:
        state = self._state()
        problems = liveness_problems(state) if state is not None else ["not started"]
        if problems != self._last_problems:
            if problems:
                logger.error("watchdog withheld: %s", "; ".join(problems))
            else:
                logger.info("watchdog resumed: the controller's loops are alive again")
            self._last_problems = problems
        if not problems:
            self._n.notify("WATCHDOG=1")

    def stopping(self) -> None:
        """Send ``STOPPING=1`` once, from whichever thread sees the end first: the
        signal handler (`watch_exit_signals`), this thread, or `stop`."""
        with self._stopping_lock:
            if self._stopping_sent:
                return
            self._stopping_sent = True
        self._n.notify("STOPPING=1")

    def watch_exit_signals(self) -> None:
        """Send ``STOPPING=1`` the moment the server's SIGTERM/SIGINT handler runs, before
        the shutdown, so it never waits behind a liveness check in this thread."""
        handle_exit = self.server.handle_exit

        def on_exit_signal(sig: int, frame: Any) -> None:
            self.stopping()
            handle_exit(sig, frame)

        self.server.handle_exit = on_exit_signal

    def stop(self) -> None:
        """Send ``STOPPING=1`` (once) and end the thread."""
        self._done.set()
        self.join(5.0)
        self.stopping()



class Headless:
    """The app's lifespan without an HTTP server (``serve --no-api``).

    ``started`` once the lifespan has started everything; ``should_exit`` once a stop is
    asked (``handle_exit``, which SIGTERM and SIGINT call, as uvicorn's server has it).
    """

    def __init__(self, app: Any):
        self.app = app
        self.started = False
        self.should_exit = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.should_exit = True
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Through the attribute: ServiceNotifier.watch_exit_signals wraps it.
            self._loop.add_signal_handler(sig, lambda s=sig: self.handle_exit(s, None))
        if self.should_exit:
            return
        try:
            async with self.app.router.lifespan_context(self.app):
                self.started = True
                logger.info("controller running without an HTTP API (--no-api)")
                await self._stop.wait()
        except Exception:
            logger.exception("the controller could not start")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.remove_signal_handler(sig)
