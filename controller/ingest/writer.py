"""The ingest's writer: the thread that takes batches off the queue, and the writer process.

The writer thread (`WriterMixin._run`, part of `controller.ingest.Ingest`) takes a batch
(up to ``ingest.batch_max`` messages or ``ingest.batch_window_ms``; a batch holding a
command reply does not wait for the window), has it stored (`store_batch`) by the writer
process (`_WriterProcess`, running `_writer_main`) or itself, then acknowledges it
(`controller.ingest.acks`) and runs the housekeeping (`controller.ingest.housekeeping`).
The process is spawned: it finds `_writer_main` by this module's path.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import time
from collections import deque
from datetime import datetime
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from controller.ingest.batch import Outcome, store_batch
from controller.store import Store
from protocol.logs import configure as configure_logging
from protocol.topics import Channel

if TYPE_CHECKING:
    from controller.metrics import Metrics
    from controller.settings import Settings

logger = logging.getLogger("controller.ingest")  # one logger for every part of the ingest

_REPLY_SUFFIX = "/" + Channel.CMD_REPLY.value
_STOP = object()


class _Received(NamedTuple):  # one per message: a tuple is the cheapest to build
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_at: datetime


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


class WriterMixin:
    """The writer thread of `controller.ingest.Ingest`: batches taken, stored, accounted."""

    settings: Settings
    store: Store
    metrics: Metrics
    _queue: queue.SimpleQueue[Any]
    _taken: int
    _writer_process: _WriterProcess | None
    _writer_failures: int

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
