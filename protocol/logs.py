"""Log lines both sides write the same way: set-up, fields, payloads.

It lives in ``protocol/`` because that is the one package the units (``edge``) and the
controller share, and both entry points (``smartcity-edge``, ``smartcity-controller``)
must configure logging through one function. Like the rest of ``protocol/`` it imports
neither side, and nothing beyond the standard library.

`configure` sets up the root logger once, at an entry point (library code only ever
calls ``logging.getLogger(__name__)``):

* Under systemd, with stderr connected to the journal (``JOURNAL_STREAM`` names that
  stream, see systemd.exec(5)), every line starts with its syslog priority as
  sd-daemon(3) describes, ``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>`` debug, and
  carries no time (the journal adds its own). ``journalctl -p warning`` then shows
  warnings and errors. Each line of a traceback gets the prefix too, so it is filed under
  the record's priority rather than as info.
* Anywhere else: ``2026-01-31 08:00:00,123 WARNING edge.link: message``.

Fields: ids a reader greps for are appended as ``key=value``, always in the same form::

    logger.warning("command refused: %s", why, extra=fields(device=dev, cmd=cmd_id))
    # -> "... edge.link: command refused: expired device=dlh-taman-01 cmd=7f3a..."

`FieldsAdapter` adds fixed fields (a link's device) to every line of a logger.

Payloads: `payload_text` shows a message as compact JSON, cut to `PAYLOAD_CHARS`
characters with an ellipsis; bytes that are not JSON are shown as a JSON string. Never a
Python repr (``b'...'``, ``{'a': 1}``), which no JSON tool reads back.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import IO, Any

__all__ = ["PAYLOAD_CHARS", "FieldsAdapter", "configure", "fields", "journal_priority",
           "payload_text", "stream_is_journal"]

PAYLOAD_CHARS = 200
"""Longest payload text in a log line; longer ones end in an ellipsis."""

ELLIPSIS = "\u2026"
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
               (logging.INFO, 6))
_READABLE = "%(asctime)s %(levelname)s %(name)s{tag}: %(message)s"
_JOURNAL = "%(name)s{tag}: %(message)s"


def journal_priority(levelno: int) -> int:
    """The syslog priority of a logging level (sd-daemon(3): 3 error ... 7 debug)."""
    for level, priority in _PRIORITIES:
        if levelno >= level:
            return priority
    return 7


def stream_is_journal(stream: IO[Any], environ: Mapping[str, str] | None = None) -> bool:
    """True if ``stream`` is the journal stream systemd named in ``JOURNAL_STREAM``
    (``device:inode``); a child that inherited the variable but writes elsewhere is not."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (AttributeError, OSError, ValueError):
        return False


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: each value shown as ``key=value`` after the message
    (``None`` left out)."""
    return {"fields": {key: value for key, value in values.items() if value is not None}}


class FieldsAdapter(logging.LoggerAdapter):
    """A logger whose lines all carry ``values`` as fields, before the call's own."""

    def __init__(self, logger: logging.Logger, **values: Any):
        super().__init__(logger, fields(**values))

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(kwargs.get("extra") or {})
        extra["fields"] = {**self.extra["fields"], **extra.get("fields", {})}
        kwargs["extra"] = extra
        return msg, kwargs


def _field_value(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '="' or not c.isprintable() for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def payload_text(payload: Any, limit: int = PAYLOAD_CHARS) -> str:
    """A payload (bytes, str, or a dict/list/model dump) as compact JSON for a log line,
    at most ``limit`` characters (the last one an ellipsis when cut)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        payload = bytes(payload).decode("utf-8", errors="replace")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            text = json.dumps(payload, ensure_ascii=False)  # not JSON: a JSON string
        else:
            text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[:limit - 1] + ELLIPSIS


class Formatter(logging.Formatter):
    """Readable lines, or journal lines with a priority prefix; fields after the message."""

    def __init__(self, *, journal: bool, tag: str = ""):
        super().__init__((_JOURNAL if journal else _READABLE).format(tag=tag))
        self.journal = journal

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        text = super().formatMessage(record)
        values = getattr(record, "fields", None)
        if values:
            text += " " + " ".join(f"{key}={_field_value(value)}"
                                   for key, value in values.items())
        return text

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            return text
        prefix = f"<{journal_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.split("\n"))


def configure(level: int | str = logging.INFO, *, tag: str = "",
              stream: IO[Any] | None = None) -> None:
    """Set up the root logger for a process (entry points only): one handler on
    ``stream`` (stderr), journal lines when that is the journal's stream, else readable
    ones. ``tag`` follows the logger name (``[writer]`` for a helper process). Like
    `logging.basicConfig`, it leaves a root logger that has handlers already alone."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(Formatter(journal=stream_is_journal(stream), tag=tag))
    logging.basicConfig(level=level, handlers=[handler])
