"""Outbox size bound: old telemetry thinned, events never dropped, drops announced."""

import json

from edge.clock import VirtualClock
from edge.daemon import announce_dropped
from edge.outbox import EVENT, TELEMETRY, Outbox
from protocol import Channel, decode, dropped_ranges


def payload(kind):
    return lambda seq: json.dumps({"seq": seq, "kind": kind}).encode()


def kinds(box):
    return [(r.seq, r.kind) for r in box.rows_after(0, 10_000)]


def test_outbox_full_thins_oldest_telemetry_not_events(tmp_path):
    box = Outbox(tmp_path / "o.db", max_rows=10, thin_batch=2)
    # seq 1 event, 2..9 telemetry, 10 event: full
    box.add(EVENT, payload("e"))
    for _ in range(8):
        box.add(TELEMETRY, payload("t"))
    box.add(EVENT, payload("e"))
    assert box.backlog == 10 and box.dropped == 0

    seq = box.add(TELEMETRY, payload("t"))
    # the 4 oldest telemetry samples are 2,3,4,5: every other one (2, 4) is dropped,
    # seq 11 announces it, the new sample is 12
    assert seq == 12
    assert box.dropped == 2
    rows = kinds(box)
    assert (2, TELEMETRY) not in rows and (4, TELEMETRY) not in rows
    assert (1, EVENT) in rows and (10, EVENT) in rows and (11, EVENT) in rows
    assert [s for s, k in rows if k == EVENT] == [1, 10, 11]
    announcement = json.loads(box.rows_after(10, 1)[0].payload)
    assert announcement == {"seq": 11, "type": "outbox_dropped", "seqs": [2, 4]}


def test_outbox_never_drops_events_and_exceeds_its_bound_instead(tmp_path, caplog):
    box = Outbox(tmp_path / "o.db", max_rows=5, thin_batch=2)
    for _ in range(8):
        box.add(EVENT, payload("e"))
    assert box.backlog == 8
    assert box.dropped == 0
    assert [s for s, _ in kinds(box)] == list(range(1, 9))
    assert "events are never dropped" in caplog.text


def test_outbox_drop_count_persists(tmp_path):
    path = tmp_path / "o.db"
    box = Outbox(path, max_rows=4, thin_batch=1)
    for _ in range(10):
        box.add(TELEMETRY, payload("t"))
    dropped = box.dropped
    assert dropped > 0
    box.close()
    assert Outbox(path).dropped == dropped


def test_outbox_every_dropped_seq_is_announced_exactly_once(tmp_path):
    """Whatever is missing from the stream is listed in an announcement, so the
    controller can account for every seq from 1 to the last."""
    box = Outbox(tmp_path / "o.db", max_rows=50, thin_batch=5)
    for i in range(400):
        box.add(EVENT if i % 7 == 0 else TELEMETRY, payload("x"))
    rows = box.rows_after(0, 10_000)
    present = {r.seq for r in rows}
    announced = []
    for r in rows:
        doc = json.loads(r.payload)
        if doc.get("type") == "outbox_dropped":
            announced += doc["seqs"]
            assert max(doc["seqs"]) < r.seq
    assert len(announced) == len(set(announced)) == box.dropped
    assert present.isdisjoint(announced)
    assert present | set(announced) == set(range(1, box.next_seq))
    # every event survived
    assert sum(1 for r in rows if r.kind == EVENT and json.loads(r.payload).get("kind")) == 58


def test_outbox_announcement_is_a_valid_protocol_event(tmp_path):
    clock = VirtualClock()
    box = Outbox(tmp_path / "o.db", max_rows=6, thin_batch=3, announce=announce_dropped(clock))
    box.add(TELEMETRY, payload("t"))          # 1
    box.add(TELEMETRY, payload("t"))          # 2
    box.add(EVENT, payload("e"))              # 3
    for _ in range(3):
        box.add(TELEMETRY, payload("t"))      # 4, 5, 6
    box.add(TELEMETRY, payload("t"))          # full: oldest telemetry 1,2,4,5,6 -> drop 1,4,6
    announcement = next(r for r in box.rows_after(0, 100)
                        if r.kind == EVENT and b"outbox_dropped" in r.payload)
    event = decode(Channel.EVENT, announcement.payload)
    assert event.seq == 7
    assert event.type == "outbox_dropped"
    assert dropped_ranges(event) == [(1, 1), (4, 4), (6, 6)]
    assert box.dropped == 3
