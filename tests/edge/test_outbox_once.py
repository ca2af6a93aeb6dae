"""Outbox: messages stored once per key (``add_once``), and ``Link.event_once`` on it."""

import json

import pytest

from edge.clock import VirtualClock
from edge.config import parse_config
from edge.link import Link
from edge.outbox import EVENT, TELEMETRY, Outbox
from edge.publisher import MemoryPublisher
from edge.state import StateStore


def payload(n):
    return lambda seq: json.dumps({"seq": seq, "n": n}).encode()


def stored(box):
    return [(r.seq, json.loads(r.payload)["n"]) for r in box.rows_after(0, 10_000)]


def test_outbox_add_once_stores_a_key_once_across_reopen_and_ack(tmp_path):
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    assert box.add_once(EVENT, "run-1#1", payload("first")) == (1, True)
    assert box.add(TELEMETRY, payload("sample")) == 2
    assert box.add_once(EVENT, "run-1#1", payload("again")) == (1, False)
    box.close()

    box = Outbox(path)  # a new process
    assert box.add_once(EVENT, "run-1#1", payload("after reopen")) == (1, False)
    assert box.ack(2) == 2  # the controller has it: the row goes, the key stays
    assert box.add_once(EVENT, "run-1#1", payload("after ack")) == (1, False)
    assert box.add_once(EVENT, "run-1#2", payload("second")) == (3, True)
    assert stored(box) == [(3, "second")]
    assert box.next_seq == 4  # a refused copy takes no seq


def test_outbox_add_once_does_not_build_a_refused_copy_and_a_failed_build_keeps_no_key(
        tmp_path):
    box = Outbox(tmp_path / "o.db")

    def broken(seq):
        raise ValueError("cannot encode")

    with pytest.raises(ValueError):
        box.add_once(EVENT, "k", broken)
    assert box.add_once(EVENT, "k", payload("good")) == (1, True)  # the key was rolled back
    assert box.add_once(EVENT, "k", broken) == (1, False)  # not built at all
    assert stored(box) == [(1, "good")]


def test_outbox_keeps_only_the_most_recent_keys(tmp_path):
    box = Outbox(tmp_path / "o.db", max_keys=3)
    for i in range(5):
        box.add_once(EVENT, f"k{i}", payload(i))
    assert [box.add_once(EVENT, f"k{i}", payload("x"))[1] for i in (2, 3, 4)] == [False] * 3
    assert box.add_once(EVENT, "k0", payload("k0 again")) == (6, True)  # forgotten


def test_outbox_keys_follow_their_rows_when_the_outbox_is_renumbered(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.add(EVENT, payload("a"))
    box.add_once(EVENT, "k", payload("keyed"))
    box.ack(500)  # a new outbox on a unit the controller knew: rows renumbered after 500
    assert stored(box) == [(501, "a"), (502, "keyed")]
    assert box.add_once(EVENT, "k", payload("again")) == (502, False)


def test_link_event_once_stores_the_first_report_and_says_so_for_the_others(tmp_path):
    config = parse_config({
        "kind": "irrigation", "state_dir": str(tmp_path),
        "unit": {"device_id": "dlh-test-01", "opd": "dlh"},
        "outputs": [{"name": "v1", "pin": 17, "max_on_s": 600}],
        "zones": [{"name": "z1", "valve": "v1"}]}, "<test>")
    box = Outbox(tmp_path / "outbox.db")
    link = Link(config, outbox=box, state=StateStore(tmp_path / "state.db"),
                clock=VirtualClock(), clock_synced=lambda: True)
    first = link.event_once("run-1#1", "run_interrupted", run_id="run-1", action="dropped")
    again = link.event_once("run-1#1", "run_interrupted", run_id="run-1", action="dropped")
    other = link.event("run_interrupted", run_id="run-1", action="dropped")
    assert (first, again, other) == (1, 1, 2)
    assert link.counters["events_stored_already"] == 1
    # An event the wire refuses is stored as an invalid_event alarm, under the same key.
    bad = link.event_once("bad#1", "no such event type!", x=1)
    assert link.event_once("bad#1", "no such event type!", x=1) == bad == 3
    types = [json.loads(r.payload)["type"] for r in box.rows_after(0, 100)]
    assert types == ["run_interrupted", "run_interrupted", "alarm"]


def test_outbox_has_key_knows_the_kept_keys_across_reopen_and_ack(tmp_path):
    path = tmp_path / "outbox.db"
    box = Outbox(path, max_keys=2)
    assert not box.has_key("run_finished:r1")
    box.add(EVENT, payload("plain"))  # an event stored without a key records none
    box.add_once(EVENT, "run_finished:r1", payload("r1"))
    assert box.has_key("run_finished:r1") and not box.has_key("run_finished:r2")
    box.close()

    box = Outbox(path, max_keys=2)
    box.ack(box.next_seq - 1)
    assert box.has_key("run_finished:r1")  # acknowledged: the row is gone, the key stays
    box.add_once(EVENT, "k2", payload("k2"))
    box.add_once(EVENT, "k3", payload("k3"))
    assert not box.has_key("run_finished:r1")  # beyond the last max_keys
    assert box.has_key("k2") and box.has_key("k3")


def test_link_and_memory_publisher_say_whether_an_event_was_stored_under_a_key(tmp_path):
    config = parse_config({
        "kind": "irrigation", "state_dir": str(tmp_path),
        "unit": {"device_id": "dlh-test-01", "opd": "dlh"},
        "outputs": [{"name": "v1", "pin": 17, "max_on_s": 600}],
        "zones": [{"name": "z1", "valve": "v1"}]}, "<test>")
    clock = VirtualClock()
    box = Outbox(tmp_path / "outbox.db")
    link = Link(config, outbox=box, state=StateStore(tmp_path / "state.db"), clock=clock,
                clock_synced=lambda: True)
    memory = MemoryPublisher(clock)
    for publisher in (link, memory):
        assert publisher.event_stored("run_finished:r1") is False
        publisher.event("run_finished", run_id="r1")  # no key
        assert publisher.event_stored("run_finished:r1") is False
        publisher.event_once("run_finished:r1", "run_finished", run_id="r1")
        assert publisher.event_stored("run_finished:r1") is True
    box.close()  # an outbox that cannot be read: the link cannot tell, and says so
    assert link.event_stored("run_finished:r1") is None
    assert link.counters["outbox_errors"] == 1
