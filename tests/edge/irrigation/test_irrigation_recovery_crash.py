"""A unit killed again while it records the run it was in the middle of.

On a start after a crash the daemon stores ``run_interrupted`` in its outbox
(``outbox.db``) and then saves, in its state file (``state.db``), that the run is dealt
with. These tests run the real wiring on files (``irrigation_crash.Process``); the kill
between the two writes is a state write that raises, so no timing is involved.
"""

from datetime import timedelta

import pytest
from irrigation_crash import MON_9, Killed, Process, stored_events

from edge.irrigation.app import STATE_RUNS


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
