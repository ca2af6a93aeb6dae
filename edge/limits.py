"""A request cut down to a local hard limit (pure: the rule modules use it)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Clamp"]


@dataclass(frozen=True)
class Clamp:
    """A request cut down to a local hard limit; reported in the reply and as an event."""

    field: str
    asked: float
    allowed: float
    limit: str

    def as_dict(self) -> dict:
        return {"field": self.field, "asked": self.asked, "allowed": self.allowed,
                "limit": self.limit}
