"""The unit's MQTT link: one client per daemon, the outbox behind it, commands and config in.

``Link`` is the app's publisher (``event(type, **details)``, ``telemetry(readings,
outputs)``): each message is written to the outbox (``edge.outbox``) with its seq, then
published with QoS 1 when the link is up, and deleted only when the controller's ``ack``
covers it. See docs/edge-link.md for the whole story.

Threads, and what runs where:

- paho's network thread (``loop_start``) runs the callbacks. They only put what arrived
  on a queue: no SQLite, no app code, no ``wait_for_publish()``.
- the link's worker thread publishes: outbox rows through a ``Drain`` (bounded window and
  rate), command replies (a durable table, resent until PUBACK), the retained status; and
  applies the controller's acks to the outbox.
- the daemon's service loop calls ``poll()`` each tick: commands and config updates are
  handled there, so ``app.handle_command`` and ``app.apply_remote_config`` always run on
  that one thread and apps need no locks. ``poll()`` also refreshes the status.

Wiring (``edge.daemon.run_unit`` does this)::

    link = Link(config, outbox=Outbox(...), state=state, clock=clock, clock_synced=check)
    app = AppClass(config, ..., publisher=link, state=state, clock_synced=check)
    link.bind(app)
    link.start()          # connects in the background; never blocks on the network
    ... every tick: link.poll(); app.tick()
    app.close(); link.close()
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import queue
import random
import re
import socket
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

import protocol.logs as logs
from protocol import (
    CHANNEL_QOS,
    CHANNEL_RETAIN,
    COMMAND_ID_PATTERN,
    MAX_PAYLOAD_BYTES,
    Ack,
    Channel,
    Command,
    CommandAction,
    CommandReply,
    DesiredConfig,
    Event,
    ProtocolError,
    Status,
    Telemetry,
    decode,
    encode,
    offline_status,
    parse_topic,
    topic,
)
from protocol.ids import KIND_NAMES
from protocol.mqtt import ca_file_problem, connect_failure, make_client

from .errors import ConfigError, EdgeError
from .outbox import EVENT, TELEMETRY, Drain, Outbox, Row

logger = logging.getLogger(__name__)

SAFE_WITHOUT_CLOCK = frozenset({CommandAction.STOP_ALL})
"""Actions run even on an untrusted clock: they only turn things off (fail closed)."""

_ID_RE = re.compile(COMMAND_ID_PATTERN)

# Keys in the StateStore.
KEY_CONFIG_VERSION = "link.config_version"
KEY_CONFIG_REJECTED = "link.config_rejected"
KEY_RECENT_COMMANDS = "link.recent_commands"


class LinkError(EdgeError, RuntimeError):
    """The link cannot be set up (e.g. a broker password file that cannot be read)."""


def firmware_version() -> str:
    """The installed package version, reported as ``fw`` in the status."""
    try:
        return importlib.metadata.version("smartcity-balikpapan")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


@dataclass(frozen=True)
class LinkOptions:
    """Tuning; the defaults suit a unit on a mobile network."""

    window: int = 100  # outbox rows handed to paho and not yet PUBACKed, at most
    drain_rate_per_s: float = 200.0  # outbox rows published per second, at most
    resend_after_s: float = 60.0  # ack stalled this long with all rows sent: resend
    resend_max_s: float = 3600.0  # ... doubling up to this
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    session_expiry_s: int = 86_400  # broker keeps our session (queued commands) this long
    status_min_interval_s: float = 10.0  # backlog/dropped changes: status at most this often
    status_interval_s: float = 300.0  # status at least this often
    recent_commands: int = 1000  # command ids remembered for duplicate detection ...
    recent_commands_days: float = 7.0  # ... and for at most this long
    poll_max: int = 50  # inbound messages handled per poll() call
    outbox_max_rows: int = 100_000  # size bound of the outbox (about 2 months at 1 sample/min)


class RecentCommands:
    """Command ids already answered, persisted so a restart still knows them."""

    def __init__(self, state, *, limit: int, max_age: timedelta):
        self.state = state
        self.limit = limit
        self.max_age = max_age
        self._ids: dict[str, str] = dict(state.get(KEY_RECENT_COMMANDS, []))

    def __contains__(self, cmd_id: str) -> bool:
        return cmd_id in self._ids

    def add(self, cmd_id: str, now: datetime) -> None:
        self._ids[cmd_id] = now.isoformat()
        cutoff = (now - self.max_age).isoformat()
        items = [(k, v) for k, v in self._ids.items() if v >= cutoff][-self.limit:]
        self._ids = dict(items)
        self.state.set(KEY_RECENT_COMMANDS, items)


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


def _raw_field(payload: bytes, name: str) -> Any:
    """A top-level field of a payload that failed validation, if it is readable at all."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return doc.get(name) if isinstance(doc, dict) else None


