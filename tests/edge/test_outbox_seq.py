"""Outbox: seq assignment, persistence across reopen, the controller's ack."""

import json
import threading

import pytest

from edge.outbox import EVENT, TELEMETRY, Outbox


def payload(kind, n=0):
    return lambda seq: json.dumps({"seq": seq, "kind": kind, "n": n}).encode()


def seqs(outbox):
    return [r.seq for r in outbox.rows_after(0, 10_000)]


def test_outbox_seq_survives_reopen(tmp_path):
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    assert [box.add(EVENT, payload("e")) for _ in range(3)] == [1, 2, 3]
    box.ack(2)
    box.close()

    box = Outbox(path)
    assert box.backlog == 1
    assert box.add(TELEMETRY, payload("t")) == 4
    assert seqs(box) == [3, 4]
    assert json.loads(box.rows_after(3, 1)[0].payload)["seq"] == 4


def test_outbox_seq_not_used_when_the_payload_cannot_be_built(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.add(EVENT, payload("e"))

    def broken(seq):
        raise ValueError("cannot encode")

    with pytest.raises(ValueError):
        box.add(EVENT, broken)
    assert box.backlog == 1
    assert box.add(EVENT, payload("e")) == 2


def test_outbox_ack_deletes_only_up_to_n(tmp_path):
    box = Outbox(tmp_path / "o.db")
    for i in range(10):
        box.add(EVENT if i % 3 == 0 else TELEMETRY, payload("x", i))
    assert box.ack(4) == 4
    assert seqs(box) == [5, 6, 7, 8, 9, 10]
    assert box.ack(4) == 0  # a repeated ack is a no-op
    assert box.ack(2) == 0  # an older ack arriving late, too
    assert box.ack(9) == 5
    assert seqs(box) == [10]
    assert box.backlog == 1


def test_outbox_rows_come_oldest_first_with_kind_and_payload(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.add(TELEMETRY, payload("t", 1))
    box.add(EVENT, payload("e", 2))
    rows = box.rows_after(0, 10)
    assert [(r.seq, r.kind) for r in rows] == [(1, TELEMETRY), (2, EVENT)]
    assert json.loads(rows[1].payload) == {"seq": 2, "kind": "e", "n": 2}
    assert box.rows_after(1, 10) == rows[1:]
    assert box.rows_after(0, 1) == rows[:1]


def test_outbox_seq_unique_under_concurrent_writers(tmp_path):
    box = Outbox(tmp_path / "o.db")
    got = []
    lock = threading.Lock()

    def writer():
        for _ in range(50):
            seq = box.add(EVENT, payload("e"))
            with lock:
                got.append(seq)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 201))
    assert seqs(box) == list(range(1, 201))
    # each payload carries the seq it was stored under
    assert all(json.loads(r.payload)["seq"] == r.seq for r in box.rows_after(0, 1000))


def test_outbox_ack_beyond_last_seq_moves_seq_past_it(tmp_path):
    """A new outbox file (replaced SD card) restarts at seq 1; the controller already has
    seqs up to 500 for this device, so it acks 500. The waiting rows are renumbered after
    it, so the controller does not take them for redeliveries."""
    box = Outbox(tmp_path / "o.db")
    for i in range(3):
        box.add(EVENT, payload("e", i))
    assert box.ack(500) == 0
    rows = box.rows_after(0, 10)
    assert [r.seq for r in rows] == [501, 502, 503]
    assert [json.loads(r.payload) for r in rows] == [
        {"seq": 501, "kind": "e", "n": 0}, {"seq": 502, "kind": "e", "n": 1},
        {"seq": 503, "kind": "e", "n": 2}]
    assert box.add(EVENT, payload("e", 3)) == 504
    box.close()
    assert Outbox(tmp_path / "o.db").next_seq == 505


def test_outbox_replies_kept_until_delivered(tmp_path):
    path = tmp_path / "o.db"
    box = Outbox(path)
    a = box.add_reply(b'{"id":"a"}')
    b = box.add_reply(b'{"id":"b"}')
    assert box.backlog == 0  # replies are not in the seq stream
    box.close()
    box = Outbox(path)
    assert box.pending_replies() == [(a, b'{"id":"a"}'), (b, b'{"id":"b"}')]
    box.reply_delivered(a)
    assert box.pending_replies() == [(b, b'{"id":"b"}')]


def test_outbox_refuses_unknown_kind(tmp_path):
    box = Outbox(tmp_path / "o.db")
    with pytest.raises(ValueError):
        box.add("status", payload("s"))
    assert box.next_seq == 1


def test_outbox_file_is_wal_with_full_sync(tmp_path):
    box = Outbox(tmp_path / "o.db")
    assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
