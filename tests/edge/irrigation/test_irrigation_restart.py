"""What survives a restart (StateStore), interrupted runs, and the remote program."""

from datetime import UTC, datetime, timedelta

import pytest
from irrigation_harness import WITA, Bench, make_config

from edge.clock import VirtualClock
from edge.errors import ConfigError
from edge.irrigation.app import STATE_HOLDS, STATE_RUNS
from edge.state import StateStore

MON = datetime(2026, 9, 7, 0, 0, tzinfo=WITA)
DAILY = {"programs": [{"name": "daily", "start_times": ["06:00"],
                       "zones": [{"zone": "z1", "duration_min": 10}]}]}


def restart(old: Bench, path, *, gap_s: float = 0.0, outbox: bool = False, **over) -> Bench:
    """A new process on the same state file, ``gap_s`` after the old one stopped;
    ``outbox``: with the old one's publisher (and its events), as a unit's outbox."""
    config = make_config(program=DAILY, **over)
    clock = VirtualClock(old.clock.now() + timedelta(seconds=gap_s))
    return Bench(config, state=StateStore(path), clock=clock,
                 publisher=old.pub if outbox else None)


def test_pause_rain_delay_and_skip_flags_survive_a_restart(tmp_path):
    path = tmp_path / "state.db"
    a = Bench(make_config(program=DAILY), start=MON.replace(hour=1),
              state=StateStore(path)).start()
    a.command("pause", until=MON.replace(hour=12).isoformat())
    a.command("rain_delay", hours=30)
    a.command("skip_next", zone="z1")
    b = restart(a, path, gap_s=600).start()  # no close(): as after a power cut
    readings = b.app.readings()
    assert readings["paused"] is True and readings["rain_delay_h"] == pytest.approx(29.83, 0.01)
    b.run_until(MON.replace(hour=6, minute=1), step=60)
    assert [e["reason"] for e in b.events("run_skipped")] == ["paused"]
    paused_until = datetime.fromisoformat(b.app.status()["paused_until"])
    assert paused_until == MON.replace(hour=12)


def test_todays_totals_survive_a_restart_and_reset_at_local_midnight(tmp_path):
    path = tmp_path / "state.db"
    config = make_config(limits={"max_concurrent_zones": 2, "max_daily_water_min": 12},
                         program=DAILY)
    a = Bench(config, start=MON.replace(hour=9), state=StateStore(path)).start()
    a.command("run_zone", zone="z3", duration_s=300)
    a.run(400, step=10)
    a.close()
    b = Bench(config, state=StateStore(path), clock=VirtualClock(a.clock.now())).start()
    readings = b.app.readings()
    assert readings["water_min_today"] == 5.0 and readings["water_min_today.z3"] == 5.0
    _, _, clamped = b.command("run_zone", zone="z4", duration_s=600)[0]
    assert clamped[0]["allowed"] == 420.0  # 12 min a day, 5 already used before the restart
    b.run_until(MON + timedelta(days=1, minutes=1), step=300)
    assert b.app.readings()["water_min_today"] == 0.0


def test_interrupted_run_is_recorded_and_resumed_for_its_remaining_time(tmp_path):
    path = tmp_path / "state.db"
    a = Bench(make_config(program=DAILY), start=MON.replace(hour=9),
              state=StateStore(path)).start()
    a.command("run_zone", zone="z1", duration_s=600)
    a.run(200, step=5)
    assert a.is_on("v1")
    b = restart(a, path, gap_s=60, outbox=True)  # the old process is gone without closing
    assert b.open_zones() == [] and not b.is_on("master")  # off before anything else
    b.start()
    (ev,) = b.events("run_interrupted")
    assert ev["zone"] == "z1" and ev["action"] == "resumed" and ev["policy"] == "resume"
    assert 165 <= ev["done_s"] <= 200  # progress is saved every checkpoint_s (30 s)
    assert ev["remaining_s"] == pytest.approx(600 - ev["done_s"], abs=0.5)
    b.run(5, step=1)
    assert b.is_on("v1")
    (resumed,) = b.events("run_resumed")
    assert resumed["remaining_s"] == ev["remaining_s"] and resumed["zone"] == "z1"
    b.run(600, step=5)
    (fin,) = b.events("run_finished")
    assert fin["resumed"] is True and fin["ended"] == "completed"
    assert fin["duration_s"] == pytest.approx(600, abs=0.5)
    assert len(b.events("run_started")) == 1  # reported before the restart, not again


def saved_runs(path) -> list[dict]:
    """The runs in the state file as a restart would find them (a fresh connection)."""
    store = StateStore(path)
    try:
        return store.get(STATE_RUNS) or []
    finally:
        store.close()


