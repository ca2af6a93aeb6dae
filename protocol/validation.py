"""Checking a model and naming what is wrong: ``(field, reason)`` pairs.

Shared by the unit's config files, the remote schedules (:mod:`protocol.kinds`) and the
controller's API, so a refusal names the same field and reason wherever it is made::

    try:
        SomeModel.model_validate(data)
    except ValidationError as exc:
        for field, reason in problems(exc):
            ...

A cross-field check raises :class:`FieldProblem` (a ``ValueError``) to name the field it
is about; pydantic prefixes the model's path.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["FieldProblem", "StrictModel", "problems"]


class FieldProblem(ValueError):
    """A check that knows which field is wrong (``""``: the field being validated) and
    why: ``reason`` in English, and optionally a message ``code`` with its ``params``,
    so that a reader can say it in another language (the units' technician tools do)."""

    def __init__(self, field: str, reason: str, *, code: str | None = None, **params):
        self.field = field
        self.reason = reason
        self.code = code
        self.params = params
        super().__init__(reason)


class StrictModel(BaseModel):
    """Base of every config and schedule model: unknown keys and NaN/inf are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=True)


def problems(exc: ValidationError) -> Iterator[tuple[str, str]]:
    """``(field, reason)`` pairs of a pydantic error, naming fields by dotted path."""
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblem):
            yield ".".join(p for p in (loc, cause.field) if p) or "(file)", str(cause)
        else:
            reason = err["msg"]
            if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
                reason += f" (got {err['input']!r})"
            yield loc or "(file)", reason
