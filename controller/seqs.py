"""Which seqs of one unit are accounted for, and so how far the controller may ack.

Every telemetry sample and event of a unit carries a seq (1, 2, 3, ... shared by both
kinds). The unit deletes a message from its outbox only when the controller's ack says
every seq up to N is committed. So the ack is the *highest contiguous* seq: a seq that
never arrived holds it back, unless the unit announced that seq as dropped (an
``outbox_dropped`` event), in which case it is accounted for and the ack moves past it.

`SeqTracker` is that rule as a small class with no I/O; the store loads it, feeds it the
seqs of one committed batch, and saves it back in the same transaction.

>>> t = SeqTracker()
>>> t.add(1), t.add(2), t.add(4)
(True, True, True)
>>> t.advance(), t.missing
(2, 1)
>>> t.drop(3, 3)
1
>>> t.advance(), t.missing
(4, 0)
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from protocol.seqranges import merge_ranges


@dataclass
class SeqTracker:
    """Contiguous watermark over committed and announced-dropped seqs of one device.

    ``acked``: every seq <= acked is committed or announced dropped.
    ``pending``: committed seqs above ``acked`` (waiting for a gap below them to close).
    ``dropped``: announced-dropped inclusive ranges above ``acked``, sorted, merged.
    ``max_seen``: highest seq committed or announced so far.
    ``gaps_opened``: how many times a seq arrived beyond ``max_seen + 1`` (a hole opened).
    """

    acked: int = 0
    pending: set[int] = field(default_factory=set)
    dropped: list[tuple[int, int]] = field(default_factory=list)
    max_seen: int = 0
    gaps_opened: int = 0

    @classmethod
    def restore(cls, acked: int, max_seen: int, gaps_opened: int, pending: Iterable[int],
                dropped: Iterable[tuple[int, int]]) -> SeqTracker:
        tracker = cls(acked=acked, max_seen=max(max_seen, acked), gaps_opened=gaps_opened)
        tracker.pending = {s for s in pending if s > acked}
        for start, end in dropped:
            tracker._add_range(start, end)
        return tracker

    def add(self, seq: int) -> bool:
        """Record committed ``seq``; True if it was not accounted for before.

        Call `advance` once the whole batch is in.
        """
        if seq <= self.acked or seq in self.pending or self._in_dropped(seq):
            return False
        self._note_span(seq, seq)
        self.pending.add(seq)
        return True

    def drop(self, start: int, end: int) -> int:
        """Record an announced inclusive range of dropped seqs; returns how many were new.

        A dropped seq that was already committed stays committed (it counts once).
        """
        start = max(start, self.acked + 1)
        if end < start:
            return 0
        new = (end - start + 1) - self._covered(start, end)
        self._note_span(start, end)
        self._add_range(start, end)
        return new

    def advance(self) -> int:
        """Move ``acked`` over every contiguous accounted-for seq; returns the new value."""
        moved = True
        while moved:
            moved = False
            nxt = self.acked + 1
            if nxt in self.pending:
                self.pending.discard(nxt)
                self.acked = nxt
                moved = True
            elif self.dropped and self.dropped[0][0] <= nxt:
                self.acked = max(self.acked, self.dropped.pop(0)[1])
                moved = True
        self.pending = {s for s in self.pending if s > self.acked}
        self.max_seen = max(self.max_seen, self.acked)
        return self.acked

    @property
    def missing(self) -> int:
        """Seqs in ``(acked, max_seen]`` neither committed nor announced dropped."""
        span = self.max_seen - self.acked
        announced = sum(min(e, self.max_seen) - max(s, self.acked + 1) + 1
                        for s, e in self.dropped if e > self.acked)
        in_pending = sum(1 for s in self.pending if not self._in_dropped(s))
        return max(0, span - announced - in_pending)

    # ------------------------------------------------------------------ helpers
    def _note_span(self, start: int, end: int) -> None:
        if start > self.max_seen + 1:
            self.gaps_opened += 1
        self.max_seen = max(self.max_seen, end)

    def _in_dropped(self, seq: int) -> bool:
        index = bisect.bisect_right(self.dropped, (seq, float("inf"))) - 1
        return index >= 0 and self.dropped[index][0] <= seq <= self.dropped[index][1]

    def _covered(self, start: int, end: int) -> int:
        """Seqs in [start, end] already accounted for (pending or in a dropped range)."""
        covered = sum(min(e, end) - max(s, start) + 1 for s, e in self.dropped
                      if s <= end and e >= start)
        covered += sum(1 for s in self.pending if start <= s <= end and not self._in_dropped(s))
        return covered

    def _add_range(self, start: int, end: int) -> None:
        self.dropped = merge_ranges([*self.dropped, (start, end)])
