"""Live updates (`controller.live`, ``GET /api/v1/stream``): what the ingest commits
reaches open streams within a poll, only for the units the caller may see; one poll
serves every stream; tickets open a stream once."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta

import httpx
import pytest
import uvicorn
from controller_support import T0, auth, seed, wait_until

from controller import alarms
from controller.api.main import create_app
from controller.auth import Principal
from controller.live import LiveHub, Tickets, changes, read_marks
from controller.publisher import MemoryTransport
from controller.settings import parse_settings
from controller.store import Inbound, Store
from protocol.models import Command, CommandReply, Event, Status, Telemetry
from protocol.topics import Channel


def status(device_id: str, opd: str, online: bool = True) -> Inbound:
    return Inbound(opd, device_id, Channel.STATUS, Status(
        online=online, fw="1", ts=T0, clock_synced=True, app="irrigation", outputs={}), T0)


def event(device_id: str, opd: str, seq: int, type_: str, **details) -> Inbound:
    return Inbound(opd, device_id, Channel.EVENT,
                   Event(seq=seq, ts=T0, type=type_, details=details), T0)


def test_live_changes_name_each_kind_of_commit(store):
    seed(store)
    before = read_marks(store)
    assert changes(store, before, read_marks(store)) == []  # nothing committed
    store.commit_batch([status("taman-01", "dlh")])
    store.commit_batch([Inbound("dlh", "taman-01", Channel.TELEMETRY, Telemetry(
        seq=1, ts=T0, readings={"x": 1.0}, outputs={}), T0)])
    mid = read_marks(store)
    # telemetry alone is no change; the status is
    assert changes(store, before, mid) == [("taman-01", "dlh", "state")]
    store.commit_batch([event("tambak-01", "dp3", 1, "alarm", code="feeder_jam",
                              feeder="pakan-nila")])
    cmd = Command(id="c-1", issued_at=T0, expires_at=T0 + timedelta(hours=1),
                  action="stop_all")
    store.create_command("taman-01", cmd, actor="test")
    store.commit_batch([Inbound("dlh", "taman-01", Channel.CMD_REPLY,
                                CommandReply(id="c-1", status="done", ts=T0), T0)])
    after = read_marks(store)
    assert changes(store, mid, after) == [("taman-01", "dlh", "replies"),
                                         ("tambak-01", "dp3", "events"),
                                         ("tambak-01", "dp3", "alarms")]
    # acknowledging (done by the API, not the ingest) is a change too
    alarm_id = next(iter(after.alarms))
    alarms.acknowledge(store, alarm_id, user="op", actor="someone", now=T0)
    assert changes(store, after, read_marks(store)) == [("tambak-01", "dp3", "alarms")]


def test_live_hub_polls_only_while_someone_listens_and_filters_by_opd(store):
    seed(store)

    async def scenario():
        hub = LiveHub(store, interval_s=0.01)
        await hub.poll_once()
        assert hub.polls == 0  # nobody listens: no query
        dlh, dp3, admin = hub.subscribe("dlh"), hub.subscribe("dp3"), hub.subscribe(None)
        await hub.poll_once()  # takes the markers
        store.commit_batch([status("taman-01", "dlh"), status("tambak-01", "dp3")])
        await hub.poll_once()
        assert hub.polls == 2  # one query round for three streams

        def drain(sub):
            out = []
            while not sub.queue.empty():
                out.append(sub.queue.get_nowait())
            return out

        assert drain(dlh) == [{"device_id": "taman-01", "what": "state"}]
        assert drain(dp3) == [{"device_id": "tambak-01", "what": "state"}]
        assert len(drain(admin)) == 2
        hub.end_streams()
        assert dlh.queue.get_nowait() is None and hub.subscribers == 0

    asyncio.run(scenario())


def test_live_ticket_is_valid_once_and_expires():
    now = [100.0]
    tickets = Tickets(ttl_s=30, clock=lambda: now[0])
    who = Principal(token_id=1, user="op", role="operator", opd="dlh")
    first, second = tickets.issue(who), tickets.issue(who)
    assert tickets.redeem(first) == who
    assert tickets.redeem(first) is None  # used
    now[0] += 31
    assert tickets.redeem(second) is None  # expired
    assert tickets.redeem("made-up") is None


# --------------------------------------------------------------------------- over HTTP

@pytest.fixture
def served(database):
    from support.broker import free_port

    settings = parse_settings({"database": database, "mqtt": {"enabled": False},
                               "api": {"live_poll_s": 0.1}}, environ={})
    path = settings.database.target
    store = Store.open(path)
    tokens = seed(store)
    app = create_app(settings, store=store, mqtt=MemoryTransport())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on",
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=15, what="uvicorn started")
    # the ingest's writer: another connection to the same database
    writer = Store.open(path, migrate=False)
    try:
        yield {"base": f"http://127.0.0.1:{port}", "tokens": tokens, "writer": writer,
               "app": app}
    finally:
        state = app.state.controller
        state.loop.call_soon_threadsafe(state.live.end_streams)
        server.should_exit = True
        thread.join(15)
        writer.close()
        store.close()


class Listener(threading.Thread):
    """Reads a stream's ``data:`` lines into a list."""

    def __init__(self, url: str, headers: dict | None = None):
        super().__init__(daemon=True)
        self.url, self.headers = url, headers or {}
        self.got: list[tuple[float, dict]] = []
        self.status: int | None = None
        self.content_type = ""

    def run(self):
        with httpx.stream("GET", self.url, headers=self.headers, timeout=30) as r:
            self.status, self.content_type = r.status_code, r.headers.get("content-type", "")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    self.got.append((time.monotonic(), json.loads(line[6:])))


