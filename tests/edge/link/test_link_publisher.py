"""The link as the app's publisher, without a broker: what goes into the outbox."""

from datetime import UTC, datetime

import pytest
from link_helpers import unit_config

from edge.clock import VirtualClock
from edge.limits import Clamp
from edge.link import Link
from edge.outbox import Outbox
from edge.state import StateStore
from protocol import Channel, ReplyCode, decode


class NoBroker:
    host, port = "127.0.0.1", 9  # never connected in these tests


@pytest.fixture
def link(tmp_path):
    config = unit_config(NoBroker, tmp_path / "state")
    link = Link(config, outbox=Outbox(tmp_path / "outbox.db"),
                state=StateStore(tmp_path / "state.db"),
                clock=VirtualClock(datetime(2026, 3, 1, 22, 0, tzinfo=UTC)),
                clock_synced=lambda: True)
    yield link
    link.close()


def rows(link):
    return link.outbox.rows_after(0, 100)


def test_link_event_is_stored_with_seq_and_utc_time(link):
    assert link.event("run_finished", zone="lawn", duration_s=600) == 1
    [row] = rows(link)
    event = decode(Channel.EVENT, row.payload)
    assert (event.seq, event.type, event.details) == (1, "run_finished",
                                                      {"zone": "lawn", "duration_s": 600})
    assert event.ts == datetime(2026, 3, 1, 22, 0, tzinfo=UTC)


def test_link_event_details_are_made_plain_json(link):
    until = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    link.event("paused", until=until, zones={"lawn"}, clamp=Clamp("dose_g", 900, 500, "cap"))
    details = decode(Channel.EVENT, rows(link)[0].payload).details
    assert details == {"until": "2026-03-02T06:00:00+00:00", "zones": ["lawn"],
                       "clamp": {"field": "dose_g", "asked": 900, "allowed": 500,
                                 "limit": "cap"}}


def test_link_invalid_event_becomes_an_alarm_not_an_exception(link):
    assert link.event("made_up_type", zone="lawn") == 1
    event = decode(Channel.EVENT, rows(link)[0].payload)
    assert event.type == "alarm"
    assert event.details["code"] == "invalid_event"
    assert event.details["event_type"] == "made_up_type"
    assert link.counters["invalid_events"] == 1


def test_link_invalid_telemetry_is_counted_and_not_stored(link):
    assert link.telemetry({"moisture pct": 3}, {}) is None  # space: not a valid name
    assert link.telemetry({"moisture_pct.lawn": float("nan")}, {}) is None
    assert rows(link) == []
    assert link.counters["invalid_telemetry"] == 2
    assert link.telemetry({"moisture_pct.lawn": 31.5}, {"valve1": True}) == 1
    sample = decode(Channel.TELEMETRY, rows(link)[0].payload)
    assert (sample.readings, sample.outputs) == ({"moisture_pct.lawn": 31.5}, {"valve1": True})


def test_link_reply_with_clamp_is_queued_durably(link):
    link._reply("c-1", "accepted", ReplyCode.RUN_ACCEPTED, {"zone": "lawn", "duration_s": 300},
                clamped=Clamp("duration_s", 3600, 300, "max_run_s"))
    link._reply("c-2", "no-such-status", ReplyCode.STOPPED_ALL, {"runs": 0})
    [(_, first), (_, second)] = link.outbox.pending_replies()
    reply = decode(Channel.CMD_REPLY, first)
    assert reply.clamped.model_dump() == {"field": "duration_s", "asked": 3600, "allowed": 300}
    assert (reply.code, reply.params) == (ReplyCode.RUN_ACCEPTED,
                                          {"zone": "lawn", "duration_s": 300})
    assert reply.detail == "zone lawn for 300 s; clamped: duration_s 3600 -> 300 (max_run_s)"
    second = decode(Channel.CMD_REPLY, second)
    assert (second.status, second.code) == ("failed", ReplyCode.INVALID_REPLY)
    assert rows(link) == []  # replies are not in the seq stream
    assert link.counters["replies_without_code"] == 0


def test_link_reply_without_a_code_is_a_bug_logged_counted_and_still_sent(link, caplog):
    link._reply("c-3", "done", None)
    link._reply("c-4", "done", "made_up_code", {"zone": "lawn"})
    link._reply("c-5", "done", ReplyCode.ZONE_STOPPED, {"zone": ["not", "a", "scalar"]})
    replies = [decode(Channel.CMD_REPLY, p) for _, p in link.outbox.pending_replies()]
    assert [(r.status, r.code) for r in replies] == [
        ("done", None), ("done", None), ("failed", ReplyCode.INVALID_REPLY)]
    assert replies[1].detail == "made_up_code"
    assert link.counters["replies_without_code"] == 2
    assert sum("without a known code" in r.message for r in caplog.records) == 2
