"""The ingest's periodic work, on its writer thread between batches.

After-publish callbacks (`Ingest.publish`'s ``on_sent``) once the broker acknowledged
their message. Then, only in the instance that leads (`controller.leader`; the only one
when there is one): every ``ingest.sweep_interval_s`` the commands some instance left
pending published again, the expiry of unanswered commands, the alarms of offline and
stale units (`controller.alarms.sweep`) and the running rollouts
(`controller.rollouts.RolloutEngine`: offers, outcomes, stages); every
``database.maintenance_interval_s`` telemetry roll-up and retention.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from controller import alarms
from controller.publisher import Publisher
from controller.rollouts import RolloutEngine

if TYPE_CHECKING:
    from controller.metrics import Metrics
    from controller.settings import Settings
    from controller.store import Store

logger = logging.getLogger("controller.ingest")  # one logger for every part of the ingest


class HousekeepingMixin:
    """The periodic work of `controller.ingest.Ingest`'s writer thread."""

    settings: Settings
    store: Store
    metrics: Metrics
    _outstanding: list[tuple[mqtt.MQTTMessageInfo, Callable[[], None]]]
    _outstanding_lock: threading.Lock
    _next_sweep: float
    _next_maintenance: float
    receive: bool
    leader: Any
    republish: Callable[[], int] | None
    _rollout_engine: RolloutEngine | None = None

    def _rollouts(self) -> RolloutEngine:
        """The rollout engine, sending its ``update`` commands through this connection."""
        if self._rollout_engine is None:
            publisher = Publisher(self.store, self)  # type: ignore[arg-type]

            def send(opd: str, device_id: str, command) -> None:
                self.store.create_command(device_id, command, actor="controller (rollout)")
                publisher.send_command(opd, device_id, command)

            self._rollout_engine = RolloutEngine(self.store, send,
                                                 self.settings.api.base_url())
        return self._rollout_engine

    def _housekeeping(self) -> None:
        self._flush_acks()
        with self._outstanding_lock:
            done, waiting = [], []
            for info, callback in self._outstanding:
                (done if info.is_published() else waiting).append((info, callback))
            self._outstanding = waiting
        for _, callback in done:
            try:
                callback()
            except Exception:  # noqa: BLE001 - one callback must not stop the writer
                logger.exception("after-publish callback failed")
        if not self.receive or not (self.leader is None or self.leader.leading):
            return  # another instance leads the periodic work (controller.leader)
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.settings.ingest.sweep_interval_s
            if self.republish is not None:
                republished = self.republish()
                if republished:
                    logger.info("published %d pending command(s) again", republished)
            expired = self.store.expire_commands()
            if expired:
                self.metrics.commands_expired.inc(len(expired))
                logger.info("expired %d unanswered command(s): %s", len(expired),
                            ", ".join(expired[:10]))
            cfg = self.settings.alarms
            raised, cleared = alarms.sweep(self.store, offline_after_s=cfg.offline_after_s,
                                           stale_after_s=cfg.stale_after_s,
                                           now=datetime.now(UTC))
            if raised or cleared:
                logger.info("offline and stale units: %d alarm(s) raised, %d cleared",
                            raised, cleared)
            self._rollouts().step(datetime.now(UTC))
        if now >= self._next_maintenance:
            self._next_maintenance = now + self.settings.database.maintenance_interval_s
            self.store.rollup_and_prune(self.settings.database.telemetry_retention_days)