def test_a_run_is_saved_as_active_before_its_valve_opens(tmp_path, monkeypatch):
    """A unit killed the moment a valve opened must find that run on restart, or no
    run_interrupted is ever recorded for water that flowed."""
    path = tmp_path / "state.db"
    b = Bench(make_config(master=None, program=DAILY), start=MON.replace(hour=9),
              state=StateStore(path)).start()
    valve = b.app.devices.valves["z1"]
    real_on = valve.on
    on_disk = []

    def on_after_reading_the_state_file(*args, **kwargs):
        on_disk.append(saved_runs(path))
        real_on(*args, **kwargs)

    monkeypatch.setattr(valve, "on", on_after_reading_the_state_file)
    b.command("run_zone", cmd_id="c-1", zone="z1", duration_s=600)
    assert b.is_on("v1")
    (runs,) = on_disk  # the valve was switched on once
    assert [(r["run_id"], r["zone"], r["state"]) for r in runs] == [("manual:c-1", "z1", "active")]
    assert runs[0]["started"] is not None


def test_interrupted_run_is_dropped_when_the_policy_says_so(tmp_path):
    path = tmp_path / "state.db"
    a = Bench(make_config(program=DAILY, runs={"on_interrupted": "drop"}),
              start=MON.replace(hour=9), state=StateStore(path)).start()
    a.command("run_zone", zone="z1", duration_s=600)
    a.command("run_zone", zone="z2", duration_s=600)  # queued behind z1 (same group)
    a.run(100, step=5)
    b = restart(a, path, gap_s=30, runs={"on_interrupted": "drop"}).start()
    (ev,) = b.events("run_interrupted")
    assert (ev["zone"], ev["action"]) == ("z1", "dropped")
    b.run(1300, step=10)
    # The dropped run stays dropped; the queued one (never started) still runs.
    assert [(e["zone"], e["ended"]) for e in b.events("run_finished")] == [("z2", "completed")]


def test_clean_stop_finishes_runs_and_leaves_nothing_to_resume(tmp_path):
    path = tmp_path / "state.db"
    a = Bench(make_config(program=DAILY), start=MON.replace(hour=9),
              state=StateStore(path)).start()
    a.command("run_zone", zone="z1", duration_s=600)
    a.run(100, step=5)
    a.close()
    assert a.open_zones() == [] and not a.is_on("master")
    assert a.events("run_finished")[0]["ended"] == "shutdown"
    b = restart(a, path, gap_s=5).start()
    b.run(60)
    assert b.events("run_interrupted") == [] and b.open_zones() == []


def test_starts_missed_while_the_unit_was_down_are_reported(tmp_path):
    path = tmp_path / "state.db"
    a = Bench(make_config(program=DAILY), start=MON.replace(hour=5),
              state=StateStore(path)).start()
    a.run(1800, step=60)
    b = restart(a, path, gap_s=2 * 3600).start()  # down 05:30-07:30
    (skip,) = b.events("run_skipped")
    assert skip["reason"] == "missed" and skip["planned_at"] == MON.replace(hour=6).isoformat()


# -- remote program --------------------------------------------------------------------------
REMOTE = {"watering_pct": 50, "rain_delay_h": 6,
          "programs": [{"name": "remote", "start_times": ["07:00"],
                        "zones": [{"zone": "z3", "duration_min": 120}]}],
          "zones": [{"zone": "z3", "cycle_min": 30, "soak_min": 15}]}


def test_remote_program_is_applied_persisted_and_still_clamped_by_local_limits(tmp_path):
    path = tmp_path / "state.db"
    config = make_config(program=DAILY, outputs=[
        {"name": "v1", "pin": 17, "max_on_s": 3600}, {"name": "v2", "pin": 27, "max_on_s": 3600},
        {"name": "v3", "pin": 22, "max_on_s": 900}, {"name": "v4", "pin": 23, "max_on_s": 3600},
        {"name": "master", "pin": 24, "max_on_s": 14_400}])
    a = Bench(config, start=MON.replace(hour=5), state=StateStore(path)).start()
    assert a.app.current_config_version == 0
    a.app.apply_remote_config(7, REMOTE)
    assert a.app.current_config_version == 7
    assert a.events("config_applied") == []  # the link reports it, not the app
    b = Bench(config, state=StateStore(path), clock=VirtualClock(a.clock.now())).start()
    assert b.app.current_config_version == 7
    b.run_until(MON.replace(hour=9), step=60)
    (fin,) = b.events("run_finished")  # 120 min x 50 % = 60 min, cycles of 30 min...
    assert fin["program"] == "remote" and fin["duration_s"] == 1800.0
    (clamp,) = b.events("limit_clamped")  # ...each cut to the valve's 900 s
    assert (clamp["limit"], clamp["asked"], clamp["allowed"]) == ("max_on_s", 3600.0, 1800.0)
    assert not any(e.get("program") == "daily" for e in b.events())


