"""Supply sequencing: the master valve or pump and the zone valves, as one pure function.

``sequence(master, applied, desired_zones, now_s)`` looks at what should water (the zones
of the active runs), what is applied (the master's phase, the open valves, the valves
released by runs that ended, the valves still draining behind a stopping pump) and the
time (monotonic seconds), and returns what to switch and when to look again. It switches
nothing itself: the app applies the ``Actions`` in order (master, then closes, then
opens), so the caps on concurrent zones hold at every instant.

The master moves through ``off -> pre -> on -> post -> off``:

- a master *valve* opens ``pre_s`` before the first zone valve and closes ``post_s``
  after the last one closed (a zone valve opens only while the master is ``on``);
- a *pump* starts ``pre_s`` after the first zone valve opened and stops ``post_s`` before
  the last zone valve closes (valves open in ``pre`` and ``on``; the valves of runs that
  ended while the pump ran stay open, *draining*, until its ``post_s`` is over, and a
  soak of such a zone counts from that closing, not from the pump's stop).

Water flows (and a cycle's time counts) only while the master is ``on``; with no master
it flows as soon as a valve is open.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .rules import EPS_S

if TYPE_CHECKING:  # pragma: no cover
    from .config import MasterSpec


@dataclass(frozen=True)
class Phase:
    """The master's state: ``off``, ``pre``, ``on`` or ``post``, and the end of a delay."""

    state: str = "off"
    until: float = 0.0

    @property
    def waiting(self) -> bool:
        return self.state in ("pre", "post")


@dataclass(frozen=True)
class Applied:
    """What the outputs are doing now."""

    phase: Phase = Phase()
    open_zones: frozenset[str] = frozenset()  # valves open for active runs
    released: tuple[str, ...] = ()  # valves of runs that ended, still to close
    draining: frozenset[str] = frozenset()  # valves left open while the pump stops


@dataclass(frozen=True)
class Actions:
    """What to switch now (in this order: master, closes, opens), and what follows."""

    phase: Phase
    master: bool | None = None  # switch the master on (True), off (False), or leave it
    close: tuple[str, ...] = ()
    open: tuple[str, ...] = ()
    flowing: bool = False  # water reaches the open valves: their cycles' time counts
    draining: frozenset[str] = frozenset()
    drained: frozenset[str] = frozenset()  # closed at the pump's end: their soak starts now
    wake_at: float | None = None  # look again then (the end of a pre/post delay)


def sequence(master: MasterSpec | None, applied: Applied, desired: Collection[str],
             now_s: float) -> Actions:
    """What to switch so that the ``desired`` zones water, given what is ``applied``."""
    active = bool(desired)
    state, until = applied.phase.state, applied.phase.until
    switch: bool | None = None
    draining = set(applied.draining)
    if master is None:
        state = "on" if active else "off"
    elif master.kind == "valve":
        if active:
            if state == "off":
                switch, state, until = True, "pre", now_s + master.pre_s
            elif state == "post":
                state = "on"
            if state == "pre" and now_s + EPS_S >= until:
                state = "on"
        else:
            if state in ("on", "pre"):
                state, until = "post", now_s + master.post_s
            if state == "post" and now_s + EPS_S >= until:
                switch, state = False, "off"
    else:  # pump: valves open first, the pump stops first
        if state == "post" and now_s + EPS_S >= until:
            state = "off"  # the draining valves close below
        if active:
            if state == "off":
                state, until = "pre", now_s + master.pre_s
            if state == "pre" and now_s + EPS_S >= until:
                switch, state = True, "on"
        else:
            if state == "pre":
                state = "off"
            elif state == "on":
                switch, state, until = False, "post", now_s + master.post_s
                draining |= set(applied.released)
                if master.post_s <= 0:
                    state = "off"
    # Close what ended before opening anything. A zone that runs again at once is
    # closed and reopened, so its valve's max_on_s counts from the new opening.
    close = [z for z in applied.released if z not in draining]
    drained: set[str] = set()
    if state == "off" and draining:
        close += [z for z in draining if z not in desired]
        drained, draining = draining, set()
    valve_ok = master is None or (state == "on" if master.kind == "valve"
                                  else state in ("pre", "on"))
    still_open = applied.open_zones - set(close)
    opening = [z for z in _unique(desired) if valve_ok and z not in still_open]
    phase = Phase(state, until)
    return Actions(phase=phase, master=switch, close=tuple(close), open=tuple(opening),
                   flowing=master is None or state == "on", draining=frozenset(draining),
                   drained=frozenset(drained), wake_at=until if phase.waiting else None)


def _unique(zones: Collection[str]) -> Sequence[str]:
    return list(dict.fromkeys(zones))
