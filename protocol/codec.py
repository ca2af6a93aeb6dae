"""Bytes on the wire <-> payload models.

:func:`encode` writes compact UTF-8 JSON. :func:`decode` reads a payload for a channel
and either returns a valid model or raises :class:`~protocol.errors.PayloadError` (a
:class:`~protocol.errors.ProtocolError`), never anything else, whatever the bytes::

    try:
        message = decode(parts.channel, msg.payload)
    except ProtocolError as exc:
        logger.warning("rejected %s: %s", msg.topic, exc)

Checks, cheapest first: size (:data:`MAX_PAYLOAD_BYTES`, before anything is parsed),
UTF-8, nesting depth (:data:`MAX_JSON_DEPTH`), JSON syntax (no NaN or Infinity, no
duplicate keys), a top-level object, the schema version ``v``, then the model.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any, NoReturn, TypeVar, overload

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from protocol.errors import PayloadError, ProtocolError
from protocol.models import MODELS_BY_CHANNEL, SCHEMA_VERSION, Message, channel_of
from protocol.topics import Channel

__all__ = ["MAX_JSON_DEPTH", "MAX_PAYLOAD_BYTES", "decode", "encode", "errors_to_problems"]

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 64 * 1024
"""Largest payload, in bytes, that is written or read (64 KiB)."""

MAX_JSON_DEPTH = 32
"""Deepest nesting of objects and arrays that is parsed at all (the top object is 1)."""

M = TypeVar("M", bound=Message)

# A JSON string (the closing quote optional, so an unterminated string is one match
# and the scan stays linear) or a bracket.
_TOKEN_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def encode(message: Message) -> bytes:
    """Serialise a payload model to compact UTF-8 JSON, ready to publish.

    Raises :class:`PayloadError` if the result would exceed :data:`MAX_PAYLOAD_BYTES`
    (a receiver would refuse it).
    """
    if not isinstance(message, Message):
        raise TypeError(f"encode() takes a payload model, not {type(message).__name__}")
    context = f"{channel_of(message).value} payload"
    try:
        data = message.model_dump_json(by_alias=True).encode("utf-8")
    except (PydanticSerializationError, UnicodeEncodeError) as exc:
        raise PayloadError(f"cannot serialise: {exc}", context=context) from exc
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"{len(data)} bytes is larger than {MAX_PAYLOAD_BYTES}",
                           context=context)
    return data


@overload
def decode(kind: type[M], data: bytes | bytearray | memoryview | str) -> M: ...
@overload
def decode(kind: Channel | str, data: bytes | bytearray | memoryview | str) -> Message: ...


def decode(kind: Channel | str | type[Message], data: bytes | bytearray | memoryview | str
           ) -> Message:
    """Read one payload as the model of a channel (or as the given model class).

    ``kind`` is a :class:`Channel`, a channel string such as ``"cmd/reply"``, or a model
    class from :data:`~protocol.models.MODELS_BY_CHANNEL`. Raises :class:`PayloadError`
    naming the field and reason for any payload that is not a valid message.
    """
    model = _model_for(kind)
    context = f"{channel_of(model).value} payload"
    text = _text(data, context)
    obj = _parse(text, context)
    version = obj.get("v", _MISSING)
    if version is _MISSING:
        raise PayloadError("missing schema version", field="v", context=context)
    if type(version) is not int or version != SCHEMA_VERSION:
        raise PayloadError(f"unsupported schema version {version!r} (this build reads "
                           f"{SCHEMA_VERSION})", field="v", context=context)
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        problems = errors_to_problems(exc)
        raise PayloadError(problems[0][1], field=problems[0][0], context=context,
                           problems=problems) from None


def errors_to_problems(exc: ValidationError) -> tuple[tuple[str | None, str], ...]:
    """Turn pydantic's errors into ``(dotted field, reason)`` pairs.

    Also useful for the controller's API, which validates request bodies with the same
    models.
    """
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = list(error["loc"])
        reason = _reason(error)
        if loc and loc[-1] == "[key]":  # the key of a mapping, not its value, is wrong
            loc.pop()
            reason = f"bad key: {reason}"
        field = ".".join(str(part) for part in loc) or None
        problems.append((field, reason))
    return tuple(problems)


def _reason(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field missing"
    if kind == "string_pattern_mismatch":
        return f"must match {error['ctx']['pattern']}"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    return message


class _Missing:
    pass


_MISSING = _Missing()


def _model_for(kind: Channel | str | type[Message]) -> type[Message]:
    if isinstance(kind, type):
        if kind in MODELS_BY_CHANNEL.values():
            return kind
        raise TypeError(f"{kind.__name__} is not a payload model")
    try:
        return MODELS_BY_CHANNEL[Channel(kind)]
    except ValueError:
        raise ProtocolError(f"unknown channel {kind!r}", field="channel") from None


def _text(data: bytes | bytearray | memoryview | str, context: str) -> str:
    """Size check, then UTF-8 decoding (or encoding, for a str, to count bytes)."""
    if isinstance(data, str):
        if len(data) > MAX_PAYLOAD_BYTES:
            _too_large(len(data), context)
        try:
            size = len(data.encode("utf-8"))
        except UnicodeEncodeError:
            raise PayloadError("not valid UTF-8 text", context=context) from None
        if size > MAX_PAYLOAD_BYTES:
            _too_large(size, context)
        text = data
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data) if not isinstance(data, bytes) else data
        if len(raw) > MAX_PAYLOAD_BYTES:
            _too_large(len(raw), context)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError(f"not valid UTF-8 (byte {exc.start})", context=context) from None
    else:
        raise PayloadError(f"payload must be bytes or str, not {type(data).__name__}",
                           context=context)
    if not text.strip():
        raise PayloadError("empty payload (on a retained topic: the retained message was "
                           "cleared)", context=context)
    return text


def _too_large(size: int, context: str) -> NoReturn:
    raise PayloadError(f"{size} bytes is larger than the {MAX_PAYLOAD_BYTES}-byte limit",
                       context=context)


def _nesting_depth(text: str, limit: int) -> int:
    """Deepest ``[``/``{`` nesting outside strings; stops counting past ``limit``.

    One linear pass, so a hostile payload cannot make it slow.
    """
    depth = deepest = 0
    for match in _TOKEN_RE.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif token in ("]", "}"):
            depth -= 1
    return deepest


def _reject_constant(name: str) -> NoReturn:
    raise PayloadError(f"{name} is not allowed (numbers must be finite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise PayloadError(f"number {text[:20]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise PayloadError(f"duplicate key {key[:64]!r}")
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(  # built once: json.loads with these hooks builds one per call
    parse_constant=_reject_constant,
    parse_float=_finite_float,
    object_pairs_hook=_unique_keys,
)


def _parse(text: str, context: str) -> dict[str, Any]:
    # Nesting cannot be deeper than the number of opening brackets; counting them is
    # cheap, so the full scan only runs for payloads that might be too deep.
    if (text.count("{") + text.count("[") > MAX_JSON_DEPTH
            and _nesting_depth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH):
        raise PayloadError(f"nested deeper than {MAX_JSON_DEPTH} levels", context=context)
    try:
        obj = _DECODER.decode(text)
    except PayloadError as exc:
        raise PayloadError(exc.reason, context=context) from None
    except json.JSONDecodeError as exc:
        raise PayloadError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column "
                           f"{exc.colno})", context=context) from None
    except (ValueError, RecursionError) as exc:
        # e.g. an integer literal with thousands of digits
        raise PayloadError(f"not valid JSON: {exc}", context=context) from None
    if not isinstance(obj, dict):
        raise PayloadError(f"top level must be a JSON object, not {_json_kind(obj)}",
                           context=context)
    return obj


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"
