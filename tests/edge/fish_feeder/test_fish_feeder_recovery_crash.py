"""A fish-feeder unit killed while it records a feeding, or what a crash cut short.

A feeding's reports go to the outbox (``outbox.db``), its totals and its progress to the
state file (``state.db``): two files. At start the daemon stores ``run_interrupted`` (a
feeding in progress) and ``alarm_cleared`` (a lockout a restart clears), then clears them
in its state file; a feeding that ends stores ``feed_dispensed`` and counts its grams.
The real wiring (``build_unit``: state store, outbox, link, app on mock pins and the
field simulator, no broker) runs on files in a temporary directory; a process is
"killed" by abandoning it without its clean stop, at a write that raises, so no timing
is involved.
"""

from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from support.outbox_events import stored_events as outbox_events

from edge.clock import VirtualClock
from edge.daemon import STATE_FILE, build_unit
from edge.fish_feeder.app import FishFeederApp
from edge.hardware import make_pin_factory
from edge.sim.fish_feeder import FishFeederSim
from edge.state import StateStore

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

    def kill_at_write(self, n: int, *, after: bool) -> list[str]:
        """Count the unit's durable writes from now on (state documents other than the
        ``ff.alive`` mark, events stored in the outbox) and die at the ``n``-th (from 0):
        before it reaches its file, or (``after``) just after it was committed. Returns
        the list the writes are named in as they happen."""
        seen: list[str] = []
        store, outbox = self.unit.state, self.unit.outbox
        real_set_many, real_add, real_add_once = store.set_many, outbox.add, outbox.add_once

        def durable(name, write):
            index = len(seen)
            seen.append(name)
            if index == n and not after:
                raise Killed(f"killed before {name}")
            result = write()
            if index == n:
                raise Killed(f"killed just after {name}")
            return result

        def set_many(docs):
            names = sorted(k for k in docs if k != "ff.alive")
            if not names:
                return real_set_many(docs)
            return durable("+".join(names), lambda: real_set_many(docs))

        store.set = lambda key, value: set_many({key: value})
        store.set_many = set_many
        outbox.add = lambda kind, build: (
            real_add(kind, build) if kind != "event"
            else durable("event", lambda: real_add(kind, build)))
        outbox.add_once = lambda kind, key, build: durable(
            f"event {key.split(':')[0]}", lambda: real_add_once(kind, key, build))
        return seen


def saved(state_dir, key: str):
    store = StateStore(state_dir / STATE_FILE)
    try:
        return store.get(key)
    finally:
        store.close()


def counted(state_dir) -> dict:
    """Today's totals of the nila feeder and pond, and the pond's feed log of today."""
    daily = saved(state_dir, "ff.daily")
    log = (saved(state_dir, "ff.feed_log") or {}).get("kolam-nila", {}).get(daily["day"], {})
    zero = {"commanded_g": 0.0, "measured_g": 0.0}
    return {"feeder": daily["feeders"].get("pakan-nila", zero),
            "pond": daily["ponds"].get("kolam-nila", zero),
            "log": {k: log.get(k, 0) for k in ("commanded_g", "measured_g", "feedings")}}


def stored_events(state_dir, type_: str) -> list[dict]:
    """The details of every event of ``type_`` in the unit's outbox, in seq order."""
    return [doc["details"] for doc in outbox_events(state_dir, type_)]


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