@pytest.mark.parametrize("body,field", [
    ({"programs": [{"name": "x", "start_times": ["07:00"],
                    "zones": [{"zone": "z9", "duration_min": 5}]}]}, "programs[x].zones[z9].zone"),
    ({"programs": [{"name": "x", "start_times": ["25:00"],
                    "zones": [{"zone": "z1", "duration_min": 5}]}]}, "programs[x].start_times"),
    ({"limits": {"max_daily_water_min": 1440}}, "limits"),
    ({"zones": [{"zone": "z1", "moisture": {"skip_above_pct": 30}}]}, "zones[z1].moisture"),
    ({"watering_pct": "lots"}, "watering_pct"),
    (["not", "an", "object"], "(body)"),
])
def test_invalid_remote_program_is_refused_and_the_old_one_kept(tmp_path, body, field):
    path = tmp_path / "state.db"
    a = Bench(make_config(program=DAILY), start=MON.replace(hour=5),
              state=StateStore(path)).start()
    a.app.apply_remote_config(3, REMOTE)
    with pytest.raises(ConfigError) as err:
        a.app.apply_remote_config(4, body)
    assert any(f.startswith(field) for f, _ in err.value.problems), err.value.problems
    assert "remote config v4" in str(err.value)
    assert a.app.current_config_version == 3
    assert StateStore(path).get("irrigation.program")["version"] == 3
    a.run_until(MON.replace(hour=7, minute=1), step=60)
    assert a.events("run_started")[0]["program"] == "remote"


def test_what_a_command_reply_reports_is_on_disk_before_the_reply(tmp_path):
    """A unit killed right after answering 'accepted' or 'done' must not forget what it
    said: the queued run, the pause. The reply reaches the operator; the state must too."""
    path = tmp_path / "state.db"
    b = Bench(make_config(program=DAILY), start=MON.replace(hour=9),
              state=StateStore(path)).start()
    b.command("run_zone", cmd_id="c-1", zone="z1", duration_s=600)  # running
    on_disk = []

    def reply(status, code, *, clamped=None, **params):
        store = StateStore(path)
        try:
            on_disk.append((status, saved_runs(path), store.get(STATE_HOLDS)))
        finally:
            store.close()

    # z2 shares z1's group: it is queued behind it, not started, when 'accepted' goes out.
    b.app.handle_command("c-2", "run_zone", {"zone": "z2", "duration_s": 600}, reply)
    status, runs, _ = on_disk[-1]
    assert status == "accepted"
    assert ("manual:c-2", "queued") in [(r["run_id"], r["state"]) for r in runs]
    until = (MON.replace(hour=12)).astimezone(UTC).isoformat()
    b.app.handle_command("c-3", "pause", {"until": until}, reply)
    status, _, holds = on_disk[-1]
    assert status == "done" and holds["paused_until"] is not None


class CountingStore(StateStore):
    """A state store that counts its write transactions (each one wears the SD card)."""

    writes = 0

    def set(self, key, value):
        self.writes += 1
        super().set(key, value)

    def set_many(self, docs):
        self.writes += 1
        super().set_many(docs)


def test_idle_unit_writes_no_state_yet_a_restart_finds_every_start_once(tmp_path):
    """The schedule's mark moves with every step, but is saved only when starts were
    looked at: between two starts nothing is written, and a restart from the saved mark
    neither runs a start again nor misses one that fell due while the unit was down."""
    path = tmp_path / "state.db"
    a = Bench(make_config(program=DAILY), start=MON.replace(hour=5, minute=50),
              state=CountingStore(path)).start()
    a.run_until(MON.replace(hour=12), step=30)
    assert [e["planned_at"] for e in a.events("run_started")] == \
        [MON.replace(hour=6).isoformat()]
    before = a.state.writes
    a.run_until(MON.replace(hour=18), step=30)  # 720 steps, 720 checkpoints due
    assert a.state.writes == before
    b = restart(a, path, gap_s=12 * 3600 + 60).start()  # no close(): a power cut; TUE 06:01
    b.run(600, step=30)
    assert [e["planned_at"] for e in b.events("run_started")] == \
        [(MON + timedelta(days=1)).replace(hour=6).isoformat()]
