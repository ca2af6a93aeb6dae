"""SeqTracker: the ack moves over contiguous committed or announced seqs, never past a hole."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controller.seqs import SeqTracker


def test_seqs_contiguous_advance():
    t = SeqTracker()
    for seq in (1, 2, 3):
        assert t.add(seq)
    assert t.advance() == 3
    assert (t.missing, t.gaps_opened) == (0, 0)


def test_seqs_hole_holds_the_ack_until_filled():
    t = SeqTracker()
    for seq in (1, 2, 5, 6):
        t.add(seq)
    assert t.advance() == 2
    assert t.missing == 2 and t.gaps_opened == 1
    t.add(3)
    assert t.advance() == 3
    t.add(4)
    assert t.advance() == 6 and t.missing == 0


def test_seqs_announced_drop_lets_the_ack_move_past():
    t = SeqTracker()
    t.add(1)
    assert t.drop(2, 4) == 3
    t.add(5)
    assert t.advance() == 5
    assert t.missing == 0


def test_seqs_unannounced_hole_after_a_drop_still_holds():
    t = SeqTracker()
    t.add(1)
    t.drop(2, 3)
    t.add(6)  # 4 and 5 neither arrived nor were announced
    assert t.advance() == 3
    assert t.missing == 2


def test_seqs_duplicates_and_old_seqs_are_not_new():
    t = SeqTracker()
    t.add(1)
    t.advance()
    assert not t.add(1)
    t.add(3)
    assert not t.add(3)
    t.drop(3, 3)  # dropped after it was sent: it counts once
    assert t.advance() == 1 and t.missing == 1


def test_seqs_restore_round_trip():
    t = SeqTracker()
    for seq in (1, 2, 4, 9):
        t.add(seq)
    t.drop(6, 7)
    t.advance()
    back = SeqTracker.restore(t.acked, t.max_seen, t.gaps_opened, t.pending, t.dropped)
    assert (back.acked, back.missing, back.pending, back.dropped) == (
        t.acked, t.missing, t.pending, t.dropped)
    back.add(3)
    back.add(5)
    assert back.advance() == 7


@given(st.sets(st.integers(1, 60)), st.lists(st.tuples(st.integers(1, 60), st.integers(0, 5))))
def test_seqs_ack_is_the_highest_contiguous_accounted_seq(committed, drops):
    t = SeqTracker()
    accounted = set(committed)
    for seq in sorted(committed):
        t.add(seq)
    for start, length in drops:
        t.drop(start, start + length)
        accounted |= set(range(start, start + length + 1))
    expected = 0
    while expected + 1 in accounted:
        expected += 1
    assert t.advance() == expected
    top = max(accounted, default=0)
    assert t.missing == len(set(range(expected + 1, top + 1)) - accounted)
