"""A unit killed between reporting a run's start or end and saving the run.

A run's reports go to the outbox (``outbox.db``) and the run itself to the state file
(``state.db``): two files, two writes. Whatever the kill between them, each run that
started has exactly one ``run_started``, and each cut is one ``run_interrupted`` or the
run's one ``run_finished``; a run reported finished or skipped never waters again. The
real wiring runs on files (``irrigation_crash.Process``) and the kill is a state write
that raises, so no timing is involved.
"""

import sqlite3
from datetime import timedelta

import pytest
from irrigation_crash import MON_9, Killed, Process, saved_runs, stored_events

from edge.irrigation.app import STATE_RUNS


def details(state_dir, type_: str, *fields: str) -> list[tuple]:
    return [tuple(e["details"].get(f) for f in fields)
            for e in stored_events(state_dir, type_)]


def without(run_id: str):
    return lambda runs: all(r["run_id"] != run_id for r in runs)


@pytest.mark.parametrize("ending", ["completed", "stop_all", "shutdown"])
def test_a_run_reported_finished_before_a_kill_is_neither_interrupted_nor_watered_again(
        tmp_path, ending):
    """run_finished is stored, then the unit dies before saving the run as gone (a run
    ending on time, an operator's stop_all, a SIGKILL during a clean stop). The restart,
    with the policy that resumes interrupted runs, must take the run as finished."""
    a = Process(tmp_path, "resume", MON_9).start()
    a.run_zone("c-1", "z1")
    a.run_zone("c-2", "z2")  # queued behind z1: same sequential group
    a.run(590 if ending == "completed" else 100)
    assert a.valve_open("z1") and not a.valve_open("z2")
    a.kill_on_state_write(STATE_RUNS, without("manual:c-1"))
    with pytest.raises(Killed):
        if ending == "completed":
            a.run(20)  # z1 ends; z2 starts in the same step
        elif ending == "stop_all":
            a.command("c-3", "stop_all")
        else:
            a.app.close()
    a.kill()
    ended = "stopped" if ending == "stop_all" else ending  # a person's stop says so
    assert details(tmp_path, "run_finished", "run_id", "ended") == [("manual:c-1", ended)]
    assert "manual:c-1" in {r["run_id"] for r in saved_runs(tmp_path)}  # the kill's window

    b = Process(tmp_path, "resume", MON_9 + timedelta(seconds=700)).start()
    b.run(700)
    b.kill()

    assert details(tmp_path, "run_interrupted", "run_id") == []
    assert saved_runs(tmp_path) == []
    if ending == "completed":
        assert b.opened == ["z2"]  # the queued run, once
        assert details(tmp_path, "run_started", "run_id") == [("manual:c-1",), ("manual:c-2",)]
        assert details(tmp_path, "run_finished", "run_id", "ended") == [
            ("manual:c-1", "completed"), ("manual:c-2", "completed")]
    else:
        assert b.opened == []  # stopped means stopped, whatever the restart policy
        assert details(tmp_path, "run_started", "run_id") == [("manual:c-1",)]
        assert details(tmp_path, "run_finished", "run_id", "ended") == [("manual:c-1", ended)]
        assert details(tmp_path, "run_skipped", "run_id", "reason") == [("manual:c-2", ended)]


@pytest.mark.parametrize("after", [False, True], ids=["before_the_save", "after_the_save"])
def test_a_run_killed_as_it_starts_is_announced_once_and_its_end_reported(tmp_path, after):
    """The first save of a manual run as active (before its valve opens) is where the
    kill lands. A run that was announced must be on disk, so the restart reports it; a
    run that was only accepted is on disk as queued (saved before the answer), so the
    restart runs it."""
    a = Process(tmp_path, "drop", MON_9).start()
    a.kill_on_state_write(STATE_RUNS, lambda runs: any(r["state"] == "active" for r in runs),
                          after=after)
    with pytest.raises(Killed):
        a.run_zone("c-1", "z1")
    assert a.opened == []  # no valve opens before its run is on disk
    a.kill()

    b = Process(tmp_path, "drop", MON_9 + timedelta(seconds=10)).start()
    b.run(60)
    b.kill()

    if after:  # on disk as active: announced at the restart, recorded as interrupted
        assert b.opened == []  # and dropped, as the policy says
        assert details(tmp_path, "run_started", "run_id") == [("manual:c-1",)]
        assert details(tmp_path, "run_interrupted", "run_id", "action", "done_s") == [
            ("manual:c-1", "dropped", 0.0)]
    else:  # on disk as queued, as it was when 'accepted' went out: it runs now, once
        assert b.opened == ["z1"]
        assert details(tmp_path, "run_started", "run_id") == [("manual:c-1",)]
        assert details(tmp_path, "run_interrupted", "run_id") == []
    assert details(tmp_path, "run_finished", "run_id") == []


def test_a_queued_run_killed_as_it_starts_is_announced_once(tmp_path):
    """z2 waits on disk as queued; the step that starts it (z1 just ended) dies before
    saving. The restart finds z1 finished and z2 still queued, and starts z2 once."""
    a = Process(tmp_path, "resume", MON_9).start()
    a.run_zone("c-1", "z1", duration_s=60)
    a.run_zone("c-2", "z2", duration_s=60)
    a.run(30)
    a.kill_on_state_write(STATE_RUNS, lambda runs: any(
        r["run_id"] == "manual:c-2" and r["state"] == "active" for r in runs))
    with pytest.raises(Killed):
        a.run(60)
    a.kill()

    b = Process(tmp_path, "resume", MON_9 + timedelta(seconds=100)).start()
    b.run(120)
    b.kill()

    assert b.opened == ["z2"]
    assert details(tmp_path, "run_started", "run_id") == [("manual:c-1",), ("manual:c-2",)]
    assert details(tmp_path, "run_finished", "run_id", "ended") == [
        ("manual:c-1", "completed"), ("manual:c-2", "completed")]
    assert details(tmp_path, "run_interrupted", "run_id") == []


def test_a_run_of_which_the_outbox_cannot_say_whether_it_ended_is_not_resumed(tmp_path):
    """Safety first: without an answer from the outbox the restart cannot tell a run cut
    by the kill from one that had ended, so it reopens no valve for it."""
    a = Process(tmp_path, "resume", MON_9).start()
    a.run_zone("c-1", "z1")
    a.run(100)
    a.kill()

    b = Process(tmp_path, "resume", MON_9 + timedelta(seconds=110))

    def unreadable(key):
        raise sqlite3.OperationalError("disk I/O error")

    b.unit.outbox.has_key = unreadable
    b.start()
    b.run(60)
    b.kill()

    assert b.opened == []
    assert b.unit.link.counters["outbox_errors"] == 2  # run_finished and run_skipped keys
    assert details(tmp_path, "run_interrupted", "run_id", "action", "policy") == [
        ("manual:c-1", "dropped", "resume")]
    assert saved_runs(tmp_path) == []
