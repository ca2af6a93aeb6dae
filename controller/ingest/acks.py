"""What follows a commit: the broker's PUBACKs, then each unit's `Ack`.

A unit's `Ack` carries the highest seq up to which every message of that unit is committed
or announced dropped; it is published at most every ``ingest.ack_interval_s`` per unit
(and at once for every unit when the ingest stops).

The seq comes from the database, computed inside the batch's own write transaction
(`Store.commit_batch` loads each unit's seq accounting there), never from a count kept in
memory here: with several instances ingesting one unit's stream (a shared
subscription), each batch sees what the others committed before it. An instance may
then send an ack lower than one another instance sent already; a unit ignores an ack
below one it has (it only deletes up to the seq), so the ack is never ahead of the
database and never goes back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt

from protocol.codec import encode
from protocol.models import Ack
from protocol.topics import CHANNEL_QOS, CHANNEL_RETAIN, Channel, topic

if TYPE_CHECKING:
    from controller.ingest.batch import Outcome
    from controller.ingest.writer import _Received
    from controller.settings import Settings
    from controller.store import Store

logger = logging.getLogger("controller.ingest")  # one logger for every part of the ingest


@dataclass
class _AckState:
    opd: str
    seq: int = 0
    due: bool = False
    last_sent: float = float("-inf")


class AcksMixin:
    """The acknowledgements of `controller.ingest.Ingest`, sent from its writer thread."""

    settings: Settings
    store: Store
    client: mqtt.Client
    _generation: int
    _taken: int
    _acks: dict[str, _AckState]
    _outstanding: list[tuple[mqtt.MQTTMessageInfo, Callable[[], None]]]

    def _idle_timeout(self) -> float:
        timeout = 0.1 if self._outstanding else 0.5
        now = time.monotonic()
        interval = self.settings.ingest.ack_interval_s
        for state in self._acks.values():
            if state.due:
                timeout = min(timeout, max(0.0, state.last_sent + interval - now))
        return max(timeout, 0.001)

    def _finish(self, batch: list[_Received], outcome: Outcome) -> None:
        """After the commit: PUBACKs, then the units' acks and the metrics."""
        # Committed (or refused for good): now the broker may forget these messages.
        for raw in batch:
            if raw.qos > 0 and raw.generation == self._generation:
                self.client.ack(raw.mid, raw.qos)
        self._taken -= len(batch)
        for device_id, (opd, seq) in outcome.result.acks.items():
            state = self._acks.setdefault(device_id, _AckState(opd))
            state.opd, state.seq, state.due = opd, seq, True
        try:
            for device_id, opd in outcome.result.came_online:
                # From the database, not this instance's last ack: with several
                # instances another one may have committed (and acked) more since.
                state = self._acks.setdefault(device_id, _AckState(opd))
                state.seq = max(state.seq, self.store.acked_seq(device_id))
                state.due = state.due or state.seq > 0
            self._flush_acks()
            self._account(outcome, len(batch))
        except Exception:  # noqa: BLE001 - bookkeeping must not stop the writer
            logger.exception("ingest bookkeeping after a batch failed")

    def _flush_acks(self, force: bool = False) -> None:
        now = time.monotonic()
        interval = self.settings.ingest.ack_interval_s
        for device_id, state in self._acks.items():
            if not state.due or (not force and now - state.last_sent < interval):
                continue
            payload = encode(Ack(seq=state.seq, ts=datetime.now(UTC)))
            self.client.publish(topic(state.opd, device_id, Channel.ACK), payload,
                                qos=CHANNEL_QOS[Channel.ACK], retain=CHANNEL_RETAIN[Channel.ACK])
            state.due, state.last_sent = False, now
