"""The ingest's writer process: batches are stored there, and losing it loses nothing."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from controller_support import add_device, broker_settings, wait_until
from fastapi.testclient import TestClient

from controller.api.main import create_app
from controller.ingest import _WriterProcess
from controller.store import Store
from protocol.codec import encode
from protocol.models import Telemetry
from protocol.topics import topic

NOW = datetime.now(UTC)


def tele(seq: int) -> bytes:
    return encode(Telemetry(seq=seq, ts=NOW, readings={"moisture_pct.zone1": 40.0},
                            outputs={"zone1": False}))


def seqs(store: Store, device: str) -> list[int]:
    return [r["seq"] for r in store.telemetry(device, limit=10_000)]


@contextmanager
def controller(settings):
    """A running controller (API and ingest) with one registered unit."""
    with Store.open(settings.database.target) as store:
        add_device(store, "taman-01", "dlh")
        app = create_app(settings, store=store)
        with TestClient(app):
            ingest = app.state.controller.ingest
            assert ingest.wait_connected(10)
            yield ingest, store


@pytest.fixture
def running(tmp_path, mosquitto, database):
    settings = broker_settings(tmp_path, mosquitto, database=database)
    assert settings.ingest.writer == "process"  # the default for a database file
    with controller(settings) as both:
        yield both


def writer_pid(ingest) -> int:
    proc = ingest._writer_process._proc
    assert proc is not None and proc.is_alive()
    return proc.pid


def test_batches_are_stored_by_a_separate_process(running, mosquitto, mqtt_client_factory):
    ingest, store = running
    pid = writer_pid(ingest)
    assert pid != os.getpid()
    unit = mqtt_client_factory(mosquitto)
    for seq in range(1, 101):
        unit.publish(topic("dlh", "taman-01", "telemetry"), tele(seq), wait=False)
    wait_until(lambda: store.acked_seq("taman-01") == 100, what="seq 100 committed")
    assert seqs(store, "taman-01") == list(range(1, 101))
    assert writer_pid(ingest) == pid  # the same process did it all
    depth = "smartcity_ingest_queue_depth"
    wait_until(lambda: ingest.metrics.registry.get_sample_value(depth) == 0,
               what="nothing left between receiving and committing")


def test_writer_process_killed_mid_stream_loses_and_doubles_nothing(
        running, mosquitto, mqtt_client_factory):
    ingest, store = running
    first = writer_pid(ingest)
    unit = mqtt_client_factory(mosquitto)
    for seq in range(1, 301):
        unit.publish(topic("dlh", "taman-01", "telemetry"), tele(seq), wait=False)
        if seq == 150:
            os.kill(first, signal.SIGKILL)
    unit.wait_for(lambda: len(unit.pubacks) == 300, what="300 PUBACKs from the broker")
    wait_until(lambda: store.acked_seq("taman-01") == 300, timeout=30,
               what="seq 300 committed after the writer was killed")
    assert seqs(store, "taman-01") == list(range(1, 301))
    assert writer_pid(ingest) != first  # started again


def test_after_three_failures_in_a_row_batches_are_committed_here(
        running, mosquitto, mqtt_client_factory, monkeypatch):
    ingest, store = running

    def broken(self, raws):
        raise OSError("ingest writer process died (exit code -9)")

    monkeypatch.setattr(_WriterProcess, "submit", broken)
    unit = mqtt_client_factory(mosquitto)
    for seq in range(1, 21):
        unit.publish(topic("dlh", "taman-01", "telemetry"), tele(seq), wait=False)
    wait_until(lambda: store.acked_seq("taman-01") == 20, timeout=30,
               what="seq 20 committed in the controller's own process")
    assert seqs(store, "taman-01") == list(range(1, 21))
    assert ingest._writer_process is None  # given up on: no restart loop


def test_thread_writer_needs_no_process(tmp_path, mosquitto, mqtt_client_factory,
                                         database):
    settings = broker_settings(tmp_path, mosquitto, ingest={"writer": "thread"},
                               database=database)
    with controller(settings) as (ingest, store):
        assert ingest._writer_process is None
        unit = mqtt_client_factory(mosquitto)
        for seq in range(1, 11):
            unit.publish(topic("dlh", "taman-01", "telemetry"), tele(seq), wait=False)
        wait_until(lambda: store.acked_seq("taman-01") == 10, what="seq 10 committed")
        assert seqs(store, "taman-01") == list(range(1, 11))
