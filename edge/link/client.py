"""``Link``: the MQTT client, its connection and the worker thread that publishes the
outbox, replies and status, and applies the controller's acks."""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import protocol.logs as logs
from protocol import (
    CHANNEL_QOS,
    CHANNEL_RETAIN,
    Ack,
    Channel,
    ProtocolError,
    decode,
    parse_topic,
    topic,
)
from protocol.ids import KIND_NAMES
from protocol.mqtt import ca_file_problem, connect_failure, make_client

from ..offer import UpdateOffers
from ..outbox import EVENT, Drain, Outbox, Row
from .inbound import Inbound, RecentCommands
from .options import (
    KEY_CONFIG_VERSION,
    LinkError,
    LinkOptions,
    firmware_version,
)
from .publishing import Publishing

logger = logging.getLogger(__package__)  # the whole link logs as "edge.link"


class Link(Publishing, Inbound):
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
        # Releases the controller offers (the ``update`` command), for every kind of unit.
        self.offers = (UpdateOffers(config, clock=clock, fw=self.fw, event_once=self.event_once)
                       if hasattr(config, "update") and hasattr(config, "site") else None)

    # -- life cycle -----------------------------------------------------------------------
    def bind(self, app) -> None:
        """The app whose commands, config and outputs this link serves."""
        self.app = app

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start the worker."""
        self._clock_ok = bool(self.clock_synced())
        if self.offers is not None:
            self.offers.start()
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
        if self.offers is not None:
            self.offers.close()
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


def _no_delay(client: mqtt.Client) -> None:
    """Send small packets at once (TCP_NODELAY): without it, a command reply written just
    after the command's PUBACK waits for the TCP ack of that PUBACK (about 40 ms)."""
    with contextlib.suppress(AttributeError, OSError):
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
