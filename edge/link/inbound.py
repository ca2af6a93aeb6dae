"""What arrives for the unit: commands (each answered once, expired or duplicate ones
refused) and the desired config, handled on the service loop's thread by ``poll()``."""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import sqlite3
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

import protocol.logs as logs
from protocol import (
    COMMAND_ID_PATTERN,
    MAX_PAYLOAD_BYTES,
    Channel,
    Command,
    CommandAction,
    CommandReply,
    DesiredConfig,
    ProtocolError,
    ReplyCode,
    decode,
    encode,
)
from protocol.replies import reply_text

from ..errors import ConfigError
from .options import KEY_CONFIG_REJECTED, KEY_CONFIG_VERSION, KEY_RECENT_COMMANDS

logger = logging.getLogger(__package__)  # the whole link logs as "edge.link"


SAFE_WITHOUT_CLOCK = frozenset({CommandAction.STOP_ALL, CommandAction.STOP_ZONE})
"""Actions run even on an untrusted clock: they only turn things off (fail closed)."""

_ID_RE = re.compile(COMMAND_ID_PATTERN)


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


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class Inbound:
    """``Link``'s part that handles commands and config on the service loop's thread."""

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
        if self.offers is not None:
            self.offers.check()
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
                self._reply(cmd_id, "rejected", ReplyCode.INVALID_COMMAND,
                            {"field": exc.field or "(payload)"}, note=str(exc))
            else:
                self._log.warning("unreadable command (no usable id, not answered): %s; "
                                  "payload %s", exc, logs.payload_text(payload))
            return
        if cmd.id in self._recent:
            self.counters["duplicate_commands"] += 1
            self._log.info("command already received: not run again", extra=logs.fields(cmd=cmd.id))
            self._reply(cmd.id, "duplicate", ReplyCode.DUPLICATE)
            return
        self._recent.add(cmd.id, now)
        synced = bool(self.clock_synced())
        if not synced and cmd.action not in SAFE_WITHOUT_CLOCK:
            self.counters["refused_clock"] += 1
            self._log.warning("command %s refused: clock not synchronised", cmd.action.value,
                              extra=logs.fields(cmd=cmd.id))
            self._reply(cmd.id, "rejected", ReplyCode.CLOCK_NOT_SYNCED)
            return
        if synced and cmd.is_expired(now):
            self.counters["expired_commands"] += 1
            self._log.warning("command %s expired at %s: not run", cmd.action.value,
                              cmd.expires_at.isoformat(), extra=logs.fields(cmd=cmd.id))
            self._reply(cmd.id, "expired", ReplyCode.EXPIRED,
                        {"expires_at": cmd.expires_at.isoformat()})
            return
        if cmd.action is CommandAction.UPDATE:
            self._on_update(cmd)
            return
        if self.app is None:
            self._reply(cmd.id, "rejected", ReplyCode.UNIT_STARTING)
            return
        answered = []

        def reply(status: str, code: ReplyCode | str | None = None, *, clamped: Any = None,
                  **params: Any) -> None:
            answered.append(status)
            self._reply(cmd.id, status, code, params, clamped)

        self._log.info("command %s %s", cmd.action.value,
                       logs.payload_text(cmd.params.model_dump(mode="json", exclude_none=True)),
                       extra=logs.fields(cmd=cmd.id))
        try:
            self.app.handle_command(cmd.id, cmd.action.value, cmd.params, reply)
        except Exception as exc:
            logger.exception("command %s failed", cmd.action.value,
                             extra=logs.fields(device=self.device, cmd=cmd.id))
            self._reply(cmd.id, "failed", ReplyCode.UNIT_ERROR, {"error": type(exc).__name__},
                        note=str(exc))
            return
        if not answered:
            self._log.warning("app gave no answer to the command; replying accepted",
                              extra=logs.fields(cmd=cmd.id))
            self._reply(cmd.id, "accepted", ReplyCode.NO_ANSWER)

    def _on_update(self, cmd: Command) -> None:
        """A release offered (``edge.offer``): the same on every kind of unit, so the
        link answers it, not the app; the download and install go on in the background."""
        self._log.info("command update %s", logs.payload_text(
            cmd.params.model_dump(mode="json", exclude_none=True)), extra=logs.fields(cmd=cmd.id))
        if self.offers is None:
            self._reply(cmd.id, "rejected", ReplyCode.UNKNOWN_ACTION, {"action": "update"})
            return
        try:
            status, code, params = self.offers.answer(cmd.id, cmd.params)
        except Exception as exc:
            logger.exception("command update failed", extra=logs.fields(device=self.device,
                                                                         cmd=cmd.id))
            self._reply(cmd.id, "failed", ReplyCode.UNIT_ERROR, {"error": type(exc).__name__},
                        note=str(exc))
            return
        self._reply(cmd.id, status, code, params)

    def _reply_code(self, cmd_id: str, code: Any, params: dict) -> ReplyCode | None:
        """The reply's code; a reply without a known code is a bug in the unit's app:
        logged and counted (``replies_without_code``), and sent without one."""
        try:
            return ReplyCode(code)
        except ValueError:
            self.counters["replies_without_code"] += 1
            self._log.error("reply without a known code (%r, params %s): a bug in the "
                            "unit's app", code, logs.payload_text(params),
                            extra=logs.fields(cmd=cmd_id))
            return None

    def _reply(self, cmd_id: str, status: str, code: Any, params: dict | None = None,
               clamped: Any = None, *, note: str = "") -> None:
        """Queue a cmd/reply durably (any thread); the worker sends it until PUBACK.

        ``detail`` is the code's English words (``protocol.replies.reply_text``), then
        ``note`` (the link's own words: a contract error's or an exception's text), then
        what a clamp cut."""
        ts = self.clock.now()
        params = dict(params or {})

        def build(status, detail, clamp=None, code=None, params=None) -> bytes:
            return encode(CommandReply(id=cmd_id, status=status, detail=detail[:500], ts=ts,
                                       clamped=clamp, code=code, params=params or {}))

        try:
            known = self._reply_code(cmd_id, code, params)
            words = [reply_text(known, params) if known else str(code or ""), note]
            try:
                clamp, clamp_note = _clamp_fields(clamped)
            except (KeyError, TypeError, ValueError) as exc:
                self._log.error("clamp report %s unreadable: %s", logs.payload_text(clamped), exc,
                                extra=logs.fields(cmd=cmd_id))
                clamp, clamp_note = None, "clamped (report unreadable)"
            detail = "; ".join(w for w in [*words, clamp_note] if w)
            payload = build(status, detail, clamp, known, params)
        except (ValidationError, ProtocolError) as exc:
            self._log.error("invalid reply %s %s (%s): replying failed", logs.payload_text(status),
                            logs.payload_text(code), exc, extra=logs.fields(cmd=cmd_id))
            payload = build("failed", f"unit built an invalid reply: {exc}",
                            code=ReplyCode.INVALID_REPLY)
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
