"""Valid payloads: the canonical examples, normalisation, helpers and the codec."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from protocol import (
    MODELS_BY_CHANNEL,
    Ack,
    Channel,
    Clamp,
    Command,
    CommandAction,
    CommandReply,
    DesiredConfig,
    Event,
    EventType,
    FeedNowParams,
    PauseParams,
    ProtocolError,
    ReplyStatus,
    RunZoneParams,
    Status,
    StopAllParams,
    Telemetry,
    channel_of,
    decode,
    dropped_ranges,
    encode,
    offline_status,
)
from protocol.examples import COMMAND_EXAMPLES, EVENT_EXAMPLES, EXAMPLES, LAST_WILL_EXAMPLE

T0 = datetime(2025, 3, 14, 22, 0, tzinfo=UTC)
WITA = timezone(timedelta(hours=8))

ALL_EXAMPLES = [*EXAMPLES.values(), *COMMAND_EXAMPLES.values(), *EVENT_EXAMPLES,
                LAST_WILL_EXAMPLE]


@pytest.mark.parametrize("message", ALL_EXAMPLES, ids=lambda m: type(m).__name__)
def test_models_examples_round_trip(message):
    data = encode(message)
    assert isinstance(data, bytes)
    again = decode(channel_of(message), data)
    assert again == message
    assert type(again) is type(message)
    assert encode(again) == data


def test_models_every_channel_has_a_model_and_an_example():
    assert set(MODELS_BY_CHANNEL) == set(Channel)
    assert set(EXAMPLES) == set(Channel)
    for channel, model in MODELS_BY_CHANNEL.items():
        assert isinstance(EXAMPLES[channel], model)
        assert channel_of(model) is channel
    assert set(COMMAND_EXAMPLES) == set(CommandAction)


def test_models_encode_is_compact_utf8_json_with_version():
    data = encode(EXAMPLES[Channel.TELEMETRY])
    text = data.decode("utf-8")
    assert " " not in text
    assert json.loads(text)["v"] == 1
    assert text.startswith('{"v":1,')


def test_models_encode_keeps_non_ascii_text():
    reply = CommandReply(id="c1", status="rejected", ts=T0, detail="zona tidak dikenal: ü")
    assert "ü".encode() in encode(reply)
    assert decode(Channel.CMD_REPLY, encode(reply)) == reply


def test_models_reply_code_and_params_round_trip_and_older_replies_stay_valid():
    from protocol.models import REPLY_CODES, ReplyCode, reply_text

    reply = CommandReply(id="c1", status="done", ts=T0, code="zone_stopped",
                         params={"zone": "z1"}, detail="zone z1 stopped")
    assert decode(Channel.CMD_REPLY, encode(reply)) == reply
    assert reply.code is ReplyCode.ZONE_STOPPED
    older = decode(Channel.CMD_REPLY, b'{"v":1,"id":"c1","status":"done",'
                                      b'"ts":"2025-03-14T22:00:00Z","detail":"ok"}')
    assert (older.code, older.params) == (None, {})
    # every code has its words, and its words use every param it names
    assert set(REPLY_CODES) == set(ReplyCode)
    for code, spec in REPLY_CODES.items():
        words = reply_text(code, {p: f"<{p}>" for p in spec.params})
        assert "?" not in words, code
        assert spec.description and spec.description[0].islower(), code
    with pytest.raises(ValueError, match="finite"):  # a unit cannot build one either
        CommandReply(id="c1", status="done", ts=T0, code="run_completed",
                     params={"litres": float("nan")})
    assert reply_text("zone_stopped", {}) == "zone ? stopped"  # a param missing
    assert reply_text("bad_params", {"field": "duration_s", "reason_code":
                                     "greater_than_equal", "ge": 10}) == \
        "bad params: duration_s: greater_than_equal (ge 10)"


def test_models_timestamps_normalised_to_utc_and_written_with_z():
    ack = Ack(seq=3, ts=datetime(2025, 3, 15, 6, 0, tzinfo=WITA))
    assert ack.ts == T0
    assert ack.ts.tzinfo is UTC
    assert b'"ts":"2025-03-14T22:00:00Z"' in encode(ack)


def test_models_timestamp_strings_with_offsets_accepted():
    ack = decode(Channel.ACK, b'{"v":1,"seq":0,"ts":"2025-03-15T06:00:00.5+08:00"}')
    assert ack.ts == T0 + timedelta(microseconds=500_000)
    assert ack.ts.utcoffset() == timedelta(0)
    assert b'"2025-03-14T22:00:00.500000Z"' in encode(ack)


def test_models_decode_accepts_str_bytearray_memoryview_and_model_class():
    raw = encode(EXAMPLES[Channel.ACK])
    for data in (raw, raw.decode(), bytearray(raw), memoryview(raw)):
        assert decode(Channel.ACK, data) == EXAMPLES[Channel.ACK]
    assert decode("ack", raw) == EXAMPLES[Channel.ACK]
    decoded = decode(Ack, raw)
    assert isinstance(decoded, Ack)


def test_models_frozen():
    ack = Ack(seq=1, ts=T0)
    with pytest.raises(ValueError, match="frozen"):
        ack.seq = 2


def test_models_status_defaults_and_offline_status():
    status = Status(online=True, fw="1.2.3", clock_synced=False, ts=T0)
    assert status.outputs == {}
    assert status.dropped == 0 and status.backlog == 0
    assert status.config_version is None and status.app is None
    will = offline_status("1.2.3", T0, config_version=4, app="fish_feeder")
    assert will.online is False
    assert will.outputs == {}
    assert will.config_version == 4 and will.app == "fish_feeder"
    assert decode(Channel.STATUS, encode(will)) == will


def test_models_telemetry_keeps_number_kinds():
    telemetry = Telemetry(seq=1, ts=T0, readings={
        "a": 1, "b": 1.0, "c": True, "d": None, "e": -0.5, "f": 2**53 - 1})
    again = decode(Channel.TELEMETRY, encode(telemetry))
    assert again == telemetry
    assert type(again.readings["a"]) is int
    assert type(again.readings["b"]) is float
    assert again.readings["c"] is True
    assert again.readings["d"] is None


def test_models_event_type_from_string_and_details_copied():
    details = {"zone": "zone1", "nested": {"list": [1, 2.5, None, "x", True]}}
    event = Event(seq=5, ts=T0, type="alarm", details=details)
    assert event.type is EventType.ALARM
    details["nested"]["list"].append(99)  # the model holds its own copy
    assert event.details["nested"]["list"] == [1, 2.5, None, "x", True]


def test_models_outbox_dropped_ranges_merged():
    event = Event(seq=100, ts=T0, type=EventType.OUTBOX_DROPPED, details={
        "seqs": [7, 3, 1], "ranges": [{"from": 4, "to": 6}, {"from": 10, "to": 20},
                                      {"from": 15, "to": 25}]})
    assert dropped_ranges(event) == [(1, 1), (3, 7), (10, 25)]
    assert decode(Channel.EVENT, encode(event)) == event


def test_models_dropped_ranges_refuses_other_events():
    with pytest.raises(ProtocolError):
        dropped_ranges(EVENT_EXAMPLES[0])


@pytest.mark.parametrize("action", list(CommandAction))
def test_models_command_params_model_per_action(action):
    command = COMMAND_EXAMPLES[action]
    assert command.action is action
    assert decode(Channel.CMD, encode(command)).params == command.params


def test_models_command_params_defaults_and_instances():
    stop = Command(id="s1", issued_at=T0, expires_at=T0 + timedelta(minutes=1),
                   action="stop_all")
    assert stop.params == StopAllParams()
    run = Command(id="r1", issued_at=T0, expires_at=T0 + timedelta(minutes=1),
                  action=CommandAction.RUN_ZONE,
                  params=RunZoneParams(zone="zone1", duration_s=60))
    assert run.params.duration_s == 60
    feed = Command(id="f1", issued_at=T0, expires_at=T0 + timedelta(minutes=1),
                   action="feed_now", params={"feeder": "f1", "dose_g": 50})
    assert isinstance(feed.params, FeedNowParams)
    assert feed.params.dose_g == 50.0


def test_models_rain_delay_zero_ends_a_delay():
    # the unit takes hours=0 (it ends a rain delay); the contract accepts it too
    command = Command(id="d0", issued_at=T0, expires_at=T0 + timedelta(minutes=1),
                      action="rain_delay", params={"hours": 0})
    assert command.params.hours == 0


def test_models_command_expiry():
    command = COMMAND_EXAMPLES[CommandAction.RUN_ZONE]
    assert not command.is_expired(command.issued_at)
    assert not command.is_expired(command.expires_at - timedelta(microseconds=1))
    assert command.is_expired(command.expires_at)
    assert command.is_expired(command.expires_at.astimezone(WITA) + timedelta(seconds=1))
    with pytest.raises(ProtocolError):
        command.is_expired(datetime(2025, 3, 14, 22, 1))


def test_models_command_reply_helper():
    command = COMMAND_EXAMPLES[CommandAction.RUN_ZONE]
    reply = command.reply("done", T0, clamped={"field": "duration_s", "asked": 600,
                                               "allowed": 300})
    assert reply.id == command.id
    assert reply.status is ReplyStatus.DONE
    assert reply.clamped == Clamp(field="duration_s", asked=600, allowed=300)
    assert decode(Channel.CMD_REPLY, encode(reply)) == reply


def test_models_pause_until_normalised():
    command = COMMAND_EXAMPLES[CommandAction.PAUSE]
    assert isinstance(command.params, PauseParams)
    assert command.params.until.tzinfo is UTC


def test_models_config_body_round_trip():
    config = DesiredConfig(version=1, issued_at=T0, body={})
    assert decode(Channel.CONFIG, encode(config)) == config
    assert decode(Channel.CONFIG, encode(EXAMPLES[Channel.CONFIG])) == EXAMPLES[Channel.CONFIG]


def test_models_ack_zero_allowed():
    assert decode(Channel.ACK, b'{"v":1,"seq":0,"ts":"2025-03-14T22:00:00Z"}').seq == 0
