"""Drain: oldest first, bounded window of unconfirmed publishes, bounded rate, resends."""

import itertools
import json

import pytest

from edge.outbox import EVENT, TELEMETRY, Drain, Outbox


class FakeTime:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class FakeBroker:
    """Stands in for paho: records what was handed over, returns a mid per publish."""

    def __init__(self):
        self.mids = itertools.count(1)
        self.sent = []  # (mid, seq)
        self.up = True

    def send(self, row):
        if not self.up:
            return None
        mid = next(self.mids)
        self.sent.append((mid, row.seq))
        return mid


def fill(box, n, kind=EVENT):
    for _ in range(n):
        box.add(kind, lambda seq: json.dumps({"seq": seq}).encode())


@pytest.fixture
def box(tmp_path):
    return Outbox(tmp_path / "o.db")


def test_outbox_drain_never_exceeds_the_window(box):
    fill(box, 300)
    broker, t = FakeBroker(), FakeTime()
    drain = Drain(box, broker.send, window=100, rate_per_s=None, monotonic=t)
    assert drain.pump() is None  # window full: waits for a PUBACK
    assert len(broker.sent) == 100
    assert [s for _, s in broker.sent] == list(range(1, 101))
    assert drain.pump() is None and len(broker.sent) == 100  # still nothing more

    for mid, _ in broker.sent[:30]:
        assert drain.confirmed(mid)
    drain.pump()
    assert len(broker.sent) == 130
    assert len(drain.inflight) == 100
    assert [s for _, s in broker.sent[100:]] == list(range(101, 131))


def test_outbox_drain_pumps_everything_with_pubacks_and_acks(box):
    fill(box, 130)
    broker, t = FakeBroker(), FakeTime()
    drain = Drain(box, broker.send, window=20, rate_per_s=None, monotonic=t)
    max_inflight = 0
    while len(broker.sent) < 130:
        drain.pump()
        max_inflight = max(max_inflight, len(drain.inflight))
        for mid in list(drain.inflight):
            drain.confirmed(mid)
    assert max_inflight == 20
    assert [s for _, s in broker.sent] == list(range(1, 131))
    assert box.backlog == 130  # PUBACKs delete nothing: only the controller's ack does
    drain.acked(130)
    assert box.backlog == 0


def test_outbox_drain_rate_is_bounded(box):
    fill(box, 120)
    broker, t = FakeBroker(), FakeTime()
    drain = Drain(box, broker.send, window=1000, rate_per_s=50, monotonic=t)
    wait = drain.pump()
    assert len(broker.sent) == 50  # a burst of one second's worth
    assert wait == pytest.approx(1 / 50)
    t.t += 2.0
    drain.pump()
    assert len(broker.sent) == 100  # the bucket holds at most one burst
    t.t += 0.1
    drain.pump()
    assert len(broker.sent) == 105


def test_outbox_drain_restart_resends_from_lowest_unacked(box):
    fill(box, 50)
    broker, t = FakeBroker(), FakeTime()
    drain = Drain(box, broker.send, window=100, rate_per_s=None, monotonic=t)
    drain.pump()
    for mid in list(drain.inflight):
        drain.confirmed(mid)
    drain.acked(20)  # the controller has 1..20; 21..50 were PUBACKed, then the broker died
    drain.stop()
    fill(box, 5)
    assert drain.pump() is None  # disconnected: nothing handed over
    assert len(broker.sent) == 50
    drain.restart()
    drain.pump()
    assert [s for _, s in broker.sent[50:]] == list(range(21, 56))


def test_outbox_drain_send_failure_retries_later(box):
    fill(box, 3)
    broker, t = FakeBroker(), FakeTime()
    drain = Drain(box, broker.send, window=10, rate_per_s=None, monotonic=t)
    broker.up = False
    assert drain.pump() == drain.retry_s
    broker.up = True
    drain.pump()
    assert [s for _, s in broker.sent] == [1, 2, 3]


def test_outbox_drain_resends_when_the_ack_stalls_with_backoff(box):
    fill(box, 5)
    broker, t = FakeBroker(), FakeTime()
    drain = Drain(box, broker.send, window=10, rate_per_s=None, resend_after_s=60,
                  resend_max_s=200, monotonic=t)
    drain.pump()
    for mid in list(drain.inflight):
        drain.confirmed(mid)
    assert drain.pump() == pytest.approx(60)  # all PUBACKed, waiting for the ack
    t.t += 59
    drain.pump()
    assert len(broker.sent) == 5
    t.t += 1
    drain.pump()  # stalled 60 s: everything again
    drain.pump()
    assert [s for _, s in broker.sent] == [1, 2, 3, 4, 5] * 2
    assert drain.resends == 1
    for mid in list(drain.inflight):
        drain.confirmed(mid)
    assert drain.pump() == pytest.approx(120)  # doubled
    t.t += 120
    drain.pump()
    drain.pump()
    for mid in list(drain.inflight):
        drain.confirmed(mid)
    assert drain.pump() == pytest.approx(200)  # capped
    drain.acked(3)  # progress resets the backoff
    assert drain.pump() == pytest.approx(60)
    drain.acked(5)
    assert drain.pump() is None  # nothing waiting


def test_outbox_drain_skips_rows_thinned_while_in_flight(tmp_path):
    box = Outbox(tmp_path / "o.db", max_rows=6, thin_batch=2)
    fill(box, 6, TELEMETRY)
    broker, t = FakeBroker(), FakeTime()
    drain = Drain(box, broker.send, window=3, rate_per_s=None, monotonic=t)
    drain.pump()  # 1, 2, 3 in flight
    fill(box, 1, TELEMETRY)  # full: drops 1 and 3, announces as 7, stores 8
    for mid in list(drain.inflight):
        assert drain.confirmed(mid)
    drain.pump()
    assert [s for _, s in broker.sent] == [1, 2, 3, 4, 5, 6]
    for mid in list(drain.inflight):
        drain.confirmed(mid)
    drain.pump()
    assert [s for _, s in broker.sent][6:] == [7, 8]


def test_outbox_drain_resends_below_a_gap_while_the_unit_keeps_producing(box):
    """A controller that answers with an ack stuck below a gap gets the missing rows again,
    even though the unit keeps adding (and sending) new rows more often than
    ``resend_after_s`` - as after a broker crash that lost what it had not saved."""
    fill(box, 3)
    broker, t = FakeBroker(), FakeTime()
    drain = Drain(box, broker.send, window=10, rate_per_s=None, resend_after_s=60,
                  resend_max_s=200, monotonic=t)
    drain.pump()
    for mid in list(drain.inflight):
        drain.confirmed(mid)
    for _ in range(12):  # two minutes: a new row every 10 s, the ack stuck at 0 each time
        t.t += 10
        fill(box, 1)
        drain.acked(0)
        drain.pump()
        for mid in list(drain.inflight):
            drain.confirmed(mid)
        drain.pump()
    sent = [s for _, s in broker.sent]
    assert sent.count(1) >= 2, f"seq 1 was never sent again: {sent}"
    assert drain.resends >= 1
