"""The one exception family of the wire contract.

Everything in :mod:`protocol` that rejects input raises :class:`ProtocolError`, a
``ValueError``, so a caller that reads the network needs one ``except`` clause::

    try:
        parts = parse_topic(msg.topic)
        message = decode(parts.channel, msg.payload)
    except ProtocolError as exc:
        logger.warning("dropped message on %s: %s", msg.topic, exc)
        counter.labels(reason=exc.kind).inc()
        return

The two leaves say where the problem was, for counters and log lines:
:class:`TopicError` (the topic string) and :class:`PayloadError` (the message body).
"""

from __future__ import annotations

__all__ = ["PayloadError", "ProtocolError", "TopicError"]


class ProtocolError(ValueError):
    """A topic or payload that breaks the wire contract.

    ``str(exc)`` is a sentence a technician can act on, naming the field and the reason,
    e.g. ``"telemetry payload: seq: must be >= 1"``. The parts are also kept apart:

    - ``field``: dotted path of the first offending field (``"params.duration_s"``), or
      ``None`` when the problem is not one field (bad JSON, too large, bad topic).
    - ``reason``: why, without the field.
    - ``problems``: every ``(field, reason)`` pair found, first one first.
    - ``kind``: a short fixed word for metrics labels (``"topic"``, ``"payload"``).
    """

    kind = "protocol"

    def __init__(
        self,
        reason: str,
        *,
        field: str | None = None,
        context: str | None = None,
        problems: tuple[tuple[str | None, str], ...] | None = None,
    ) -> None:
        self.field = field
        self.reason = reason
        self.context = context
        self.problems = problems if problems else ((field, reason),)
        super().__init__(self._compose())

    def _compose(self) -> str:
        parts = [f"{field}: {reason}" if field else reason for field, reason in self.problems]
        shown = "; ".join(parts[:3])
        if len(parts) > 3:
            shown += f" (and {len(parts) - 3} more)"
        return f"{self.context}: {shown}" if self.context else shown


class TopicError(ProtocolError):
    """A topic string that is not part of the ``smartcity/v1`` tree, or a bad id."""

    kind = "topic"


class PayloadError(ProtocolError):
    """A payload that cannot be read as the model its channel carries."""

    kind = "payload"
