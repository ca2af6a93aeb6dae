"""The parts of an offered release in one process (``edge.offer``): the download against
a local HTTP server (Range, errors, giving up), and the offer's life after the hand-over
(the update process's journal, its lock, an update process that never started)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from bundle_server import BundleServer, Fault

from edge.clock import SystemClock
from edge.offer import DownloadError, DownloadOptions, UpdateOffers, download, lock_held

FAST = DownloadOptions(timeout_s=5.0, tries=3, backoff_min_s=0.01, backoff_max_s=0.05)


@pytest.fixture
def srv():
    server = BundleServer({"/b": os.urandom(200_000)}).start()
    yield server
    server.close()


def sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_offer_download_resumes_within_one_call(tmp_path, srv):
    data = srv.files["/b"]
    srv.faults += [Fault(cut_after=70_000), Fault(cut_after=1)]
    final = download(srv.url("/b"), tmp_path / "v.bundle.part", len(data), sha(data),
                     stop=threading.Event(), opts=FAST)
    assert final == tmp_path / "v.bundle" and final.read_bytes() == data
    assert [r.range for r in srv.requests] == [None, "bytes=70000-", "bytes=70001-"]
    assert srv.bytes_served == len(data)


def test_offer_download_never_takes_more_than_size(tmp_path, srv):
    data = srv.files["/b"]
    srv.files["/b"] = data + b"x" * 5000  # the server has more than the offer says
    with pytest.raises(DownloadError, match="not the release offered"):
        download(srv.url("/b"), tmp_path / "v.bundle.part", len(data), sha(data + b"x"),
                 stop=threading.Event(), opts=FAST)
    assert srv.bytes_served <= len(data) + 64 * 1024  # read no further than size
    assert not (tmp_path / "v.bundle.part").exists() and not (tmp_path / "v.bundle").exists()


def test_offer_download_http_404_is_not_retried(tmp_path, srv):
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download(srv.url("/missing"), tmp_path / "v.bundle.part", 10, "0" * 64,
                 stop=threading.Event(), opts=FAST)
    assert not info.value.retry and len(srv.requests) == 0  # refused before a body


def test_offer_download_gives_up_after_tries_without_progress(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match="gave up after 3 tries"):
        download(f"http://127.0.0.1:{port}/b", tmp_path / "v.bundle.part", 10, "0" * 64,
                 stop=threading.Event(), opts=FAST)


# --------------------------------------------------------------------------------------
# After the hand-over
# --------------------------------------------------------------------------------------
def make_offers(state: Path, events: list) -> UpdateOffers:
    config = SimpleNamespace(
        state_dir=state, kind="irrigation", site=SimpleNamespace(timezone="Asia/Makassar"),
        update=SimpleNamespace(trusted_keys=["k"], window="00:00-24:00", launcher=None))
    return UpdateOffers(config, clock=SystemClock(), fw="1.0.0",
                        event_once=lambda key, type_, **d: events.append((key, type_, d)))


def launched(state: Path, *, ago_s: float, version: str = "2.0.0") -> None:
    (state / "downloads").mkdir(parents=True)
    (state / "downloads" / f"{version}.bundle").write_bytes(b"bundle")
    (state / "update-request.json").write_text("{}")
    (state / "update-offer.json").write_text(json.dumps({
        "id": "cmd-7", "version": version, "url": "http://x/b", "sha256": "0" * 64,
        "size": 6, "state": "launched", "launched_at": time.time() - ago_s}))


def test_offer_update_process_that_never_started_is_reported_once(tmp_path):
    events: list = []
    launched(tmp_path, ago_s=UpdateOffers.LAUNCH_TIMEOUT_S + 5)
    offers = make_offers(tmp_path, events)
    offers.start()
    assert offers.busy_with() == "2.0.0"
    offers.check(force=True)
    ((key, type_, details),) = events
    assert (key, type_) == ("update:cmd-7", "update_failed")
    assert details["step"] == "launch" and details["update_id"] == "cmd-7"
    assert "smartcity-update@irrigation.path" in details["reason"]
    assert not (tmp_path / "update-offer.json").exists()
    assert not (tmp_path / "update-request.json").exists()
    assert offers.busy_with() is None
    offers.check(force=True)
    assert len(events) == 1


def test_offer_running_update_holds_it_then_its_journal_ends_it(tmp_path):
    events: list = []
    launched(tmp_path, ago_s=UpdateOffers.LAUNCH_TIMEOUT_S + 5)
    (tmp_path / "update.json").write_text(json.dumps({"id": "older", "version": "1.9.0",
                                                      "step": "idle"}))
    fd = os.open(tmp_path / "update.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # an update process (a cut one, resumed first)
    try:
        assert lock_held(tmp_path)
        offers = make_offers(tmp_path, events)
        offers.start()
        offers.check(force=True)
        assert events == [] and (tmp_path / "update-offer.json").exists()
        (tmp_path / "update.json").write_text(json.dumps({"id": "cmd-7", "version": "2.0.0",
                                                          "step": "switched"}))
        offers.check(force=True)
        assert (tmp_path / "update-offer.json").exists()
    finally:
        os.close(fd)
    assert not lock_held(tmp_path)
    (tmp_path / "update.json").write_text(json.dumps({"id": "cmd-7", "version": "2.0.0",
                                                      "step": "done", "outcome": "applied"}))
    offers.check(force=True)
    assert events == []  # the journal's outcome is UpdateReporter's to report
    assert not (tmp_path / "update-offer.json").exists()
    assert not (tmp_path / "downloads" / "2.0.0.bundle").exists()
    assert offers.busy_with() is None


def test_offer_busy_while_an_update_process_holds_the_lock(tmp_path):
    (tmp_path / "update.json").write_text(json.dumps({"id": "x", "version": "3.1.0",
                                                      "step": "staged"}))
    offers = make_offers(tmp_path, [])
    assert offers.busy_with() is None  # no lock file: nothing runs
    fd = os.open(tmp_path / "update.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert offers.busy_with() is None  # a lock file nobody holds
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert offers.busy_with() == "3.1.0"
    finally:
        os.close(fd)
