"""A unit killed again while it records the run it was in the middle of.

On a start after a crash the daemon stores ``run_interrupted`` in its outbox
(``outbox.db``) and then saves, in its state file (``state.db``), that the run is dealt
with. These tests run the real wiring (``build_unit``: state store, outbox, link, app on
mock pins, no broker) on files in a temporary directory, and "kill" a process by
abandoning it without its clean stop. The kill between the two writes is a state write
that raises, so no timing is involved.
"""

import json
from datetime import datetime, timedelta

import pytest
from gpiozero.pins.mock import MockFactory
from irrigation_harness import WITA, make_config

from edge.clock import VirtualClock
from edge.daemon import OUTBOX_FILE, build_unit
from edge.irrigation.app import STATE_RUNS
from edge.outbox import Outbox

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

    def start(self) -> "Process":
        self.app.start()
        return self

    def run_zone(self, cmd_id: str, zone: str = "z1", duration_s: float = 600) -> None:
        replies = []
        self.app.handle_command(cmd_id, "run_zone", {"zone": zone, "duration_s": duration_s},
                                lambda status, *_a, **_k: replies.append(status))
        assert replies == ["accepted"]

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
    """Every event of ``type_`` in the unit's outbox, in seq order (nothing was acked)."""
    outbox = Outbox(state_dir / OUTBOX_FILE)
    try:
        docs = [json.loads(row.payload) for row in outbox.rows_after(0, 100_000)]
    finally:
        outbox.close()
    return [d for d in docs if d.get("type") == type_]


def test_a_kill_between_the_event_and_the_state_save_does_not_report_the_run_twice(tmp_path):
    a = Process(tmp_path, "drop", MON_9).start()
    a.run_zone("c-1")
    a.run(60)
    assert a.valve_open()
    a.kill()

    b = Process(tmp_path, "drop", MON_9 + timedelta(seconds=70))
    b.kill_on_state_write(STATE_RUNS)
    with pytest.raises(Killed):
        b.start()  # run_interrupted is in the outbox, the state still has the run active
    assert not b.valve_open()
    b.kill()
    assert len(stored_events(tmp_path, "run_interrupted")) == 1

    c = Process(tmp_path, "drop", MON_9 + timedelta(seconds=80)).start()
    c.run(30)
    assert not c.valve_open()  # the run was dropped, by whichever start recorded it
    c.kill()

    events = stored_events(tmp_path, "run_interrupted")
    assert [(e["details"]["run_id"], e["details"]["action"]) for e in events] == [
        ("manual:c-1", "dropped")]
    assert 55 <= events[0]["details"]["done_s"] <= 60


def test_each_real_interruption_of_a_resumed_run_is_reported_once(tmp_path):
    """Resumed runs are interrupted again for real: every kill that cuts the run is one
    report, however often the recording start itself is killed."""
    a = Process(tmp_path, "resume", MON_9).start()
    a.run_zone("c-1")
    a.run(60)
    a.kill()

    b = Process(tmp_path, "resume", MON_9 + timedelta(seconds=70)).start()
    b.run(30)
    assert b.valve_open()  # resumed and cut again below
    b.kill()

    for i in range(2):  # the start that records the second interruption dies twice
        dying = Process(tmp_path, "resume", MON_9 + timedelta(seconds=120 + i))
        dying.kill_on_state_write(STATE_RUNS)
        with pytest.raises(Killed):
            dying.start()
        dying.kill()

    d = Process(tmp_path, "resume", MON_9 + timedelta(seconds=130)).start()
    d.run(600)
    assert not d.valve_open()
    d.kill()

    events = stored_events(tmp_path, "run_interrupted")
    assert [(e["details"]["run_id"], e["details"]["action"]) for e in events] == [
        ("manual:c-1", "resumed"), ("manual:c-1", "resumed")]
    assert events[0]["details"]["done_s"] < events[1]["details"]["done_s"]
    (finished,) = stored_events(tmp_path, "run_finished")
    assert finished["details"]["ended"] == "completed"
    assert finished["details"]["duration_s"] == pytest.approx(600, abs=0.5)
