"""Wire one unit together and run it: ``smartcity-edge run`` calls ``run_unit``.

Order matters: the config is validated whole, and the files it names that the unit
needs (the broker's CA certificate) are checked, before any pin is touched; the app is
built (which drives every output off) before the network is touched; the link connects
in the background so a missing broker never delays the unit's own work (local
autonomy)::

    config -> pin factory -> StateStore (state_dir/state.db)
           -> Outbox (state_dir/outbox.db) -> Link -> App -> run_app

``build_unit`` does the wiring and returns a ``Unit`` that ``run_app`` can drive; tests
and the simulator use it directly.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from protocol import Event, dropped_ranges, encode
from protocol.seqranges import runs

from .clock import SystemClock
from .health import HealthFile
from .link import Link, LinkOptions
from .outbox import Outbox
from .state import StateStore
from .timesync import make_sync_check
from .update import UpdateReporter

logger = logging.getLogger(__name__)

STATE_FILE = "state.db"
OUTBOX_FILE = "outbox.db"


def announce_dropped(clock):
    """The outbox's ``announce``: an ``outbox_dropped`` event listing the dropped seqs."""

    def announce(seq: int, dropped: list[int]) -> bytes:
        ranges, singles = [], []
        for start, end in runs(dropped):
            if start == end:
                singles.append(start)
            else:
                ranges.append({"from": start, "to": end})
        event = Event(seq=seq, ts=clock.now(), type="outbox_dropped",
                      details={"seqs": singles, "ranges": ranges, "reason": "outbox full"})
        dropped_ranges(event)  # validates the details
        return encode(event)

    return announce


@dataclass
class Unit:
    """An app with its link, outbox and state; ``start``/``tick``/``close`` for run_app."""

    app: object
    link: Link
    outbox: Outbox
    state: StateStore
    tick_wait_s: float = 0.0
    """``tick`` first waits up to this long for a command or config (0: no wait), so
    ``run_unit`` handles a command as soon as it arrives instead of on the next tick."""
    health: HealthFile | None = None
    """The health file an update's gate reads (``edge.health``); ``run_unit`` sets it."""
    updates: UpdateReporter | None = None
    """Reports the outcome of an update from its journal (``edge.update``)."""
    _closed: bool = False

    def start(self) -> None:
        self.link.event("started", app=self.link.app_kind, fw=self.link.fw,
                        outputs=self.app.outputs.states())
        self.link.start()
        self.app.start()
        self._report(ready=True)

    def tick(self) -> None:
        if self.tick_wait_s > 0:
            self.link.wait_inbound(self.tick_wait_s)
        self.link.poll()
        self.app.tick()
        self._report(ready=True)

    def _report(self, *, ready: bool) -> None:
        if self.updates is not None:
            self.updates.check()
        if self.health is not None:
            self.health.update(ready=ready, link_connected=self.link.connected,
                               alarms=self._alarms(), busy=ready and self.app.busy())

    def _alarms(self) -> list[str]:
        """Alarms raised since this start: the app's, and one ``invalid_event`` per event
        the link had to replace (software that breaks the contract)."""
        invalid = self.link.counters["invalid_events"]
        return [*getattr(self.app, "alarms_raised", []), *["invalid_event"] * invalid]

    def close(self) -> None:
        """Outputs off first (the app), then say goodbye on the network; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.app.close()
            if self.health is not None:
                self.health.update(ready=False, link_connected=False,
                                   alarms=self._alarms(), busy=False)
        finally:
            try:
                self.link.event("stopped", app=self.link.app_kind)
                self.link.close()
            finally:
                self.outbox.close()
                self.state.close()


def build_unit(config, *, pin_factory=None, clock=None, app_class=None,
               link_options: LinkOptions | None = None, sync_check=None) -> Unit:
    """Build a unit from a validated config. ``pin_factory``: a gpiozero factory (default:
    from the config); ``app_class``: default by ``config.kind``; ``sync_check``: a
    callable (default from ``[clock] sync_check``)."""
    from .cli import app_class as app_class_for
    from .hardware import make_pin_factory

    clock = clock or SystemClock()
    factory = pin_factory if pin_factory is not None else make_pin_factory(
        config.hardware.pin_factory)
    cls = app_class or app_class_for(config.kind)
    sync_check = sync_check or make_sync_check(config.clock.sync_check)
    state_dir = Path(config.state_dir)
    state = StateStore(state_dir / STATE_FILE)
    link_options = link_options or LinkOptions()
    outbox = Outbox(state_dir / OUTBOX_FILE, max_rows=link_options.outbox_max_rows,
                    announce=announce_dropped(clock))
    link = Link(config, outbox=outbox, state=state, clock=clock, clock_synced=sync_check,
                options=link_options)
    try:
        app = cls(config, pin_factory=factory, clock=clock, publisher=link, state=state,
                  clock_synced=sync_check)
    except BaseException:
        outbox.close()
        state.close()
        raise
    link.bind(app)
    return Unit(app=app, link=link, outbox=outbox, state=state)


def run_unit(config_path, *, pin_factory: str | None = None, app_class=None,
             stop: threading.Event | None = None, link_options: LinkOptions | None = None,
             tick_s: float = 0.2, install_signals: bool = True) -> int:
    """Load the config at ``config_path`` and run the unit until SIGTERM/SIGINT or
    ``stop``; returns the exit status (0). Raises ``ConfigError`` for a bad config, or a
    file it names that the unit cannot use (the broker's CA certificate), before any pin
    is touched. ``pin_factory`` ("mock" or "lgpio") overrides the config's."""
    from .config import validate_config
    from .hardware import make_pin_factory
    from .service import run_app

    config = validate_config(config_path)
    factory = make_pin_factory(pin_factory or config.hardware.pin_factory)
    unit = build_unit(config, pin_factory=factory, app_class=app_class,
                      link_options=link_options)
    unit.tick_wait_s = tick_s  # the loop's pause is spent waiting for commands
    unit.health = HealthFile(Path(config.state_dir), version=unit.link.fw, kind=config.kind)
    unit.updates = UpdateReporter(Path(config.state_dir), unit.link)
    stop = stop or threading.Event()
    done = threading.Event()
    # A stop (SIGTERM, SIGINT or ``stop``) must not wait for a command or the end of the
    # tick: it wakes the loop's wait at once, so the outputs go off now.
    waker = threading.Thread(target=_wake_on_stop, args=(stop, done, unit.link),
                             name="edge-stop-waker", daemon=True)
    waker.start()
    try:
        run_app(unit, stop=stop, tick_s=0.0, install_signals=install_signals)
    finally:
        done.set()
        unit.close()
    return 0


def _wake_on_stop(stop: threading.Event, done: threading.Event, link: Link) -> None:
    """Wake ``link.wait_inbound`` as soon as ``stop`` is set; ends with the daemon
    (``done``) if it stops for another reason."""
    while not done.is_set():
        if stop.wait(1.0):
            link.wake_inbound()
            return