@pytest.mark.parametrize("jammed", [False, True], ids=["fed", "jammed"])
def test_a_kill_at_any_write_of_a_feeding_that_ends_leaves_one_report_counted_once(
        unit_config, tmp_path, jammed):
    """The feeding ends: grams counted (the daily cap), feed log, rate trim, feeding in
    progress cleared, feed_dispensed (and for a jam: the lockout and its alarm). A kill
    just before or just after each of these writes, then a restart: the feeding is
    reported once, as dispensed or as cut short, and the daily totals count it exactly
    as that report says (a jammed feeder's few grams, not the 1000 g reserved)."""
    outcomes = set()
    for n in range(12):
        for after in (False, True):
            state_dir = tmp_path / f"{n}-{'after' if after else 'before'}"
            config = unit_config(state_dir=str(state_dir))
            a = Process(config, TEN_WITA, jammed=jammed).start()
            a.feed_now("c-1", dose_g=1000)
            a.sim.run(2 if jammed else 40)
            assert a.motor_on()
            writes = a.kill_at_write(n, after=after)
            try:
                a.sim.run(60)
            except Killed:
                pass
            else:  # no n-th write: every kill point of the feeding's end was tried
                assert not a.motor_on() and n >= 3, writes
                a.kill()
                assert outcomes == {"dispensed", "interrupted"}
                return
            a.kill()
            b = Process(config, TEN_WITA + timedelta(seconds=120)).start()
            b.sim.run(30)
            assert not b.motor_on()
            b.kill()

            where = f"killed {'after' if after else 'before'} {writes[-1]} (writes {writes})"
            dispensed = stored_events(state_dir, "feed_dispensed")
            interrupted = stored_events(state_dir, "run_interrupted")
            assert len(dispensed) + len(interrupted) == 1, where
            totals = counted(state_dir)
            assert totals["feeder"] == totals["pond"], where
            if dispensed:
                outcomes.add("dispensed")
                (e,) = dispensed
                assert (e["fault"], e["measured_g"] > 900) == (
                    ("jam", False) if jammed else (None, True)), where
                assert totals["feeder"]["commanded_g"] == pytest.approx(
                    e["commanded_g"], abs=0.05), where
                assert totals["feeder"]["measured_g"] == pytest.approx(
                    e["measured_g"], abs=0.05), where
                assert totals["log"]["feedings"] == 1, where
                assert totals["log"]["measured_g"] == pytest.approx(
                    e["measured_g"], abs=0.05), where
            else:
                outcomes.add("interrupted")
                (e,) = interrupted
                assert totals["feeder"] == {"commanded_g": e["counted_g"],
                                            "measured_g": 0.0}, where
                assert totals["log"]["feedings"] == 0, where
            assert saved(state_dir, "ff.in_progress") == {}, where
    pytest.fail("the feeding's end never ran out of writes to kill at")


def test_a_kill_at_any_write_of_a_feeding_that_starts_counts_it_only_if_it_is_reported(
        unit_config, tmp_path):
    """A feeding starts: its grams are reserved against the daily cap and it is saved as
    in progress, then the motor runs. Killed at either write, a restart reports the
    feeding cut short and counts it in full, or finds no trace of it in the totals."""
    for n in range(6):
        for after in (False, True):
            state_dir = tmp_path / f"{n}-{'after' if after else 'before'}"
            config = unit_config(state_dir=str(state_dir))
            a = Process(config, TEN_WITA).start()
            writes = a.kill_at_write(n, after=after)
            try:
                a.feed_now("c-1", dose_g=1000)
            except Killed:
                pass
            else:
                assert a.motor_on() and n >= 1, writes
                a.kill()
                return
            assert not a.motor_on()
            a.kill()
            b = Process(config, TEN_WITA + timedelta(seconds=60)).start()
            b.sim.run(30)
            assert not b.motor_on()
            b.kill()

            where = f"killed {'after' if after else 'before'} {writes[-1]} (writes {writes})"
            assert stored_events(state_dir, "feed_dispensed") == [], where
            interrupted = stored_events(state_dir, "run_interrupted")
            totals = counted(state_dir)
            counted_g = sum(e["counted_g"] for e in interrupted)
            assert len(interrupted) <= 1, where
            assert totals["feeder"] == {"commanded_g": counted_g, "measured_g": 0.0}, where
    pytest.fail("the feeding's start never ran out of writes to kill at")


def test_feed_now_is_answered_after_its_feeding_is_on_disk_and_a_cut_one_names_it(
        unit_config, tmp_path):
    """'accepted' goes out only once the feeding is saved as in progress, so a unit killed
    right after answering reports that feeding cut short, with the command's id (the
    controller closes the command from it; the reply that would have said 'done' died
    with the unit)."""
    config = unit_config(state_dir=str(tmp_path))
    a = Process(config, TEN_WITA).start()
    on_disk = []

    def reply(status, *_a, **_k):
        on_disk.append((status, saved(tmp_path, "ff.in_progress")))

    a.app.handle_command("c-9", "feed_now", {"feeder": "pakan-nila", "dose_g": 500},
                         reply)
    ((status, in_progress),) = on_disk
    assert status == "accepted"
    assert in_progress["pakan-nila"]["cmd_id"] == "c-9"
    a.kill()

    b = Process(config, TEN_WITA + timedelta(seconds=30)).start()
    b.kill()
    (cut,) = stored_events(tmp_path, "run_interrupted")
    assert (cut["cmd_id"], cut["action"], cut["counted_g"]) == ("c-9", "dropped", 500)