def _clamp_fields(clamped: Any) -> tuple[dict | None, str]:
    """A reply's ``clamped`` (edge ``Clamp``, dict or list of them) as the wire's
    ``{field, asked, allowed}`` plus words for what the wire model has no field for."""
    if clamped is None:
        return None, ""
    items = list(clamped) if isinstance(clamped, list | tuple) else [clamped]
    if not items:
        return None, ""
    dicts = [c.as_dict() if hasattr(c, "as_dict") else dict(c) for c in items]
    first = {k: dicts[0][k] for k in ("field", "asked", "allowed")}
    notes = []
    for d in dicts:
        text = f"{d['field']} {d['asked']} -> {d['allowed']}"
        if d.get("limit"):
            text += f" ({d['limit']})"
        notes.append(text)
    return first, "clamped: " + "; ".join(notes)


class Link:
    """The unit's side of the wire contract; also the app's ``Publisher``."""

    def __init__(self, config, *, outbox: Outbox, state, clock,
                 clock_synced: Callable[[], bool], options: LinkOptions | None = None,
                 fw: str | None = None):
        self.config = config
        self.outbox = outbox
        self.state = state
        self.clock = clock
        self.clock_synced = clock_synced
        self.options = options or LinkOptions()
        self.fw = fw or firmware_version()
        self.app = None
        self.opd = config.unit.opd
        self.device = config.unit.device_id
        self.app_kind = config.kind if config.kind in KIND_NAMES else None
        # What commands and schedules may name here, reported in every online status.
        self._limits = config.unit_limits() if hasattr(config, "unit_limits") else None
        self.topics = {c: topic(self.opd, self.device, c) for c in Channel}
        self.client_id = f"unit-{self.opd}-{self.device}"
        self._log = logs.FieldsAdapter(logger, device=self.device)  # lines about its messages
        self.counters: Counter[str] = Counter()
        self.config_version: int | None = state.get(KEY_CONFIG_VERSION)
        self._clock_ok = False  # last answer of clock_synced(), for the other threads
        self.connect_error: str | None = None
        """Why the last attempt to reach the broker failed, in plain words (None once up)."""
        self._connect_error_logged: str | None = None
        self._recent = RecentCommands(
            state, limit=self.options.recent_commands,
            max_age=timedelta(days=self.options.recent_commands_days))
        self._inbound: queue.SimpleQueue[tuple[Channel, bytes]] = queue.SimpleQueue()
        self._inbound_ready = threading.Event()  # set when a command or config arrives
        self._work: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self._connected = False  # as the worker sees it
        self._up = threading.Event()  # as the network thread sees it
        self.subscribed = threading.Event()  # SUBACK for cmd, config, ack received
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self._status_lock = threading.Lock()
        self._status_payload: bytes | None = None
        self._status_dirty = False
        self._status_key: tuple | None = None
        self._status_at = float("-inf")
        self._status_important_key: tuple | None = None
        self._replies_dirty = True
        self._reply_inflight: dict[int, int] = {}  # mid -> reply row id
        self._reply_sent: set[int] = set()
        self.drain = Drain(outbox, self._send_row, window=self.options.window,
                           rate_per_s=self.options.drain_rate_per_s,
                           resend_after_s=self.options.resend_after_s,
                           resend_max_s=self.options.resend_max_s)

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

    # -- life cycle -----------------------------------------------------------------------
    def bind(self, app) -> None:
        """The app whose commands, config and outputs this link serves."""
        self.app = app

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start the worker."""
        self._clock_ok = bool(self.clock_synced())
        self._client = self._make_client()
        self._refresh_status(force=True)
        self._worker = threading.Thread(target=self._work_loop, name="edge-link", daemon=True)
        self._worker.start()
        broker = self.config.broker
        if broker.mqtt_version == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.options.session_expiry_s
            session = {"clean_start": False, "properties": props}
        else:  # MQTT 3.1.1: the persistent session was asked for in the constructor
            session = {}
        self._client.connect_async(broker.host, broker.port, keepalive=broker.keepalive_s,
                                   **session)
        self._client.loop_start()
        logger.info("link: connecting to %s:%s as %s (%s)", broker.host, broker.port,
                    self.client_id, "TLS" if broker.tls else "plain TCP")

    def close(self, timeout_s: float = 3.0, flush_s: float = 1.0) -> None:
        """Say offline (retained), disconnect cleanly, stop the threads. Idempotent.

        Waits up to ``flush_s`` for command replies still on their way (they would be
        sent again on the next start anyway, as they are kept on disk)."""
        if self._stop.is_set():
            return
        deadline = time.monotonic() + flush_s
        while (self._up.is_set() and self.outbox.pending_replies()
               and time.monotonic() < deadline):
            time.sleep(0.02)
        self._stop.set()
        self._wake()
        if self._worker is not None:
            self._worker.join(timeout_s)
        client = self._client
        if client is not None:
            if self._up.is_set():
                try:
                    info = client.publish(self.topics[Channel.STATUS],
                                          self._status_bytes(online=False),
                                          qos=1, retain=True)
                    info.wait_for_publish(timeout_s)
                except (RuntimeError, ValueError, OSError) as exc:
                    logger.warning("could not publish the offline status: %s", exc)
            client.disconnect()
            client.loop_stop()
        logger.info("link closed (%d rows waiting in the outbox)", self.outbox.backlog)

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    # -- the service loop's side (one thread) -------------------------------------------
    def wait_inbound(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` until a command or config waits for ``poll()``."""
        return self._inbound_ready.wait(timeout_s)

    def wake_inbound(self) -> None:
        """End a ``wait_inbound`` now, with nothing arrived (the daemon's stop does this)."""
        self._inbound_ready.set()

    def poll(self) -> None:
        """Handle commands and config that arrived; refresh the status. Call each tick."""
        self._inbound_ready.clear()
        for _ in range(self.options.poll_max):
            try:
                channel, payload = self._inbound.get_nowait()
            except queue.Empty:
                break
            try:
                if channel is Channel.CMD:
                    self._on_command(payload)
                else:
                    self._on_config(payload)
            except Exception:
                logger.exception("handling a %s message failed", channel.value)
                self.counters["handler_errors"] += 1
        self._refresh_status()

    def _on_command(self, payload: bytes) -> None:
        self.counters["commands"] += 1
        now = self.clock.now()
        try:
            cmd = decode(Command, payload)
        except ProtocolError as exc:
            self.counters["bad_commands"] += 1
            cmd_id = _raw_field(payload, "id")
            if isinstance(cmd_id, str) and _ID_RE.fullmatch(cmd_id):
                self._log.warning("command refused: %s", exc, extra=logs.fields(cmd=cmd_id))
                self._reply(cmd_id, "rejected", str(exc))
            else:
                self._log.warning("unreadable command (no usable id, not answered): %s; "
                                  "payload %s", exc, logs.payload_text(payload))
            return
        if cmd.id in self._recent:
            self.counters["duplicate_commands"] += 1
            self._log.info("command already received: not run again", extra=logs.fields(cmd=cmd.id))
            self._reply(cmd.id, "duplicate", "this command id was already received")
            return
        self._recent.add(cmd.id, now)
        synced = bool(self.clock_synced())
        if not synced and cmd.action not in SAFE_WITHOUT_CLOCK:
            self.counters["refused_clock"] += 1
            self._log.warning("command %s refused: clock not synchronised", cmd.action.value,
                              extra=logs.fields(cmd=cmd.id))
            self._reply(cmd.id, "rejected", "clock not synchronised")
            return
        if synced and cmd.is_expired(now):
            self.counters["expired_commands"] += 1
            self._log.warning("command %s expired at %s: not run", cmd.action.value,
                              cmd.expires_at.isoformat(), extra=logs.fields(cmd=cmd.id))
            self._reply(cmd.id, "expired", f"expired at {cmd.expires_at.isoformat()}")
            return
        if self.app is None:
            self._reply(cmd.id, "rejected", "unit is starting")
            return
        answered = []

        def reply(status: str, detail: str = "", clamped: Any = None) -> None:
            answered.append(status)
            self._reply(cmd.id, status, detail, clamped)

        self._log.info("command %s %s", cmd.action.value,
                       logs.payload_text(cmd.params.model_dump(mode="json", exclude_none=True)),
                       extra=logs.fields(cmd=cmd.id))
        try:
            self.app.handle_command(cmd.id, cmd.action.value, cmd.params, reply)
        except Exception as exc:
            logger.exception("command %s failed", cmd.action.value,
                             extra=logs.fields(device=self.device, cmd=cmd.id))
            self._reply(cmd.id, "failed", f"unit error: {exc}")
            return
        if not answered:
            self._log.warning("app gave no answer to the command; replying accepted",
                              extra=logs.fields(cmd=cmd.id))
            self._reply(cmd.id, "accepted", "the unit's app gave no answer")

    def _reply(self, cmd_id: str, status: str, detail: str = "", clamped: Any = None) -> None:
        """Queue a cmd/reply durably (any thread); the worker sends it until PUBACK."""
        ts = self.clock.now()

        def build(status, detail, clamp=None) -> bytes:
            return encode(CommandReply(id=cmd_id, status=status, detail=detail[:500], ts=ts,
                                       clamped=clamp))

        try:
            try:
                clamp, note = _clamp_fields(clamped)
            except (KeyError, TypeError, ValueError) as exc:
                self._log.error("clamp report %s unreadable: %s", logs.payload_text(clamped), exc,
                                extra=logs.fields(cmd=cmd_id))
                clamp, note = None, "clamped (report unreadable)"
            if note:
                detail = f"{detail}; {note}" if detail else note
            payload = build(status, detail, clamp)
        except (ValidationError, ProtocolError) as exc:
            self._log.error("invalid reply %s (%s): replying failed", logs.payload_text(status),
                            exc, extra=logs.fields(cmd=cmd_id))
            payload = build("failed", f"unit built an invalid reply: {exc}")
        try:
            self.outbox.add_reply(payload)
        except sqlite3.Error:
            self.counters["outbox_errors"] += 1
            self._log.exception("command reply could not be stored", extra=logs.fields(cmd=cmd_id))
            return
        self._replies_dirty = True
        self._wake()

    def _on_config(self, payload: bytes) -> None:
        if not payload.strip():
            logger.info("desired config cleared on the broker: keeping config %s",
                        self.config_version)
            return
        digest = _digest(payload)
        rejected = self.state.get(KEY_CONFIG_REJECTED) or {}
        if rejected.get("digest") == digest:
            return  # the same rejected config again (a reconnect): already reported
        try:
            desired = decode(DesiredConfig, payload)
        except ProtocolError as exc:
            self.counters["bad_configs"] += 1
            version = _raw_field(payload, "version")
            self._config_rejected(version if isinstance(version, int) else None,
                                  [str(exc)], digest)
            return
        if self.config_version is not None and desired.version <= self.config_version:
            logger.debug("config %d already applied (have %d)", desired.version,
                         self.config_version)
            return
        if self.app is None:
            return
        try:
            schedule = self.app.decode_schedule(desired.version, dict(desired.body))
            self.app.apply_remote_config(desired.version, schedule)
        except ConfigError as exc:
            errors = [f"{field}: {reason}" for field, reason in exc.problems] or [str(exc)]
            self._config_rejected(desired.version, errors, digest)
            return
        except Exception as exc:
            logger.exception("applying config %d failed", desired.version)
            self._config_rejected(desired.version, [f"unit error: {exc}"], digest)
            return
        self.config_version = desired.version
        self.state.set(KEY_CONFIG_VERSION, desired.version)
        self.state.delete(KEY_CONFIG_REJECTED)
        self.counters["configs_applied"] += 1
        logger.info("config %d applied", desired.version)
        self.event("config_applied", version=desired.version)
        self._refresh_status(force=True)

    def _config_rejected(self, version: int | None, errors: list[str], digest: str) -> None:
        self.counters["configs_rejected"] += 1
        logger.warning("config %s rejected, keeping %s: %s", version, self.config_version,
                       "; ".join(errors))
        self.state.set(KEY_CONFIG_REJECTED, {"version": version, "digest": digest})
        self.event("config_rejected", version=version, errors=[e[:300] for e in errors[:20]],
                   kept_version=self.config_version)

    # -- status -----------------------------------------------------------------------------
    def _status_bytes(self, *, online: bool, outputs: dict | None = None) -> bytes:
        synced = self._clock_ok
        if not online:
            return encode(offline_status(self.fw, self.clock.now(),
                                         config_version=self.config_version,
                                         clock_synced=synced, app=self.app_kind))
        return encode(Status(online=True, fw=self.fw, config_version=self.config_version,
                             clock_synced=synced, outputs=outputs or {}, ts=self.clock.now(),
                             app=self.app_kind, dropped=self.outbox.dropped,
                             backlog=self.outbox.backlog,
                             bad_commands=self.counters["bad_commands"], limits=self._limits))

    def _refresh_status(self, force: bool = False) -> None:
        """Rebuild the status when something changed (outputs, config, clock at once;
        backlog, dropped and bad_commands at most every ``status_min_interval_s``)."""
        outputs = self.app.outputs.states() if self.app is not None else {}
        self._clock_ok = bool(self.clock_synced())
        important = (tuple(sorted(outputs.items())), self.config_version, self._clock_ok)
        minor = (self.outbox.backlog, self.outbox.dropped, self.counters["bad_commands"])
        now = time.monotonic()
        since = now - self._status_at
        due = (force or important != self._status_important_key
               or since >= self.options.status_interval_s
               or ((important, minor) != self._status_key
                   and since >= self.options.status_min_interval_s))
        if not due:
            return
        payload = self._status_bytes(online=True, outputs=outputs)
        with self._status_lock:
            self._status_payload = payload
            self._status_dirty = True
        self._status_important_key = important
        self._status_key = (important, minor)
        self._status_at = now
        self._wake()

    # -- paho callbacks (network thread: enqueue only) ------------------------------------
    def _make_client(self) -> mqtt.Client:
        broker = self.config.broker
        if broker.tls and broker.ca_file is not None:
            problem = ca_file_problem(broker.ca_file)
            if problem is not None:
                raise LinkError(f"broker.ca_file {broker.ca_file}: {problem}")
        # A little jitter, so units that lost the same broker do not all return at once.
        first = self.options.reconnect_min_s * random.uniform(1.0, 2.0)
        client = make_client(broker, client_id=self.client_id,
                             password=self._password() if broker.username else None,
                             reconnect_s=(first, max(first, self.options.reconnect_max_s)))
        # paho must never hold our backlog: the Drain bounds what it gets, so paho's own
        # in-flight limit is off (it would also count messages dropped on reconnect).
        client.max_inflight_messages_set(0)
        client.will_set(self.topics[Channel.STATUS], self._status_bytes(online=False),
                        qos=CHANNEL_QOS[Channel.STATUS], retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_pre_connect = self._on_pre_connect
        client.on_connect_fail = self._on_connect_fail
        return client

    def _password(self) -> str | None:
        path = self.config.broker.password_file
        if path is None:
            return None
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise LinkError(f"broker.password_file {path}: {exc.strerror or exc}") from None

    def _on_pre_connect(self, client, userdata) -> None:
        # Refresh the Last Will with what the unit runs now (config version, clock).
        try:
            client.will_set(self.topics[Channel.STATUS], self._status_bytes(online=False),
                            qos=CHANNEL_QOS[Channel.STATUS], retain=True)
        except Exception:
            logger.exception("could not refresh the Last Will")

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this while it handles the exception of the failed attempt (TCP
        # connect or TLS handshake), so that exception is the current one.
        reason, is_tls = connect_failure(sys.exc_info()[1], self.config.broker)
        self.connect_error = reason
        if reason == self._connect_error_logged:
            logger.debug("still cannot connect to the broker: %s", reason)
            return
        self._connect_error_logged = reason
        broker = self.config.broker
        logger.log(logging.ERROR if is_tls else logging.WARNING,
                   "cannot connect to the broker at %s:%s: %s (retrying)", broker.host,
                   broker.port, reason)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.error("broker refused the connection: %s", reason_code)
            return
        self.connect_error = None
        self._connect_error_logged = None
        _no_delay(client)
        # Whatever paho still holds from the last connection is resent by the Drain, from
        # the lowest seq the controller has not acked; drop paho's copies.
        client.drop_out_messages()
        client.subscribe([(self.topics[c], CHANNEL_QOS[c])
                          for c in (Channel.CMD, Channel.CONFIG, Channel.ACK)])
        self._up.set()
        self._work.put(("connected",))
        logger.info("link up (session present: %s)", flags.session_present)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            logger.error("broker refused a subscription of this unit: %s", ", ".join(failed))
        else:
            self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._up.clear()
        self.subscribed.clear()
        self._work.put(("disconnected",))
        if not self._stop.is_set():
            logger.warning("link down: %s", reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._work.put(("puback", mid, reason_code))

    def _on_message(self, client, userdata, msg) -> None:
        try:
            channel = parse_topic(msg.topic).channel
        except ProtocolError:
            channel = None
        payload = bytes(msg.payload)
        if channel is Channel.ACK:
            self._work.put(("ack", payload))
        elif channel in (Channel.CMD, Channel.CONFIG):
            self._inbound.put((channel, payload))
            self._inbound_ready.set()
        else:
            self.counters["unexpected_messages"] += 1
            logger.warning("message on unexpected topic %s ignored", msg.topic)

    # -- the worker thread ------------------------------------------------------------------
    def _wake(self) -> None:
        self._work.put(("wake",))

    def _work_loop(self) -> None:
        delay: float | None = None
        while not self._stop.is_set():
            try:
                items = [self._work.get(timeout=1.0 if delay is None else max(delay, 0.001))]
            except queue.Empty:
                items = []
            while True:
                try:
                    items.append(self._work.get_nowait())
                except queue.Empty:
                    break
            try:
                for item in items:
                    self._handle_work(item)
                delay = self._pump() if self._connected else None
            except Exception:
                logger.exception("link worker error; carrying on")
                self.counters["worker_errors"] += 1
                delay = 1.0

    def _handle_work(self, item: tuple) -> None:
        kind = item[0]
        if kind == "puback":
            _, mid, reason_code = item
            if getattr(reason_code, "is_failure", False):
                logger.warning("broker refused a publish (mid %s): %s", mid, reason_code)
            if not self.drain.confirmed(mid):
                reply_id = self._reply_inflight.pop(mid, None)
                if reply_id is not None:
                    self.outbox.reply_delivered(reply_id)
                    self._reply_sent.discard(reply_id)
        elif kind == "ack":
            try:
                ack = decode(Ack, item[1])
            except ProtocolError as exc:
                self.counters["bad_acks"] += 1
                logger.warning("unreadable ack ignored: %s", exc)
                return
            deleted = self.drain.acked(ack.seq)
            logger.debug("ack %d: %d rows done, %d waiting", ack.seq, deleted,
                         self.outbox.backlog)
        elif kind == "connected":
            self._connected = True
            self.drain.restart()
            self._reply_inflight.clear()
            self._reply_sent.clear()
            self._replies_dirty = True
            with self._status_lock:
                self._status_dirty = True
        elif kind == "disconnected":
            self._connected = False
            self.drain.stop()

    def _pump(self) -> float | None:
        """Publish status, replies and outbox rows; returns when to pump again."""
        with self._status_lock:
            status, self._status_dirty = (self._status_payload if self._status_dirty
                                          else None), False
        if status is not None:
            self._publish(Channel.STATUS, status)
        if self._replies_dirty:
            self._replies_dirty = False
            for reply_id, payload in self.outbox.pending_replies():
                if reply_id in self._reply_sent:
                    continue
                mid = self._publish(Channel.CMD_REPLY, payload)
                if mid is None:
                    self._replies_dirty = True
                    break
                self._reply_inflight[mid] = reply_id
                self._reply_sent.add(reply_id)
        return self.drain.pump()

    def _send_row(self, row: Row) -> int | None:
        if not self._connected:
            return None
        return self._publish(Channel.EVENT if row.kind == EVENT else Channel.TELEMETRY,
                             row.payload)

    def _publish(self, channel: Channel, payload: bytes) -> int | None:
        info = self._client.publish(self.topics[channel], payload, qos=CHANNEL_QOS[channel],
                                    retain=CHANNEL_RETAIN[channel])
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            logger.debug("publish on %s not sent now: %s", channel.value,
                         mqtt.error_string(info.rc))
            return None
        return info.mid


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _no_delay(client: mqtt.Client) -> None:
    """Send small packets at once (TCP_NODELAY): without it, a command reply written just
    after the command's PUBACK waits for the TCP ack of that PUBACK (about 40 ms)."""
    with contextlib.suppress(AttributeError, OSError):
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
