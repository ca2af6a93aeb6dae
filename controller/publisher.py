"""Commands and desired configs out to the units.

`Publisher` is the API's way out: it builds the wire messages, publishes them on the
right topic with the QoS and retain flag `protocol.topics` fixes for each channel, and
moves a command from ``pending`` to ``sent`` once the broker has taken it.

It publishes through a `Transport`: the running `controller.ingest.Ingest` (one MQTT
connection for both directions), or `MemoryTransport` in tests and when the controller
runs with ``mqtt.enabled = false``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from controller.store import Store
from protocol.codec import encode
from protocol.logs import fields
from protocol.models import Command, DesiredConfig, Message, channel_of
from protocol.topics import CHANNEL_QOS, CHANNEL_RETAIN, Channel, topic

logger = logging.getLogger(__name__)


class Transport(Protocol):
    def publish(self, topic_: str, payload: bytes, *, qos: int, retain: bool,
                on_sent: Callable[[], None] | None = None) -> None: ...


@dataclass(frozen=True)
class Published:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class MemoryTransport:
    """Keeps what would be published; ``auto_sent`` says whether the broker 'took' it."""

    def __init__(self, auto_sent: bool = True):
        self.auto_sent = auto_sent
        self.published: list[Published] = []
        self._lock = threading.Lock()

    def publish(self, topic_: str, payload: bytes, *, qos: int, retain: bool,
                on_sent: Callable[[], None] | None = None) -> None:
        with self._lock:
            self.published.append(Published(topic_, payload, qos, retain))
        if on_sent is not None and self.auto_sent:
            on_sent()


REPUBLISH_AFTER_S = 5.0
"""A command still pending this long after it was issued was left by an instance that
died before the broker took it (the broker acknowledges within milliseconds): the
leader publishes it again. Younger ones may be in flight in another live instance."""


class Publisher:
    def __init__(self, store: Store, transport: Transport):
        self.store = store
        self.transport = transport
        self._in_flight: set[str] = set()  # command ids published here, not yet taken
        self._lock = threading.Lock()

    def _publish(self, opd: str, device_id: str, message: Message,
                 on_sent: Callable[[], None] | None = None) -> None:
        channel: Channel = channel_of(message)
        self.transport.publish(topic(opd, device_id, channel), encode(message),
                               qos=CHANNEL_QOS[channel], retain=CHANNEL_RETAIN[channel],
                               on_sent=on_sent)

    def send_command(self, opd: str, device_id: str, command: Command) -> None:
        """Publish a stored command (QoS 1, never retained); on the broker's ack -> sent."""
        def sent() -> None:
            with self._lock:
                self._in_flight.discard(command.id)
            self.store.mark_command_sent(command.id)

        with self._lock:
            self._in_flight.add(command.id)
        self._publish(opd, device_id, command, sent)
        logger.info("command %s published", command.action.value,
                    extra=fields(device=device_id, cmd=command.id))

    def push_config(self, opd: str, device_id: str, version: int, issued_at: datetime,
                    body: dict) -> None:
        """Publish a desired config version, retained, so the unit gets it on connect."""
        self._publish(opd, device_id, DesiredConfig(version=version, issued_at=issued_at,
                                                    body=body))
        logger.info("desired config v%d published", version, extra=fields(device=device_id))

    def republish_open(self, older_than_s: float = 0.0, now: datetime | None = None) -> int:
        """Publish again the commands still pending (e.g. after a restart) that were issued
        more than ``older_than_s`` ago, except those this publisher has published and the
        broker has not taken yet (they are queued here already); returns how many.

        With several instances only the leader calls this, with `REPUBLISH_AFTER_S`, so a
        command another live instance is publishing right now is not doubled (units
        answer a command id once anyway: a second copy gets a ``duplicate`` reply)."""
        now = now or datetime.now(UTC)
        before = now - timedelta(seconds=older_than_s)
        count = 0
        for row in self.store.open_commands(now):
            if row["id"] in self._in_flight or _when(row["issued_at"]) > before:
                continue
            command = Command(id=row["id"], issued_at=row["issued_at"],
                              expires_at=row["expires_at"], action=row["action"],
                              params=row["params"])
            self.send_command(row["opd"], row["device_id"], command)
            count += 1
        return count


def _when(value: str | datetime) -> datetime:
    """A stored UTC timestamp (text, or a datetime from some backends) as a datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
