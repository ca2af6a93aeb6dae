"""MQTT ingest: units' messages into SQLite, nothing lost, nothing doubled.

One paho-mqtt 2.x client (MQTT 5, ``CallbackAPIVersion.VERSION2``) with a fixed client
id, ``clean_start=False`` and a long session expiry, so the broker keeps our
subscriptions and queues what units publish while the controller is down. It
subscribes (in ``on_connect``, so a reconnect restores them) to every unit's
``status``, ``telemetry``, ``event`` and ``cmd/reply`` with QoS 1.

Acknowledgement is manual (``manual_ack=True``): the paho callbacks only put messages
on a queue; one writer thread takes batches (up to ``ingest.batch_max`` messages or
``ingest.batch_window_ms``; a batch holding a command reply does not wait for the window),
commits each batch in one SQLite transaction, **then** sends the broker its PUBACKs,
**then** publishes each unit's `Ack` (the highest seq up to which every message of that
unit is committed or announced dropped), at most every
``ingest.ack_interval_s`` per unit. A controller killed at any point loses nothing: what
was not committed was not acknowledged, and the broker delivers it again.

A message whose topic does not parse, whose payload is not valid, whose device is not
registered or sits under another OPD, or which answers an unknown command, is counted
by reason (``smartcity_ingest_rejected_total``), logged, acknowledged (so the broker
does not send it forever) and never stored.

Decoding, validating and committing a batch (:func:`store_batch`) runs in a writer
**process** of its own (``ingest.writer = "process"``, the default for a database file):
one CPython process cannot receive with paho and validate and store at the same time, as
both need its one interpreter lock, so the network thread and the store work would take
turns. The writer thread sends each batch's raw messages to that process and waits for
its :class:`Outcome`; PUBACKs still follow the commit. If the process dies, it is started
again and the batch is sent again (what it had committed is found as duplicates); after
three failures in a row the batch is committed in this process. With
``ingest.writer = "thread"`` (and always for an in-memory database) the writer thread
commits itself.

The writer thread also expires unanswered commands and raises and clears the alarms of
offline and stale units (`controller.alarms.sweep`; both every ``ingest.sweep_interval_s``),
and runs telemetry retention (every ``database.maintenance_interval_s``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from controller import alarms
from controller.metrics import Metrics
from controller.settings import Settings
from controller.store import BatchResult, Inbound, Store
from protocol.codec import decode, encode
from protocol.errors import ProtocolError
from protocol.logs import configure as configure_logging
from protocol.logs import fields, payload_text
from protocol.models import Ack
from protocol.mqtt import connect_failure, make_client
from protocol.topics import (
    CHANNEL_DIRECTION,
    CHANNEL_QOS,
    CHANNEL_RETAIN,
    Channel,
    Direction,
    all_filter,
    parse_topic,
    shared,
    topic,
)

logger = logging.getLogger(__name__)

INGEST_CHANNELS = (Channel.STATUS, Channel.TELEMETRY, Channel.EVENT, Channel.CMD_REPLY)
_REPLY_SUFFIX = "/" + Channel.CMD_REPLY.value
_STOP = object()


class _Received(NamedTuple):  # one per message: a tuple is the cheapest to build
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_at: datetime


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


@dataclass
class _AckState:
    opd: str
    seq: int = 0
    due: bool = False
    last_sent: float = float("-inf")


def _no_delay(client: mqtt.Client) -> None:
    """Send small packets at once (TCP_NODELAY): without it, a command or an ack written
    just after a PUBACK waits for the TCP ack of that PUBACK (about 40 ms)."""
    with contextlib.suppress(AttributeError, OSError):
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def subscription_filters(share_group: str = "") -> list[str]:
    """The filters the ingest subscribes to (shared when ``share_group`` is set)."""
    filters = [all_filter(channel) for channel in INGEST_CHANNELS]
    return [shared(share_group, f) for f in filters] if share_group else filters


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
    """Commit a batch; if that fails, each message alone (a bad one cannot stall the rest)."""
    for attempt in range(3):
        try:
            return store.commit_batch(items)
        except Exception:  # noqa: BLE001 - retried, then split up
            logger.exception("committing a batch of %d failed (attempt %d)", len(items),
                             attempt + 1)
            time.sleep(0.2 * (attempt + 1))
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


def _raws(batch: list[_Received]) -> list[tuple[str, bytes, datetime]]:
    return [(raw.topic, raw.payload, raw.received_at) for raw in batch]


def _writer_main(conn: Connection, db_path: str, log_level: str) -> None:
    """The writer process: one batch in, its `Outcome` out, until the pipe closes."""
    configure_logging(log_level, tag="[writer]")
    with Store.open(db_path, migrate=False) as store:
        while True:
            try:
                raws = conn.recv()
            except (EOFError, OSError):
                return  # the controller is gone or stopping
            if raws is None:
                return
            try:
                conn.send(store_batch(store, raws))
            except (BrokenPipeError, OSError):
                return


class _WriterProcess:
    """A child process running `_writer_main`, started again when it dies."""

    def __init__(self, db_path: str, log_level: str):
        self.db_path, self.log_level = db_path, log_level
        self._ctx = multiprocessing.get_context("spawn")  # never fork a threaded process
        self._proc: Any = None
        self._conn: Connection | None = None

    def start(self) -> None:
        ours, theirs = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_writer_main, name="smartcity-ingest-writer",
                                       args=(theirs, self.db_path, self.log_level),
                                       daemon=True)
        self._proc.start()
        theirs.close()
        self._conn = ours
        logger.info("ingest writer process started (pid %s)", self._proc.pid)

    def submit(self, raws: list[tuple[str, bytes, datetime]]) -> None:
        """Send a batch (starting the process if it is not running); OSError if it died."""
        if self._proc is None or not self._proc.is_alive():
            self.close()
            self.start()
        assert self._conn is not None
        try:
            self._conn.send(raws)
        except OSError as exc:
            self._died(exc)

    def receive(self) -> Outcome:
        """The outcome of the oldest batch sent; OSError if the process died first."""
        try:
            if self._conn is None:
                raise OSError("not running")
            return self._conn.recv()
        except (EOFError, OSError) as exc:
            self._died(exc)

    def _died(self, exc: BaseException) -> NoReturn:
        code = self._proc.exitcode if self._proc is not None else None
        self.close(timeout=1.0)
        raise OSError(f"ingest writer process died (exit code {code})") from exc

    def close(self, timeout: float = 10.0) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
            self._proc = None


class Ingest:
    """The MQTT subscriber and its writer thread. Also the controller's way out to MQTT.

    ``store`` should be its own `Store` (own connection); ``password`` is the controller's
    MQTT password (None: no login).
    """

    def __init__(self, settings: Settings, store: Store, metrics: Metrics, *,
                 password: str | None = None):
        self.settings = settings
        self.store = store
        self.metrics = metrics
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
            _WriterProcess(str(Path(store.path).resolve()), settings.log_level)
            if settings.ingest.writer == "process" and not in_memory else None)
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
            props.SessionExpiryInterval = cfg.session_expiry_s
            props.ReceiveMaximum = cfg.receive_maximum
            session = {"clean_start": False, "properties": props}
        if self._writer_process is not None:
            self._writer_process.start()  # now, not with the first batch: it takes a moment
        self._writer = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._writer.start()
        self.client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, **session)
        self.client.loop_start()
        logger.info("ingest connecting to %s:%s as %s", cfg.host, cfg.port, cfg.client_id)
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
        client.subscribe([(f, options) for f in subscription_filters(
            self.settings.mqtt.share_group)])
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

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        # With a writer process, up to two batches are in flight: while it stores one,
        # this thread acknowledges the one before and gathers the next.
        inflight: deque[list[_Received]] = deque()
        stopping = False
        while True:
            batch: list[_Received] = []
            if not stopping and len(inflight) < 2:
                batch, stopping = self._take_batch(wait=not inflight)
            if batch:
                if self._writer_process is None:
                    self._finish(batch, store_batch(self.store, _raws(batch)))
                else:
                    inflight.append(batch)
                    self._submit(inflight)
            if inflight and (len(inflight) > 1 or not batch or stopping):
                outcome = self._collect(inflight)
                self._finish(inflight.popleft(), outcome)
            try:
                self._housekeeping()
            except Exception:  # noqa: BLE001 - the writer must keep running
                logger.exception("ingest housekeeping failed")
            if stopping and not inflight:
                self._flush_acks(force=True)
                return

    def _take_batch(self, wait: bool = True) -> tuple[list[_Received], bool]:
        """The next batch; with ``wait`` False, only what is queued already."""
        cfg = self.settings.ingest
        try:
            first = (self._queue.get(timeout=self._idle_timeout()) if wait
                     else self._queue.get_nowait())
        except queue.Empty:
            return [], False
        if first is _STOP:
            return [], True
        batch = [first]
        # A command reply is committed at once (an operator waits for it); telemetry
        # and events wait up to the window so that one commit carries many.
        urgent = not wait or first.topic.endswith(_REPLY_SUFFIX)
        deadline = time.monotonic() + cfg.batch_window_ms / 1000
        while len(batch) < cfg.batch_max:
            remaining = 0.0 if urgent else deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else \
                    self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)
                break
            batch.append(item)
            urgent = urgent or item.topic.endswith(_REPLY_SUFFIX)
        self._taken += len(batch)
        return batch, False

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
                state = self._acks.setdefault(device_id, _AckState(opd))
                if state.seq == 0:
                    state.seq = self.store.acked_seq(device_id)
                state.due = state.due or state.seq > 0
            self._flush_acks()
            self._account(outcome, len(batch))
        except Exception:  # noqa: BLE001 - bookkeeping must not stop the writer
            logger.exception("ingest bookkeeping after a batch failed")

    def _submit(self, inflight: deque[list[_Received]]) -> None:
        """Send the newest batch in flight to the writer process."""
        if self._writer_process is None:
            return  # given up on it: `_collect` commits here
        try:
            self._writer_process.submit(_raws(inflight[-1]))
        except OSError as exc:
            self._writer_died(exc, inflight)

    def _collect(self, inflight: deque[list[_Received]]) -> Outcome:
        """The outcome of the oldest batch in flight."""
        while self._writer_process is not None:
            try:
                outcome = self._writer_process.receive()
            except OSError as exc:
                self._writer_died(exc, inflight)
                continue
            self._writer_failures = 0
            return outcome
        return store_batch(self.store, _raws(inflight[0]))

    def _writer_died(self, exc: OSError, inflight: deque[list[_Received]]) -> None:
        """Start the process again and send it every batch in flight again (what it had
        committed comes back as duplicates); after three failures in a row, commit in
        this process from then on."""
        while self._writer_process is not None:
            self._writer_failures += 1
            if self._writer_failures >= 3:
                logger.error("%s, %d times in a row; committing in the controller's own "
                             "process from now on", exc, self._writer_failures)
                self._writer_process.close(timeout=1.0)
                self._writer_process = None
                return
            logger.error("%s; starting it again and sending %d batch(es) again", exc,
                         len(inflight))
            time.sleep(0.2 * self._writer_failures)
            try:
                for batch in inflight:
                    self._writer_process.submit(_raws(batch))
                return
            except OSError as again:
                exc = again

    def _account(self, outcome: Outcome, size: int) -> None:
        self.metrics.commit_seconds.observe(outcome.commit_s)
        self.metrics.batch_size.observe(size)
        for _where, reason, _why in outcome.rejected:
            self.metrics.rejected.labels(reason=reason).inc()
        result = outcome.result
        for channel, n in result.stored.items():
            self.metrics.messages.labels(channel=channel).inc(n)
        if result.duplicates:
            self.metrics.duplicates.inc(result.duplicates)
        if result.dropped_announced:
            self.metrics.dropped.inc(result.dropped_announced)
        if result.gaps_opened:
            self.metrics.seq_gaps.inc(result.gaps_opened)
        for lag in outcome.lags:
            self.metrics.lag.observe(lag)
        self.metrics.devices_online.set(self.store.count_online())

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
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.settings.ingest.sweep_interval_s
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
        if now >= self._next_maintenance:
            self._next_maintenance = now + self.settings.database.maintenance_interval_s
            self.store.rollup_and_prune(self.settings.database.telemetry_retention_days)
