"""The delivery worker: a thread that sends the outbox's due notifications.

``worker = start(store, settings, metrics)`` stores the ``[notify]`` policy (for
`controller.notify.outbox.enqueue`, in any process) and, when channels are configured,
starts the thread; ``worker.stop()`` ends it. With several controller instances the
thread sends only while its instance leads (`controller.leader`), so each outbox row is
delivered by one instance. One row at a time: claim (its own
transaction), send (no transaction open), mark sent or schedule the retry (another).
A failed attempt is retried after ``retry_min_s``, doubling up to ``retry_max_s``; after
``max_attempts`` (or at once for a permanent refusal) the row is ``failed``, logged and
counted in ``smartcity_notify_failed_total``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from controller.notify import outbox, rules, senders
from controller.settings import EmailChannel, Settings, TelegramChannel, WebhookChannel

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _secret(path: Any) -> str | None:
    return None if path is None else path.read_text().strip()


class DeliveryWorker:
    """Sends due notifications until `stop`; ``clock`` gives the time (tests)."""

    def __init__(self, store: Any, settings: Settings, metrics: Any = None, *,
                 clock: Callable[[], datetime] = utcnow, leader: Any = None):
        self.store, self.settings, self.metrics, self.clock = store, settings, metrics, clock
        self.leader = leader  # controller.leader.Leader: deliver only while leading
        self.notify = settings.notify
        self.channels = {c.name: (kind, c) for kind, c in self.notify.channels()}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> DeliveryWorker:
        self._thread = threading.Thread(target=self._run, name="notify-delivery", daemon=True)
        self._thread.start()
        logger.info("notification delivery started: %d channel(s)", len(self.channels))
        return self

    def stop(self) -> None:
        """Stop after the send in progress, if any (idempotent)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.notify.send_timeout_s + 5)
            if self._thread.is_alive():
                logger.warning("notification delivery did not stop in time")
            self._thread = None
        if self._http is not None:
            self._http.close()
            self._http = None

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        next_prune = 0.0
        while not self._stop.is_set():
            try:
                if self.leader is not None and not self.leader.leading:
                    self._wake.wait(self.notify.poll_interval_s)  # another instance delivers
                    self._wake.clear()
                    continue
                while not self._stop.is_set() and self.deliver_one():
                    pass
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.settings.database.maintenance_interval_s
                    self.prune()
                if self.metrics is not None:
                    with outbox.reading(self.store) as db:
                        self.metrics.notify_waiting.set(outbox.waiting_count(db))
            except Exception:  # noqa: BLE001 - the loop outlives a bad row or a db hiccup
                logger.exception("notification delivery failed a step; going on")
            self._wake.wait(self.notify.poll_interval_s)
            self._wake.clear()

    def prune(self) -> int:
        """Delete done-with notifications older than ``[notify] keep_days``."""
        before = self.clock() - timedelta(days=self.notify.keep_days)
        with outbox.transaction(self.store) as db:
            pruned = outbox.prune(db, before)
        if pruned:
            logger.info("deleted %d notification(s) older than %d days from the outbox",
                        pruned, self.notify.keep_days)
        return pruned

    # ------------------------------------------------------------------ one row
    def deliver_one(self) -> bool:
        """Claim, send and mark one due row; False when none was due."""
        with outbox.transaction(self.store) as db:
            row = outbox.claim_next(db, self.clock(), self.notify.send_timeout_s)
        if row is None:
            return False
        kind, channel = self.channels.get(row["channel"], (None, None))
        try:
            if channel is None:
                raise senders.SendFailed(f"channel {row['channel']!r} is no longer in the "
                                         "config", permanent=True)
            self._send(kind, channel, row["payload"])
        except senders.SendFailed as exc:
            self._failed(row, kind or "gone", str(exc), permanent=exc.permanent)
        except Exception as exc:  # noqa: BLE001 - a sender's bug fails a row, not the loop
            logger.exception("notification %s: unexpected error", row["notification_id"])
            self._failed(row, kind or "gone", f"{type(exc).__name__}: {exc}", permanent=False)
        else:
            with outbox.transaction(self.store) as db:
                outbox.mark_sent(db, row["id"], self.clock())
            if self.metrics is not None:
                self.metrics.notify_sent.labels(kind).inc()
            logger.info("notification %s sent to %s (attempt %d)", row["notification_id"],
                        row["channel"], row["attempts"])
        return True

    def _send(self, kind: str, channel: Any, payload: dict) -> None:
        if isinstance(channel, EmailChannel):
            senders.send_email(channel, _secret(channel.password_file), payload,
                               timeout_s=self.notify.send_timeout_s)
            return
        if self._http is None:
            self._http = senders.http_client(self.notify.send_timeout_s)
        if isinstance(channel, WebhookChannel):
            senders.send_webhook(self._http, channel, payload)
        elif isinstance(channel, TelegramChannel):
            senders.send_telegram(self._http, channel, _secret(channel.bot_token_file) or "",
                                  payload)
        else:  # pragma: no cover - settings allow no other kind
            raise senders.SendFailed(f"no sender for {kind}", permanent=True)

    def _failed(self, row: dict, kind: str, error: str, *, permanent: bool) -> None:
        now = self.clock()
        give_up = permanent or row["attempts"] >= self.notify.max_attempts
        retry_at = None
        if not give_up:
            wait_s = rules.backoff_s(row["attempts"], self.notify.retry_min_s,
                                     self.notify.retry_max_s)
            policy = {"timezone": self.notify.timezone, "quiet_hours": self.notify.quiet_hours}
            retry_at, _ = rules.release_at(now + timedelta(seconds=wait_s), row["severity"],
                                           policy)
        with outbox.transaction(self.store) as db:
            outbox.mark_failed_attempt(db, row, error, now, retry_at=retry_at)
        if give_up:
            if self.metrics is not None:
                self.metrics.notify_failed.labels(kind).inc()
            logger.error("notification %s to %s failed after %d attempt(s), given up: %s",
                         row["notification_id"], row["channel"], row["attempts"], error)
        else:
            if self.metrics is not None:
                self.metrics.notify_retries.labels(kind).inc()
            logger.warning("notification %s to %s: attempt %d failed, next at %s: %s",
                           row["notification_id"], row["channel"], row["attempts"],
                           outbox.iso(retry_at), error)


def start(store: Any, settings: Settings, metrics: Any = None, *,
          clock: Callable[[], datetime] = utcnow, leader: Any = None,
          deliver: bool = True) -> DeliveryWorker:
    """Store the policy `enqueue` follows and start delivering (no thread when no
    channel is configured, or ``deliver`` is False: an instance that runs no periodic
    work). With ``leader``, rows are sent only while it leads (`controller.leader`).
    Returns the worker; call its ``stop()``."""
    with outbox.transaction(store) as db:
        outbox.write_policy(db, outbox.policy_of(settings), clock())
    worker = DeliveryWorker(store, settings, metrics, clock=clock, leader=leader)
    if worker.channels and deliver:
        if settings.api.public_url is None:
            logger.warning("[api] public_url is not set: notifications link units at %s",
                           settings.api.base_url())
        worker.start()
    return worker