def ticket(site, who: str) -> str:
    r = httpx.post(site["base"] + "/api/v1/stream/tickets",
                   headers=auth(getattr(site["tokens"], who)))
    assert r.status_code == 201, r.text
    return r.json()["ticket"]


def test_live_stream_pushes_what_the_writer_commits_to_those_who_may_see_it(served):
    base = served["base"] + "/api/v1/stream"
    dlh = Listener(f"{base}?ticket={ticket(served, 'op_dlh')}")
    viewer = Listener(f"{base}?ticket={ticket(served, 'viewer')}")  # viewers follow too
    dp3 = Listener(base, auth(served["tokens"].op_dp3))  # a client that sends headers
    for listener in (dlh, viewer, dp3):
        listener.start()
    hub = served["app"].state.controller.live
    wait_until(lambda: hub.subscribers == 3 and hub.polls >= 2, what="three streams open")
    assert dlh.status == 200 and dlh.content_type.startswith("text/event-stream")
    committed = time.monotonic()
    served["writer"].commit_batch([status("taman-01", "dlh")])
    wait_until(lambda: dlh.got and viewer.got, timeout=5, what="the change streamed")
    at, change = dlh.got[0]
    assert change == {"device_id": "taman-01", "what": "state"}
    assert at - committed < 1.0  # within a few polls of 0.1 s
    assert viewer.got[0][1] == change
    served["writer"].commit_batch([event("tambak-01", "dp3", 1, "feed_dispensed",
                                         feeder="pakan-nila", pond="kolam-1", dose_g=100,
                                         grams=100)])
    wait_until(lambda: dp3.got, timeout=5, what="the dp3 change streamed")
    assert [c for _, c in dp3.got] == [{"device_id": "tambak-01", "what": "events"}]
    time.sleep(0.3)
    assert [c["device_id"] for _, c in dlh.got] == ["taman-01"]  # never another OPD's
    assert hub.subscribers == 3


def test_live_stream_refuses_without_a_valid_ticket_or_token(served):
    base = served["base"] + "/api/v1/stream"
    used = ticket(served, "admin")
    first = Listener(f"{base}?ticket={used}")
    first.start()
    wait_until(lambda: first.status == 200, what="the stream opened")
    for url, headers in ((f"{base}?ticket={used}", {}),  # used once already
                         (f"{base}?ticket=made-up", {}), (base, {}),
                         (base, auth(served["tokens"].revoked))):
        r = httpx.get(url, headers=headers, timeout=5)
        assert r.status_code == 401, (url, r.text)
    # the token is not accepted in the address
    r = httpx.get(f"{base}?token={served['tokens'].admin}", timeout=5)
    assert r.status_code == 401


def test_live_streams_end_when_the_server_is_told_to_stop(store):
    from types import SimpleNamespace

    from controller.cli import end_streams_on_exit

    async def scenario():
        hub = LiveHub(store)
        sub = hub.subscribe(None)
        exits = []
        server = SimpleNamespace(handle_exit=lambda sig, frame: exits.append(sig))
        state = SimpleNamespace(live=hub, loop=asyncio.get_running_loop())
        end_streams_on_exit(server, SimpleNamespace(state=SimpleNamespace(controller=state)))
        server.handle_exit(15, None)  # SIGTERM, as uvicorn's handler gets it
        assert exits == [15]  # uvicorn's own handling still runs
        assert await asyncio.wait_for(sub.queue.get(), 1) is None  # the stream's end
        assert hub.subscribers == 0

    asyncio.run(scenario())
