"""The app's side of the link: events and telemetry into the outbox (the ``Publisher``
seam, any thread), and the retained status built from the app's outputs."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import protocol.logs as logs
from protocol import (
    Event,
    ProtocolError,
    Status,
    Telemetry,
    encode,
    offline_status,
)

from ..outbox import EVENT, TELEMETRY

logger = logging.getLogger(__package__)  # the whole link logs as "edge.link"


def _jsonable(value: Any) -> Any:
    """``json.dumps`` default for event details: timestamps, enums, paths, sets."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "as_dict"):
        return value.as_dict()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _plain(details: dict) -> dict:
    return json.loads(json.dumps(details, default=_jsonable, allow_nan=False))


class Publishing:
    """``Link``'s part that stores what the app reports and keeps its status current."""

    # -- the Publisher seam (any thread) ------------------------------------------------
    def event(self, type: str, **details: Any) -> int | None:
        """Store an event in the outbox; returns its seq (None if it could not be stored).

        Never raises into the app: an invalid event is stored as an ``invalid_event``
        alarm instead, and a failing disk is logged and counted."""
        return self._event(type, details, None)

    def event_once(self, key: str, type: str, **details: Any) -> int | None:
        """Like ``event``, but stored only if no event was ever stored under ``key``
        (``Outbox.add_once``); returns the seq of the first copy.

        For a report that goes with a write to the daemon's state file: killed between
        the two writes, the daemon reports again under the same key at its next start
        and only the first copy goes out, or it asks ``event_stored(key)`` whether the
        report was made."""
        return self._event(type, details, key)

    def event_stored(self, key: str) -> bool | None:
        """Whether an event was stored under ``key`` by ``event_once`` (``Outbox.has_key``);
        None when the outbox cannot be read (logged and counted, never raised)."""
        try:
            return self.outbox.has_key(key)
        except sqlite3.Error:
            self.counters["outbox_errors"] += 1
            logger.exception("could not look up key %r in the outbox", key)
            return None

    def _event(self, type: str, details: dict, key: str | None) -> int | None:
        ts = self.clock.now()

        def store(build) -> tuple[int, bool]:
            if key is None:
                return self.outbox.add(EVENT, build), True
            return self.outbox.add_once(EVENT, key, build)

        try:
            try:
                plain = _plain(details)
                # the type's details model; imported at the first event, not at start-up,
                # which drives the outputs off first
                from protocol.events import details_of

                details_of(type, plain)
                seq, stored = store(lambda s: encode(
                    Event(seq=s, ts=ts, type=type, details=plain)))
            except (ValidationError, ProtocolError, TypeError, ValueError) as exc:
                # An app bug must not lose the fact that something happened: say so.
                self.counters["invalid_events"] += 1
                self._log.error("event %s %s is not a valid message (%s); storing an "
                                "alarm instead", type, logs.payload_text(details), exc)
                reason = str(exc)[:300]
                seq, stored = store(lambda s: encode(Event(
                    seq=s, ts=ts, type="alarm",
                    details={"code": "invalid_event", "event_type": str(type)[:64],
                             "message": reason})))
        except sqlite3.Error:
            self.counters["outbox_errors"] += 1
            self._log.exception("event %s %s could not be stored in the outbox", type,
                                logs.payload_text(details))
            return None
        if not stored:
            self.counters["events_stored_already"] += 1
            self._log.info("event %s %s was stored already (seq %d, key %s): not again",
                           type, logs.payload_text(details), seq, logs.payload_text(key))
            return seq
        self._log.info("event %s %s (seq %d)", type, logs.payload_text(details), seq)
        self._wake()
        return seq

    def telemetry(self, readings: dict[str, Any], outputs: dict[str, bool]) -> int | None:
        """Store a telemetry sample; an invalid one is logged, counted and not stored."""
        ts = self.clock.now()
        try:
            seq = self.outbox.add(TELEMETRY, lambda s: encode(
                Telemetry(seq=s, ts=ts, readings=readings, outputs=outputs)))
        except (ValidationError, ProtocolError) as exc:
            self.counters["invalid_telemetry"] += 1
            logger.error("telemetry sample not stored, it is not a valid message: %s", exc)
            return None
        except sqlite3.Error:
            self.counters["outbox_errors"] += 1
            logger.exception("telemetry sample could not be stored in the outbox")
            return None
        self._wake()
        return seq

    # -- status -----------------------------------------------------------------------------
    def _status_bytes(self, *, online: bool, outputs: dict | None = None,
                      outlook=None) -> bytes:
        synced = self._clock_ok
        if not online:
            return encode(offline_status(self.fw, self.clock.now(),
                                         config_version=self.config_version,
                                         clock_synced=synced, app=self.app_kind))
        return encode(Status(online=True, fw=self.fw, config_version=self.config_version,
                             clock_synced=synced, outputs=outputs or {}, ts=self.clock.now(),
                             app=self.app_kind, dropped=self.outbox.dropped,
                             backlog=self.outbox.backlog,
                             bad_commands=self.counters["bad_commands"], limits=self._limits,
                             outlook=outlook,
                             update_window=self.offers.window.text if self.offers else None))

    def _outlook(self):
        """The app's holds and next start; a failure is logged once and leaves it out
        (the status must go out whatever the planner does)."""
        if self.app is None or not hasattr(self.app, "outlook"):
            return None
        try:
            return self.app.outlook()
        except Exception:  # noqa: BLE001 - the status goes out without it
            if not getattr(self, "_outlook_failed", False):
                self._outlook_failed = True
                logger.exception("the unit's outlook could not be worked out")
            return None

    def _refresh_status(self, force: bool = False) -> None:
        """Rebuild the status when something changed (outputs, config, clock at once;
        backlog, dropped and bad_commands at most every ``status_min_interval_s``)."""
        outputs = self.app.outputs.states() if self.app is not None else {}
        self._clock_ok = bool(self.clock_synced())
        outlook = self._outlook()
        important = (tuple(sorted(outputs.items())), self.config_version, self._clock_ok,
                     outlook)
        minor = (self.outbox.backlog, self.outbox.dropped, self.counters["bad_commands"])
        now = time.monotonic()
        since = now - self._status_at
        due = (force or important != self._status_important_key
               or since >= self.options.status_interval_s
               or ((important, minor) != self._status_key
                   and since >= self.options.status_min_interval_s))
        if not due:
            return
        payload = self._status_bytes(online=True, outputs=outputs, outlook=outlook)
        with self._status_lock:
            self._status_payload = payload
            self._status_dirty = True
        self._status_important_key = important
        self._status_key = (important, minor)
        self._status_at = now
        self._wake()
