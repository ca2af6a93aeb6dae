"""Field types and bases shared by the payload models (:mod:`protocol.models`).

The conventions the module docstring of :mod:`protocol.models` lists are enforced here:
UTC timestamps with an offset on input, integers within +-(2**53 - 1), finite floats,
strict booleans, plain bounded JSON for free-form objects, and one base that refuses
unknown fields and freezes the model."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    StringConstraints,
    field_validator,
)

__all__ = ["COMMAND_ID_PATTERN", "MAX_INT", "SCHEMA_VERSION", "CommandId", "Count", "Flag",
           "Frozen", "Message", "Number", "Reading", "Seq", "Text", "UtcDatetime", "bounded_json"]

SCHEMA_VERSION = 1
"""Value of the ``v`` field this code writes and accepts."""

MAX_INT = 2**53 - 1
"""Largest integer magnitude on the wire (exact in JavaScript and SQLite)."""

COMMAND_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Syntax of a command id: 1-64 of ``A-Za-z0-9_-`` (a UUID fits)."""

# --------------------------------------------------------------------------- field types

_TIMESTAMP_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})$", re.ASCII
)


def _timestamp_input(value: object) -> object:
    """Let through datetimes and RFC 3339 strings only (no epoch numbers, no dates)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _TIMESTAMP_RE.fullmatch(value):
        return value
    raise ValueError("must be a timestamp with a UTC offset, like 2024-05-01T02:30:00Z")


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValueError("timestamp out of range") from exc


UtcDatetime = Annotated[
    AwareDatetime,
    BeforeValidator(_timestamp_input),
    AfterValidator(_to_utc),
]
"""Offset-aware timestamp, stored and written in UTC."""


def _int_in_range(value: int) -> int:
    if not -MAX_INT <= value <= MAX_INT:
        raise ValueError(f"integer out of range (magnitude at most {MAX_INT})")
    return value


def _number(value: object) -> int | float:
    """A JSON number: int in range or finite float; not bool, not a numeric string."""
    kind = type(value)  # the common cases first, without isinstance chains
    if kind is float and math.isfinite(value):  # type: ignore[arg-type]
        return value  # type: ignore[return-value]
    if kind is int and -MAX_INT <= value <= MAX_INT:  # type: ignore[operator]
        return value  # type: ignore[return-value]
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(value, int):
        return _int_in_range(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number (no NaN or Infinity)")
        return value
    raise ValueError("must be a number")


def _reading(value: object) -> bool | int | float | None:
    kind = type(value)  # the common cases first, without isinstance chains
    if kind is float and math.isfinite(value):  # type: ignore[arg-type]
        return value  # type: ignore[return-value]
    if value is None or kind is bool:
        return value  # type: ignore[return-value]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _number(value)
    raise ValueError("must be a number, true, false or null")


def _text(value: str) -> str:
    """Refuse strings that cannot be written as UTF-8 (lone surrogates from ``\\ud800``)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (lone surrogate)") from None
    return value


Text = Annotated[str, Strict(), AfterValidator(_text)]
Number = Annotated[int | float, PlainValidator(_number, json_schema_input_type=int | float)]
Reading = Annotated[
    bool | int | float | None,
    PlainValidator(_reading, json_schema_input_type=bool | int | float | None),
]
CommandId = Annotated[str, Strict(), StringConstraints(pattern=COMMAND_ID_PATTERN)]
Seq = Annotated[int, Strict(), Field(ge=1, le=MAX_INT)]
Count = Annotated[int, Strict(), Field(ge=0, le=MAX_INT)]
Flag = Annotated[bool, Strict()]


def _json_copy(value: object, path: str, depth: int, budget: list[int], max_depth: int) -> Any:
    """Deep-copy ``value`` while checking that it is plain, bounded JSON."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError("too many items")
    where = f" at {path[:120]}" if path else ""
    if isinstance(value, dict | list):
        if depth >= max_depth:
            raise ValueError(f"nested too deeply (at most {max_depth} levels){where}")
        if isinstance(value, list):
            return [
                _json_copy(item, f"{path}[{index}]", depth + 1, budget, max_depth)
                for index, item in enumerate(value)
            ]
        copy = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"object keys must be strings{where}")
            try:
                _text(key)
            except ValueError as exc:
                raise ValueError(f"{exc}{where}") from None
            copy[key] = _json_copy(item, f"{path}.{key}" if path else key, depth + 1, budget,
                                   max_depth)
        return copy
    if isinstance(value, str):
        try:
            return _text(value)
        except ValueError as exc:
            raise ValueError(f"{exc}{where}") from None
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        try:
            return _number(value)
        except ValueError as exc:
            raise ValueError(f"{exc}{where}") from None
    raise ValueError(f"{type(value).__name__} is not a JSON value{where}")


def bounded_json(max_depth: int, max_items: int) -> AfterValidator:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        return _json_copy(value, "", 0, [max_items], max_depth)

    return AfterValidator(check)


# --------------------------------------------------------------------------- bases


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Message(Frozen):
    """Base of every payload: carries the schema version ``v``."""

    v: Literal[1] = Field(
        default=SCHEMA_VERSION,
        description="Schema version of this payload. Always 1 in this version.",
    )

    @field_validator("v", mode="before")
    @classmethod
    def _exact_version(cls, value: object) -> object:
        if type(value) is not int or value != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema version {value!r} (this build reads "
                             f"{SCHEMA_VERSION})")
        return value
