"""One batch of received messages into the database: decoded, validated, committed.

`store_batch` runs in the ingest's writer process (or on its writer thread, with
``ingest.writer = "thread"``). It never raises for a bad message: each is logged, listed
by reason in the batch's `Outcome` and never stored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from controller.errors import StoreError
from controller.store import BatchResult, Inbound, Store
from protocol.codec import decode
from protocol.errors import ProtocolError
from protocol.logs import fields, payload_text
from protocol.topics import CHANNEL_DIRECTION, Channel, Direction, parse_topic

logger = logging.getLogger("controller.ingest")  # one logger for every part of the ingest

STORE_WAIT_S = 30.0
"""How long a batch waits for a database server that went away (as SQLite waits up to
30 s for its write lock) before its messages are refused as ``store_error``."""


@dataclass
class Outcome:
    """What storing one batch did (it crosses a process boundary, so the messages
    themselves stay behind: ``result.rejected`` is empty, ``rejected`` says it in words)."""

    result: BatchResult = field(default_factory=BatchResult)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)
    """(where, reason, explanation) of each message not stored; already logged."""
    lags: list[float] = field(default_factory=list)
    """Seconds from each telemetry/event's own timestamp to its commit."""
    commit_s: float = 0.0


def _reject(where: str, reason: str, why: str, outcome: Outcome, *,
            device: str | None = None, payload: bytes | None = None) -> None:
    outcome.rejected.append((where, reason, why))
    logger.warning("rejected message (%s): %s%s", reason, why,
                   "" if payload is None else f"; payload {payload_text(payload)}",
                   extra=fields(device=device, topic=where[:200]))


def _decode(topic_: str, payload: bytes, received_at: datetime, outcome: Outcome
            ) -> Inbound | None:
    try:
        parts = parse_topic(topic_)
        if CHANNEL_DIRECTION[parts.channel] is not Direction.UNIT_TO_CONTROLLER:
            _reject(topic_, "bad_channel", "not a channel units publish on", outcome,
                    device=parts.device)
            return None
    except ProtocolError as exc:
        _reject(topic_, "bad_topic", str(exc), outcome)
        return None
    try:
        message = decode(parts.channel, payload)
    except ProtocolError as exc:
        _reject(topic_, "bad_payload", str(exc), outcome, device=parts.device,
                payload=payload)
        return None
    return Inbound(parts.opd, parts.device, parts.channel, message, received_at)


def _commit(store: Store, items: list[Inbound], outcome: Outcome) -> BatchResult:
    """Commit a batch; if that fails, each message alone (a bad one cannot stall the rest).

    While the database server is away (`StoreError`: the connection is lost), wait for
    it, up to `STORE_WAIT_S`, before that: nothing is acknowledged to the broker
    meanwhile, so a restarted server costs a pause, not a round of units resending."""
    attempt, waiting = 0, False
    deadline = time.monotonic() + STORE_WAIT_S
    while attempt < 3:
        try:
            return store.commit_batch(items)
        except StoreError as exc:
            if time.monotonic() < deadline:
                if not waiting:
                    logger.warning("the database is not available (%s); waiting for it up "
                                   "to %g s", exc, STORE_WAIT_S)
                waiting = True
                time.sleep(min(time.monotonic() + 1.0, deadline) - time.monotonic())
                continue
            attempt += 1
            logger.error("committing a batch of %d failed (attempt %d): %s", len(items),
                         attempt, exc)
        except Exception:  # noqa: BLE001 - retried, then split up
            attempt += 1
            logger.exception("committing a batch of %d failed (attempt %d)", len(items),
                             attempt)
            time.sleep(0.2 * attempt)
    merged = BatchResult()
    for item in items:
        try:
            one = store.commit_batch([item])
        except Exception:  # noqa: BLE001 - count it and go on
            logger.exception("could not store a %s message", item.channel.value,
                             extra=fields(device=item.device_id))
            outcome.rejected.append((f"{item.opd}/{item.device_id}/{item.channel.value}",
                                     "store_error", "could not be stored"))
            continue
        merged.add(one)
    return merged


def store_batch(store: Store, raws: list[tuple[str, bytes, datetime]]) -> Outcome:
    """Decode, validate and commit one batch of ``(topic, payload, received_at)``.

    Never raises for bad messages: they are logged and listed in ``Outcome.rejected``.
    """
    outcome = Outcome()
    inbound = [item for raw in raws if (item := _decode(*raw, outcome)) is not None]
    started = time.perf_counter()
    result = _commit(store, inbound, outcome)
    outcome.commit_s = time.perf_counter() - started
    for item, reason, why in result.rejected:
        _reject(f"{item.opd}/{item.device_id}/{item.channel.value}", reason, why, outcome,
                device=item.device_id)
    result.rejected = []
    outcome.result = result
    if result.gaps_opened:
        logger.warning("seq gap(s) opened in this batch: %d", result.gaps_opened)
    now = datetime.now(UTC)
    outcome.lags = [max(0.0, (now - item.message.ts).total_seconds()) for item in inbound
                    if item.channel in (Channel.TELEMETRY, Channel.EVENT)]
    return outcome
