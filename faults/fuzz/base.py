"""What every fuzz target is made of, and what running one counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

Check = Callable[[Any], bool]
"""``check(example) -> True`` when accepted (and right), False when refused with the
documented error; raises ``Wrong`` for an accepted but wrong result; any other exception
is a crash."""


class Wrong(AssertionError):
    """A target accepted input and returned something it must never return."""


@dataclass
class Target:
    name: str
    strategy: st.SearchStrategy
    check: Check
    examples: int  # in the long run


@dataclass
class Tally:
    name: str
    examples: int = 0
    accepted: int = 0
    refused: int = 0
    crashes: int = 0
    wrong: int = 0
    seconds: float = 0.0
    samples: list[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.examples / self.seconds if self.seconds else 0.0
        return (f"{self.name:<22} {self.examples:>8} examples  {self.accepted:>7} accepted  "
                f"{self.refused:>8} refused  {self.crashes} crashes  {self.wrong} wrong  "
                f"({self.seconds:.0f} s, {rate:.0f}/s)")
