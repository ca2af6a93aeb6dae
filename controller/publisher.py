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
from datetime import datetime
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


class Publisher:
    def __init__(self, store: Store, transport: Transport):
        self.store = store
        self.transport = transport

    def _publish(self, opd: str, device_id: str, message: Message,
                 on_sent: Callable[[], None] | None = None) -> None:
        channel: Channel = channel_of(message)
        self.transport.publish(topic(opd, device_id, channel), encode(message),
                               qos=CHANNEL_QOS[channel], retain=CHANNEL_RETAIN[channel],
                               on_sent=on_sent)

    def send_command(self, opd: str, device_id: str, command: Command) -> None:
        """Publish a stored command (QoS 1, never retained); on the broker's ack -> sent."""
        def sent() -> None:
            self.store.mark_command_sent(command.id)

        self._publish(opd, device_id, command, sent)
        logger.info("command %s published", command.action.value,
                    extra=fields(device=device_id, cmd=command.id))

    def push_config(self, opd: str, device_id: str, version: int, issued_at: datetime,
                    body: dict) -> None:
        """Publish a desired config version, retained, so the unit gets it on connect."""
        self._publish(opd, device_id, DesiredConfig(version=version, issued_at=issued_at,
                                                    body=body))
        logger.info("desired config v%d published", version, extra=fields(device=device_id))

    def republish_open(self) -> int:
        """Publish again the commands still pending (e.g. after a restart); returns how many."""
        count = 0
        for row in self.store.open_commands():
            command = Command(id=row["id"], issued_at=row["issued_at"],
                              expires_at=row["expires_at"], action=row["action"],
                              params=row["params"])
            self.send_command(row["opd"], row["device_id"], command)
            count += 1
        return count
