"""Sequence ranges: inclusive ``(first, last)`` runs of seqs, sorted and merged.

Used where seqs are announced as dropped (the unit's ``outbox_dropped`` event) and where
they are accounted for (the controller's ack watermark)::

    merge_ranges([(4, 6), (1, 1), (2, 3)])  # [(1, 6)]
    runs([1, 2, 3, 7])                      # [(1, 3), (7, 7)]
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["merge_ranges", "runs"]


def merge_ranges(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted inclusive ranges with overlapping and adjacent ones joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Single seqs as merged inclusive ranges."""
    return merge_ranges((s, s) for s in seqs)
