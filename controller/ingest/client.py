"""The MQTT side of the ingest: the `Ingest` client, its subscriptions and callbacks.

`Ingest` is also the controller's way out to MQTT (`Ingest.publish`). Its writer thread,
acknowledgements and housekeeping are in `controller.ingest.writer`,
`controller.ingest.acks` and `controller.ingest.housekeeping`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from controller.ingest.acks import AcksMixin, _AckState
from controller.ingest.housekeeping import HousekeepingMixin
from controller.ingest.writer import _STOP, WriterMixin, _Received, _WriterProcess
from controller.metrics import Metrics
from controller.settings import Settings
from controller.store import Store
from protocol.mqtt import connect_failure, make_client
from protocol.topics import Channel, all_filter, shared

logger = logging.getLogger("controller.ingest")  # one logger for every part of the ingest

INGEST_CHANNELS = (Channel.STATUS, Channel.TELEMETRY, Channel.EVENT, Channel.CMD_REPLY)


def _no_delay(client: mqtt.Client) -> None:
    """Send small packets at once (TCP_NODELAY): without it, a command or an ack written
    just after a PUBACK waits for the TCP ack of that PUBACK (about 40 ms)."""
    with contextlib.suppress(AttributeError, OSError):
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def subscription_filters(share_group: str = "") -> list[str]:
    """The filters the ingest subscribes to (shared when ``share_group`` is set)."""
    filters = [all_filter(channel) for channel in INGEST_CHANNELS]
    return [shared(share_group, f) for f in filters] if share_group else filters


class Ingest(WriterMixin, AcksMixin, HousekeepingMixin):
    """The MQTT subscriber and its writer thread. Also the controller's way out to MQTT.

    ``store`` should be its own `Store` (own connection); ``password`` is the controller's
    MQTT password (None: no login).

    ``receive`` False makes it a way out only (``serve --no-ingest``): a clean session that
    subscribes to nothing, publishes commands and configs, and runs no periodic work.
    ``leader`` (`controller.leader.Leader`): the periodic work runs only while it leads
    (None: always). ``republish`` runs in the leader every sweep: it publishes again the
    commands some instance left pending (`Publisher.republish_open`).
    """

    def __init__(self, settings: Settings, store: Store, metrics: Metrics, *,
                 password: str | None = None, receive: bool = True, leader: Any = None,
                 republish: Callable[[], int] | None = None):
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.receive = receive
        self.leader = leader
        self.republish = republish
        cfg = settings.mqtt
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._taken = 0  # messages taken off the queue, not yet committed and acknowledged
        metrics.queue_depth.set_function(lambda: self._queue.qsize() + self._taken)
        self._generation = 0
        self._connected = threading.Event()
        self._subscribed = threading.Event()  # the broker's SUBACK for this connection
        self._unreachable_since: float | None = time.monotonic()  # None while connected
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._acks: dict[str, _AckState] = {}
        self._outstanding: list[tuple[mqtt.MQTTMessageInfo, Callable[[], None]]] = []
        self._outstanding_lock = threading.Lock()
        self._next_sweep = 0.0
        self._next_maintenance = time.monotonic() + 60.0
        in_memory = store.path == ":memory:"
        self._writer_process = (
            _WriterProcess(store.path if store.postgres else str(Path(store.path).resolve()),
                           settings.log_level)
            if settings.ingest.writer == "process" and receive and not in_memory else None)
        self._writer_failures = 0
        self.client = make_client(cfg, client_id=cfg.client_id, password=password,
                                  login=password is not None,
                                  reconnect_s=(cfg.reconnect_min_s, cfg.reconnect_max_s),
                                  reconnect_on_failure=True, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect_fail = self._on_connect_fail
        self._connect_errors_logged: set[str] = set()  # since the last connect

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Ingest:
        """Start the writer thread and connect (in the background; retries forever)."""
        cfg = self.settings.mqtt
        session = {}
        if cfg.mqtt_version == "5":
            props = Properties(PacketTypes.CONNECT)
            if self.receive:
                props.SessionExpiryInterval = cfg.session_expiry_s
                props.ReceiveMaximum = cfg.receive_maximum
            # Publishing only: nothing for the broker to keep while we are away.
            session = {"clean_start": not self.receive, "properties": props}
        if self._writer_process is not None:
            self._writer_process.start()  # now, not with the first batch: it takes a moment
        self._writer = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._writer.start()
        self.client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, **session)
        self.client.loop_start()
        logger.info("%s connecting to %s:%s as %s",
                    "ingest" if self.receive else "publisher (no ingest)", cfg.host, cfg.port,
                    cfg.client_id)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Commit and acknowledge what is queued, then disconnect (the session stays)."""
        if self._writer is not None and self._writer.is_alive():
            self._stopping.set()
            self._queue.put(_STOP)
            self._writer.join(timeout)
        if self._writer_process is not None:
            self._writer_process.close()
        self.client.disconnect()
        self.client.loop_stop()
        self.metrics.connected.set(0)
        logger.info("ingest stopped")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def unreachable_s(self) -> float:
        """Seconds since the broker was last connected (or since start); 0 while connected."""
        since = self._unreachable_since
        return 0.0 if since is None else time.monotonic() - since

    def problems(self) -> list[str]:
        """Why the ingest's loops are not running (empty when they are): its writer thread
        and paho's network thread. The writer process is not listed: it is started again
        with the next batch."""
        found = []
        if self._writer is None or not self._writer.is_alive():
            found.append("ingest writer thread is not running")
        network = getattr(self.client, "_thread", None)  # paho's loop_start() thread
        if network is None or not network.is_alive():
            found.append("MQTT network thread is not running")
        return found

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Wait until connected and subscribed: before the broker's SUBACK, what a unit
        publishes is not routed to a fresh session yet."""
        return self._connected.wait(timeout) and self._subscribed.wait(timeout)

    # ------------------------------------------------------------------ publishing
    def publish(self, topic_: str, payload: bytes, *, qos: int, retain: bool,
                on_sent: Callable[[], None] | None = None) -> None:
        """Publish (queued in memory by paho while disconnected).

        ``on_sent`` runs on the writer thread once the broker acknowledged the message.
        """
        info = self.client.publish(topic_, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            logger.error("publish to %s failed: %s", topic_, mqtt.error_string(info.rc))
        if on_sent is not None:
            with self._outstanding_lock:
                self._outstanding.append((info, on_sent))

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.error("broker refused the ingest connection: %s", reason_code)
            return
        self._connect_errors_logged.clear()
        _no_delay(client)
        self._generation += 1
        options = SubscribeOptions(qos=1) if self.settings.mqtt.mqtt_version == "5" else 1
        self._subscribed.clear()
        if self.receive:
            client.subscribe([(f, options) for f in subscription_filters(
                self.settings.mqtt.share_group)])
        else:
            self._subscribed.set()
        self._connected.set()
        self._unreachable_since = None
        self.metrics.connected.set(1)
        logger.info("ingest connected (session present: %s)", flags.session_present)

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this while it handles the exception of the failed attempt (TCP
        # connect or TLS handshake), so that exception is the current one. Each reason
        # is logged once until a connect succeeds; paho retries meanwhile.
        cfg = self.settings.mqtt
        reason, _ = connect_failure(sys.exc_info()[1], cfg, section="mqtt",
                                    machine="controller")
        if reason in self._connect_errors_logged:
            logger.debug("ingest still cannot connect to the broker: %s", reason)
            return
        self._connect_errors_logged.add(reason)
        logger.error("ingest cannot connect to the broker at %s:%s: %s (retrying)", cfg.host,
                     cfg.port, reason)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [code for code in reason_codes if code.is_failure]
        for code in refused:
            logger.error("broker refused an ingest subscription: %s", code)
        if not refused:
            self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set():
            self._unreachable_since = time.monotonic()
        self._connected.clear()
        self._subscribed.clear()
        self.metrics.connected.set(0)
        if not self._stopping.is_set():
            logger.warning("ingest disconnected: %s (reconnecting)", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        # Only enqueue: no slow work on the network thread.
        self._queue.put(_Received(msg.topic, bytes(msg.payload), msg.mid, msg.qos,
                                  self._generation, datetime.now(UTC)))
