"""A fish-feeder unit killed again while it records what a crash cut short.

At start the daemon stores ``run_interrupted`` (a feeding in progress) and
``alarm_cleared`` (a lockout a restart clears) in its outbox, then clears them in its
state file: two files. The real wiring (``build_unit``: state store, outbox, link, app on
mock pins and the field simulator, no broker) runs on files in a temporary directory; a
process is "killed" by abandoning it without its clean stop, and the kill between the two
writes is a state write that raises, so no timing is involved.
"""

import json
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from edge.clock import VirtualClock
from edge.daemon import OUTBOX_FILE, build_unit
from edge.fish_feeder.app import FishFeederApp
from edge.hardware import make_pin_factory
from edge.outbox import Outbox
from edge.sim.fish_feeder import FishFeederSim

TEN_WITA = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Balikpapan: oxygen is fine


class Killed(BaseException):
    """The process died here (SIGKILL): nothing after this point runs."""


class Process:
    """One incarnation of the unit on the state directory; ``kill()`` abandons it."""

    def __init__(self, config, at: datetime, *, jammed: bool = False):
        self.clock = VirtualClock(at)
        self.sim = FishFeederSim(config, self.clock,
                                 feeders={"pakan-nila": {"jammed": jammed}})
        self.unit = build_unit(config, pin_factory=make_pin_factory("mock"), clock=self.clock,
                               app_class=partial(FishFeederApp, **self.sim.app_kwargs()),
                               sync_check=lambda: True)
        self.app = self.unit.app
        self.sim.attach(self.app)

    def start(self) -> "Process":
        self.app.start()
        return self

    def feed_now(self, cmd_id: str, dose_g: float = 1000) -> None:
        replies = []
        self.app.handle_command(cmd_id, "feed_now", {"feeder": "pakan-nila", "dose_g": dose_g},
                                lambda status, *_a, **_k: replies.append(status))
        assert replies[0] == "accepted"

    def motor_on(self) -> bool:
        return self.app.outputs["auger-nila"].is_active

    def kill(self) -> None:
        """Gone without a clean stop: only the files stay."""
        self.unit.outbox.close()
        self.unit.state.close()

    def kill_on_state_write(self, key: str) -> None:
        """The next write of ``key`` to the state file never happens: the process dies."""
        store = self.unit.state
        real_set = store.set

        def set_then_die(k, value):
            if k == key:
                raise Killed(f"killed before {k} was saved")
            real_set(k, value)

        store.set = set_then_die


def stored_events(state_dir, type_: str) -> list[dict]:
    """The details of every event of ``type_`` in the unit's outbox, in seq order."""
    outbox = Outbox(state_dir / OUTBOX_FILE)
    try:
        docs = [json.loads(row.payload) for row in outbox.rows_after(0, 100_000)]
    finally:
        outbox.close()
    return [d["details"] for d in docs if d.get("type") == type_]


def crash_while_recording(config, at: datetime, key: str) -> None:
    """A start that reports what it found and dies before clearing ``key``."""
    dying = Process(config, at)
    dying.kill_on_state_write(key)
    with pytest.raises(Killed):
        dying.start()
    assert not dying.motor_on()
    dying.kill()


def test_a_feeding_cut_short_is_reported_once_when_the_recording_start_is_killed(
        unit_config, tmp_path):
    config = unit_config(state_dir=str(tmp_path))
    a = Process(config, TEN_WITA).start()
    a.feed_now("c-1")
    a.sim.run(20)
    assert a.motor_on()
    a.kill()

    crash_while_recording(config, TEN_WITA + timedelta(seconds=60), "ff.in_progress")
    assert len(stored_events(tmp_path, "run_interrupted")) == 1
    crash_while_recording(config, TEN_WITA + timedelta(seconds=70), "ff.in_progress")

    b = Process(config, TEN_WITA + timedelta(seconds=80)).start()
    b.feed_now("c-2")  # a new feeding on the same feeder, cut short too
    b.sim.run(20)
    assert b.motor_on()
    b.kill()
    crash_while_recording(config, TEN_WITA + timedelta(seconds=140), "ff.in_progress")
    c = Process(config, TEN_WITA + timedelta(seconds=150)).start()
    c.sim.run(60)
    assert not c.motor_on()
    c.kill()

    events = stored_events(tmp_path, "run_interrupted")
    assert [(e["feeder"], e["source"], e["counted_g"]) for e in events] == [
        ("pakan-nila", "command", 1000), ("pakan-nila", "command", 1000)]
    assert events[0]["started_at"] < events[1]["started_at"]


def test_a_lockout_cleared_by_a_restart_is_reported_once_when_that_start_is_killed(
        unit_config, tmp_path):
    config = unit_config(state_dir=str(tmp_path))
    a = Process(config, TEN_WITA, jammed=True).start()
    a.feed_now("c-1", dose_g=500)
    a.sim.run(10)
    assert a.app.feeders["pakan-nila"].fault == "jam"
    a.kill()

    crash_while_recording(config, TEN_WITA + timedelta(seconds=60), "ff.lockouts")
    b = Process(config, TEN_WITA + timedelta(seconds=70)).start()
    assert b.app.feeders["pakan-nila"].fault is None
    b.kill()

    cleared = stored_events(tmp_path, "alarm_cleared")
    assert [(e["feeder"], e["code"], e["cleared_by"]) for e in cleared] == [
        ("pakan-nila", "feeder_jam", "restart")]
