"""An irrigation unit on files that a test can kill at an exact write.

``Process`` is one incarnation of the unit: the real wiring (``build_unit``: state store,
outbox, link, app on mock pins, no broker) on a state directory that outlives it. A test
"kills" it by abandoning it without its clean stop (``kill()``), and chooses the moment
by making one write to the state file raise ``Killed`` (``kill_on_state_write``), just
before it reaches the file or just after it was committed. No timing is involved.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gpiozero.pins.mock import MockFactory
from irrigation_harness import WITA, make_config
from support.outbox_events import stored_events  # noqa: F401 - the crash tests' reader

from edge.clock import VirtualClock
from edge.daemon import STATE_FILE, build_unit
from edge.state import StateStore

MON_9 = datetime(2026, 9, 7, 9, 0, tzinfo=WITA)


class Killed(BaseException):
    """The process died here (SIGKILL): nothing after this point runs."""


class Process:
    """One incarnation of the unit on the state directory; ``kill()`` abandons it."""

    def __init__(self, state_dir, policy: str, at: datetime):
        config = make_config(state_dir=str(state_dir), master=None, rain=None, flow=None,
                             runs={"on_interrupted": policy})
        self.clock = VirtualClock(at)
        self.unit = build_unit(config, pin_factory=MockFactory(), clock=self.clock,
                               sync_check=lambda: True)
        self.app = self.unit.app
        self.opened: list[str] = []  # every zone whose valve this process switched on
        for zone, valve in self.app.devices.valves.items():
            valve.on = self._recording_on(zone, valve.on)

    def _recording_on(self, zone: str, on: Callable):
        def recorded(*args, **kwargs):
            self.opened.append(zone)
            return on(*args, **kwargs)
        return recorded

    def start(self) -> Process:
        self.app.start()
        return self

    def command(self, cmd_id: str, action: str, **params) -> list[str]:
        replies: list[str] = []
        self.app.handle_command(cmd_id, action, params,
                                lambda status, *_a, **_k: replies.append(status))
        return replies

    def run_zone(self, cmd_id: str, zone: str = "z1", duration_s: float = 600) -> None:
        assert self.command(cmd_id, "run_zone", zone=zone, duration_s=duration_s) == [
            "accepted"]

    def run(self, seconds: float, step: float = 5.0) -> None:
        for _ in range(int(seconds / step)):
            self.clock.advance(step)
            self.app.tick()

    def valve_open(self, zone: str = "z1") -> bool:
        return self.app.devices.valves[zone].is_active

    def kill(self) -> None:
        """Gone without a clean stop: only the files stay (closed, as the OS would)."""
        self.unit.outbox.close()
        self.unit.state.close()

    def kill_on_state_write(self, key: str, when: Callable[[object], bool] = lambda v: True,
                            *, after: bool = False) -> None:
        """The first write of ``key`` whose new value satisfies ``when`` kills the process:
        before it reaches the state file, or (``after``) just after it was committed."""
        store = self.unit.state
        real_set_many = store.set_many

        def armed(docs: dict) -> bool:
            return key in docs and when(docs[key])

        def set_many(docs):
            hit = armed(docs)
            if hit and not after:
                raise Killed(f"killed before {key} was saved")
            real_set_many(docs)
            if hit:
                raise Killed(f"killed just after {key} was saved")

        store.set = lambda k, value: set_many({k: value})
        store.set_many = set_many


def saved_runs(state_dir) -> list[dict]:
    """The runs in the unit's state file, read through a connection of its own."""
    from edge.irrigation.app import STATE_RUNS

    store = StateStore(state_dir / STATE_FILE)
    try:
        return store.get(STATE_RUNS) or []
    finally:
        store.close()
