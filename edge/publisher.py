"""The publisher seam: how an app reports, whether or not a network is there.

Apps call ``event(type, **details)`` and ``telemetry(readings, outputs)``; they never see
MQTT. The edge link (``edge.link``) implements this with its durable outbox; tests and
the simulator use ``MemoryPublisher``.

``event_once(key, type, **details)`` stores an event only if none was stored under
``key`` before, across restarts where the publisher is durable: for what a daemon reports
at start-up and then marks as reported in its own state file (a crash between the two
writes must not report it twice). Apps reach it through ``App.event_once``.
``event_stored(key)`` says whether an event was stored under ``key``: for what a daemon
reports before it saves that it happened (a run finished), asked at its next start
(``App.event_stored``).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class Publisher(Protocol):
    def event(self, type: str, **details: Any) -> None: ...

    def event_once(self, key: str, type: str, **details: Any) -> None: ...

    def event_stored(self, key: str) -> bool | None: ...

    def telemetry(self, readings: dict[str, Any], outputs: dict[str, bool]) -> None: ...


@dataclass
class Record:
    kind: str  # "event" or "telemetry"
    ts: datetime
    type: str | None
    data: dict = field(default_factory=dict)


class MemoryPublisher:
    """Keeps everything in a list; ``events(type)`` filters them. ``event_once`` keys
    live as long as the publisher (share one across app restarts to stand in for the
    outbox)."""

    def __init__(self, clock):
        self.clock = clock
        self.records: list[Record] = []
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def event(self, type: str, **details: Any) -> None:
        from protocol.events import details_of  # only when an event is made

        details_of(type, json.loads(json.dumps(details, default=str)))  # fits its model
        logger.info("event %s %s", type, details)
        with self._lock:
            self.records.append(Record("event", self.clock.now(), type, details))

    def event_once(self, key: str, type: str, **details: Any) -> None:
        with self._lock:
            if key in self._keys:
                logger.info("event %s %s was stored already (key %r)", type, details, key)
                return
        self.event(type, **details)
        with self._lock:
            self._keys.add(key)

    def event_stored(self, key: str) -> bool:
        with self._lock:
            return key in self._keys

    def telemetry(self, readings: dict[str, Any], outputs: dict[str, bool]) -> None:
        with self._lock:
            self.records.append(
                Record("telemetry", self.clock.now(), None,
                       {"readings": dict(readings), "outputs": dict(outputs)})
            )

    def events(self, type: str | None = None) -> list[Record]:
        with self._lock:
            return [r for r in self.records if r.kind == "event" and type in (None, r.type)]

    def telemetry_records(self) -> list[Record]:
        with self._lock:
            return [r for r in self.records if r.kind == "telemetry"]
