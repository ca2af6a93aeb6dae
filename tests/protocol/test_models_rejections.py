"""Every way a payload can be wrong gives a ProtocolError naming the field and reason."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from protocol import (
    MAX_PAYLOAD_BYTES,
    Ack,
    Channel,
    Command,
    CommandReply,
    DesiredConfig,
    Event,
    PayloadError,
    ProtocolError,
    Status,
    Telemetry,
    decode,
    encode,
)
from protocol.examples import COMMAND_EXAMPLES, EXAMPLES

T0 = datetime(2025, 3, 14, 22, 0, tzinfo=UTC)


def example_dict(channel):
    return json.loads(encode(EXAMPLES[channel]))


def with_changes(channel, **changes):
    data = example_dict(channel)
    for key, value in changes.items():
        if value is DELETE:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


DELETE = object()


def rejected(channel, payload):
    with pytest.raises(ProtocolError) as excinfo:
        decode(channel, payload)
    assert isinstance(excinfo.value, PayloadError)
    assert excinfo.value.kind == "payload"
    return excinfo.value


# ---------------------------------------------------------------- envelope problems


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize(("payload", "reason"), [
    (b"", "empty payload"),
    (b"   ", "empty payload"),
    (b"\xff\xfe{}", "UTF-8"),
    (b'{"v":1,"x":"\xc3"}', "UTF-8"),
    (b"{", "not valid JSON"),
    (b'{"v":1}x', "not valid JSON"),
    (b"[]", "JSON object"),
    (b'"text"', "JSON object"),
    (b"1", "JSON object"),
    (b"null", "JSON object"),
    (b"{}", "missing schema version"),
    (b'{"v":2}', "unsupported schema version"),
    (b'{"v":"1"}', "unsupported schema version"),
    (b'{"v":true}', "unsupported schema version"),
    (b'{"v":1.0}', "unsupported schema version"),
    (b'{"v":1,"v":1}', "duplicate key"),
    (b'{"v":1,"a":NaN}', "NaN"),
    (b'{"v":1,"a":Infinity}', "Infinity"),
    (b'{"v":1,"a":-Infinity}', "Infinity"),
    (b'{"v":1,"a":1e400}', "out of range"),
    (b'{"v":1,"a":' + b"9" * 5000 + b"}", "not valid JSON"),
    (b'{"v":1,"a":' + b"[" * 40 + b"]" * 40 + b"}", "nested deeper"),
    (b'\xef\xbb\xbf{"v":1}', "not valid JSON"),
])
def test_models_envelope_rejections(channel, payload, reason):
    error = rejected(channel, payload)
    assert reason in str(error)
    assert str(error).startswith(f"{channel.value} payload: ")


@pytest.mark.parametrize("channel", list(Channel))
def test_models_oversize_rejected_before_parsing(channel):
    payload = b"{" + b" " * MAX_PAYLOAD_BYTES + b"}"
    error = rejected(channel, payload)
    assert "larger than" in str(error)
    error = rejected(channel, payload.decode())
    assert "larger than" in str(error)


def test_models_oversize_multibyte_str_counted_in_bytes():
    text = '{"v":1,"detail":"' + "é" * (MAX_PAYLOAD_BYTES // 2) + '"}'
    assert len(text) < MAX_PAYLOAD_BYTES < len(text.encode())
    assert "larger than" in str(rejected(Channel.CMD_REPLY, text))


def test_models_deep_nesting_inside_strings_is_fine():
    details = {"note": "[" * 200 + "{" * 200}
    event = Event(seq=3, ts=T0, type="alarm", details=details)
    assert decode(Channel.EVENT, encode(event)) == event


def test_models_deep_nesting_beyond_recursion_limit_rejected():
    payload = b"[" * 100_000
    assert "larger than" in str(rejected(Channel.EVENT, payload))
    payload = b"[" * 60_000
    assert "nested deeper" in str(rejected(Channel.EVENT, payload))


HOSTILE = [
    '"' + '\\"' * 30_000,  # unterminated string full of escaped quotes
    '{"a":"' + '\\"' * 30_000,
    '"\\' * 30_000,
    '"' * 65_000,
    '["' * 20_000,
    "{" * 60_000,
    '{"a":' + "[1," * 16_000,
    "[" + '"",' * 20_000 + "1]",
    '{"v":1,"details":{' + ",".join(f'"k{i}":{i}' for i in range(5_000)) + "}}",
    '{"v":1,"readings":{' + ",".join(f'"k{i}":{i}' for i in range(5_000)) + "}}",
]


@pytest.mark.timeout(20)  # a quadratic scan once took ~50 s on one of these; now one pass
@pytest.mark.parametrize("payload", HOSTILE, ids=range(len(HOSTILE)))
def test_models_hostile_payloads_rejected(payload):
    assert len(payload.encode()) <= MAX_PAYLOAD_BYTES
    for channel in (Channel.EVENT, Channel.TELEMETRY):
        rejected(channel, payload)


def test_models_lone_surrogate_rejected():
    payload = with_changes(Channel.CMD_REPLY, detail="\\ud800").replace("\\\\ud800", "\\ud800")
    error = rejected(Channel.CMD_REPLY, payload)
    assert error.field == "detail"
    with pytest.raises(ProtocolError):
        decode(Channel.CMD_REPLY, '{"v":1,"id":"x","status":"done","ts":"2025-03-14T22:00:00Z",'
                                  '"detail":"\ud800"}')


def test_models_decode_with_unknown_channel_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        decode("nope", b"{}")


def test_models_decode_with_non_bytes_payload():
    with pytest.raises(ProtocolError):
        decode(Channel.ACK, 12345)  # type: ignore[arg-type]


def test_models_decode_with_non_model_class_is_a_type_error():
    with pytest.raises(TypeError):
        decode(dict, b"{}")  # type: ignore[arg-type]


# ---------------------------------------------------------------- field problems

NAIVE = "2025-03-14T22:00:00"

FIELD_CASES = [
    # channel, changes, expected field, reason fragment
    (Channel.STATUS, {"bogus": 1}, "bogus", "unknown field"),
    (Channel.STATUS, {"online": DELETE}, "online", "required field missing"),
    (Channel.STATUS, {"online": 1}, "online", "boolean"),
    (Channel.STATUS, {"online": "true"}, "online", "boolean"),
    (Channel.STATUS, {"fw": ""}, "fw", "at least 1"),
    (Channel.STATUS, {"fw": "1.0 beta"}, "fw", "must match"),
    (Channel.STATUS, {"fw": 1}, "fw", "string"),
    (Channel.STATUS, {"config_version": -1}, "config_version", "greater than or equal to 0"),
    (Channel.STATUS, {"dropped": -1}, "dropped", "greater than or equal"),
    (Channel.STATUS, {"backlog": 1.5}, "backlog", "integer"),
    (Channel.STATUS, {"app": "aquarium"}, "app", "irrigation"),
    (Channel.STATUS, {"outputs": {"zone1": 1}}, "outputs.zone1", "boolean"),
    (Channel.STATUS, {"outputs": {"bad key": True}}, "outputs.bad key", "bad key: must match"),
    (Channel.STATUS, {"outputs": []}, "outputs", "dictionary"),
    (Channel.STATUS, {"ts": NAIVE}, "ts", "offset"),
    (Channel.STATUS, {"ts": "2025-03-14"}, "ts", "offset"),
    (Channel.STATUS, {"ts": 1741989600}, "ts", "timestamp"),
    (Channel.STATUS, {"ts": "1741989600"}, "ts", "offset"),
    (Channel.STATUS, {"ts": "2025-02-30T00:00:00Z"}, "ts", "datetime"),
    (Channel.STATUS, {"ts": "٢٠٢٥-03-14T22:00:00Z"}, "ts", "offset"),
    (Channel.STATUS, {"ts": "2025-03-14T22:00:00Z\n"}, "ts", "offset"),
    (Channel.STATUS, {"outputs": {"zone1\n": True}}, "outputs.zone1\n", "bad key"),
    (Channel.TELEMETRY, {"seq": 0}, "seq", "greater than or equal to 1"),
    (Channel.TELEMETRY, {"seq": 1.0}, "seq", "integer"),
    (Channel.TELEMETRY, {"seq": "5"}, "seq", "integer"),
    (Channel.TELEMETRY, {"seq": True}, "seq", "integer"),
    (Channel.TELEMETRY, {"seq": 2**53}, "seq", "less than or equal"),
    (Channel.TELEMETRY, {"seq": DELETE}, "seq", "required field missing"),
    (Channel.TELEMETRY, {"readings": {"x": "wet"}}, "readings.x", "number"),
    (Channel.TELEMETRY, {"readings": {"x": [1]}}, "readings.x", "number"),
    (Channel.TELEMETRY, {"readings": {"x": 2**60}}, "readings.x", "out of range"),
    (Channel.TELEMETRY, {"readings": {"": 1}}, "readings.", "bad key: must match"),
    (Channel.TELEMETRY, {"readings": {f"k{i}": 1 for i in range(300)}}, "readings",
     "at most 256"),
    (Channel.EVENT, {"type": "exploded"}, "type", "run_started"),
    (Channel.EVENT, {"type": DELETE}, "type", "required"),
    (Channel.EVENT, {"details": []}, "details", "dictionary"),
    (Channel.EVENT, {"details": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": [1]}}}}}}}}},
     "details", "nested too deeply"),
    (Channel.EVENT, {"details": {"a": list(range(3000))}}, "details", "too many items"),
    (Channel.EVENT, {"details": {"a": [1, 2**60]}}, "details", "out of range"),
    (Channel.EVENT, {"details": {"a": [1, {"b": 2**60}]}}, "details", "at a[1].b"),
    (Channel.CMD, {"id": ""}, "id", "must match"),
    (Channel.CMD, {"id": "has space"}, "id", "must match"),
    (Channel.CMD, {"id": "x" * 65}, "id", "must match"),
    (Channel.CMD, {"action": "self_destruct"}, "action", "run_zone"),
    (Channel.CMD, {"issued_at": NAIVE}, "issued_at", "offset"),
    (Channel.CMD, {"expires_at": "2025-03-14T22:00:00Z"}, "expires_at", "later than issued_at"),
    (Channel.CMD, {"expires_at": "2025-03-14T21:59:59Z"}, "expires_at", "later than issued_at"),
    (Channel.CMD, {"expires_at": "2025-03-22T22:00:01Z"}, "expires_at", "7 days"),
    (Channel.CMD, {"expires_at": DELETE}, "expires_at", "required"),
    (Channel.CMD, {"params": None}, "params", "dictionary"),
    (Channel.CMD_REPLY, {"status": "maybe"}, "status", "accepted"),
    (Channel.CMD_REPLY, {"detail": "x" * 501}, "detail", "500"),
    (Channel.CMD_REPLY, {"code": "it_went_fine"}, "code", "run_accepted"),
    (Channel.CMD_REPLY, {"params": {"zone": ["z1"]}}, "params", "string, number"),
    (Channel.CMD_REPLY, {"params": {"zone": {"name": "z1"}}}, "params", "string, number"),
    (Channel.CMD_REPLY, {"params": {"zone": "x" * 201}}, "params", "200"),
    (Channel.CMD_REPLY, {"params": {f"p{i}": i for i in range(21)}}, "params", "20"),
    (Channel.CMD_REPLY, {"clamped": {"field": "duration_s", "asked": 1}}, "clamped.allowed",
     "required"),
    (Channel.CMD_REPLY, {"clamped": {"field": "d", "asked": "1", "allowed": 1}},
     "clamped.asked", "number"),
    (Channel.CMD_REPLY, {"clamped": {"field": "d", "asked": True, "allowed": 1}},
     "clamped.asked", "number"),
    (Channel.ACK, {"seq": -1}, "seq", "greater than or equal to 0"),
    (Channel.ACK, {"ts": "2025-03-14T22:00:00+0800"}, "ts", "offset"),
    (Channel.CONFIG, {"version": 0}, "version", "greater than or equal to 1"),
    (Channel.CONFIG, {"body": DELETE}, "body", "required"),
    (Channel.CONFIG, {"body": "schedules"}, "body", "dictionary"),
    (Channel.CONFIG, {"body": {"a": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}}, "body",
     "nested too deeply"),
]


@pytest.mark.parametrize(("channel", "changes", "field", "reason"), FIELD_CASES,
                         ids=[f"{c.value}-{f}" for c, _, f, _ in FIELD_CASES])
def test_models_field_rejections_name_field_and_reason(channel, changes, field, reason):
    error = rejected(channel, with_changes(channel, **changes))
    assert error.field == field, str(error)
    assert reason in error.reason, str(error)
    assert f"{field}: " in str(error)


def cmd_payload(action, params, **extra):
    data = json.loads(encode(COMMAND_EXAMPLES["stop_all"]))
    data.update(action=action, params=params, **extra)
    return json.dumps(data)


PARAMS_CASES = [
    ("run_zone", {}, "params.zone", "required"),
    ("run_zone", {"zone": "z1"}, "params.duration_s", "required"),
    ("run_zone", {"zone": "z1", "duration_s": 0}, "params.duration_s", "greater than"),
    ("run_zone", {"zone": "z1", "duration_s": 9}, "params.duration_s", "greater than or equal to 10"),
    ("run_zone", {"zone": "z1", "duration_s": 86_401}, "params.duration_s", "less than"),
    ("run_zone", {"zone": "z1", "duration_s": 60.0}, "params.duration_s", "integer"),
    ("run_zone", {"zone": "z1", "duration_s": "60"}, "params.duration_s", "integer"),
    ("run_zone", {"zone": "z 1", "duration_s": 60}, "params.zone", "must match"),
    # the unit's own name pattern (its config's zones): lowercase, at most 32 characters
    ("run_zone", {"zone": "Zone1", "duration_s": 60}, "params.zone", "must match"),
    ("run_zone", {"zone": "zone.1", "duration_s": 60}, "params.zone", "must match"),
    ("feed_now", {"feeder": "f" * 33, "dose_g": 5}, "params.feeder", "must match"),
    ("run_zone", {"zone": "z1", "duration_s": 60, "dose_g": 1}, "params.dose_g", "unknown"),
    ("stop_all", {"zone": "z1"}, "params.zone", "unknown field"),
    ("resume", {"now": True}, "params.now", "unknown field"),
    ("skip_next", {"zone": "z1", "feeder": "f1"}, "params", "not both"),
    ("skip_next", {"zone": 5}, "params.zone", "string"),
    ("pause", {}, "params.until", "required"),
    ("pause", {"until": "2025-03-15T06:00:00"}, "params.until", "offset"),
    ("pause", {"until": "2025-03-14T21:00:00Z"}, "params", "later than issued_at"),
    ("pause", {"until": "2025-04-15T00:00:00Z"}, "params", "at most 31 days"),
    ("rain_delay", {"hours": -1}, "params.hours", "greater than or equal to 0"),
    ("rain_delay", {"hours": 168.5}, "params.hours", "less than or equal to 168"),
    ("rain_delay", {"hours": "24"}, "params.hours", "number"),
    ("feed_now", {"feeder": "f1"}, "params.dose_g", "required"),
    ("feed_now", {"feeder": "f1", "dose_g": 0}, "params.dose_g", "greater than or equal to 0.5"),
    ("feed_now", {"feeder": "f1", "dose_g": 0.4}, "params.dose_g", "greater than or equal to 0.5"),
    ("feed_now", {"feeder": "f1", "dose_g": -5}, "params.dose_g", "greater than or equal to 0.5"),
    ("feed_now", {"feeder": "f1", "dose_g": 100_001}, "params.dose_g", "less than"),
    ("feed_now", {"dose_g": 10}, "params.feeder", "required"),
    ("feed_now", [], "params", "dictionary"),
]


@pytest.mark.parametrize(("action", "params", "field", "reason"), PARAMS_CASES,
                         ids=[f"{a}-{f}" for a, _, f, _ in PARAMS_CASES])
def test_models_bad_params_per_action(action, params, field, reason):
    error = rejected(Channel.CMD, cmd_payload(action, params))
    assert error.field == field, str(error)
    assert reason in error.reason, str(error)


def test_models_params_of_another_action_rejected():
    error = rejected(Channel.CMD, cmd_payload("feed_now", {"zone": "z1", "duration_s": 60}))
    fields = {field for field, _ in error.problems}
    assert {"params.zone", "params.duration_s", "params.feeder", "params.dose_g"} <= fields


def test_models_bad_action_reports_action_first():
    error = rejected(Channel.CMD, cmd_payload("explode", {}))
    assert error.field == "action"


def test_models_outbox_dropped_details_validated():
    base = {"v": 1, "seq": 50, "ts": "2025-03-14T22:00:00Z", "type": "outbox_dropped"}
    cases = [
        ({}, "details", "at least one seq"),
        ({"seqs": [], "ranges": []}, "details", "at least one seq"),
        ({"seqs": [0]}, "details.seqs.0", "greater than or equal to 1"),
        ({"seqs": [50]}, "details", "lower than"),
        ({"ranges": [{"from": 10, "to": 60}]}, "details", "lower than"),
        ({"ranges": [{"from": 10, "to": 5}]}, "details.ranges.0", "'to'"),
        ({"ranges": [{"from": 1}]}, "details.ranges.0.to", "required"),
        ({"seqs": [1], "extra": 1}, "details.extra", "unknown field"),
        ({"seqs": list(range(1, 1002))}, "details.seqs", "at most 1000"),
    ]
    for details, field, reason in cases:
        payload = json.dumps({**base, "details": details})
        if "at most 1000" in reason:
            payload = json.dumps({**base, "seq": 5000, "details": details})
        error = rejected(Channel.EVENT, payload)
        assert error.field == field, (details, str(error))
        assert reason in error.reason, (details, str(error))


def test_models_error_lists_every_problem():
    error = rejected(Channel.TELEMETRY, b'{"v":1,"seq":0,"readings":{"a":"x"},"z":1}')
    fields = [field for field, _ in error.problems]
    assert fields == ["seq", "ts", "readings.a", "z"]
    assert "and 1 more" in str(error)


# ---------------------------------------------------------------- construction in code


@pytest.mark.parametrize(("model", "kwargs", "field"), [
    (Ack, {"seq": 1, "ts": datetime(2025, 3, 14, 22, 0)}, "ts"),
    (Ack, {"seq": 1, "ts": "2025-03-14T22:00:00Z", "v": 2}, "v"),
    (Telemetry, {"seq": 1, "ts": T0, "readings": {"x": float("nan")}}, "readings.x"),
    (Telemetry, {"seq": 1, "ts": T0, "readings": {"x": float("inf")}}, "readings.x"),
    (Telemetry, {"seq": 1, "ts": T0, "readings": {"x": -float("inf")}}, "readings.x"),
    (Event, {"seq": 1, "ts": T0, "type": "alarm", "details": {"x": float("nan")}}, "details"),
    (Event, {"seq": 1, "ts": T0, "type": "alarm", "details": {"x": (1, 2)}}, "details"),
    (Event, {"seq": 1, "ts": T0, "type": "alarm", "details": {1: 2}}, "details"),
    (Event, {"seq": 1, "ts": T0, "type": "alarm", "details": {"x": {"\ud800": 1}}}, "details"),
    (CommandReply, {"id": "a", "status": "done", "ts": T0, "clamped": {
        "field": "dose_g", "asked": float("inf"), "allowed": 1}}, "clamped.asked"),
    (Status, {"online": True, "fw": "1", "clock_synced": True, "ts": T0, "unknown": 1},
     "unknown"),
    (DesiredConfig, {"version": 1, "issued_at": T0, "body": {"a": float("-inf")}}, "body"),
    (Command, {"id": "a", "issued_at": T0, "expires_at": T0, "action": "stop_all"},
     "expires_at"),
    (Command, {"id": "a", "issued_at": T0, "expires_at": T0 - timedelta(seconds=1),
               "action": "stop_all"}, "expires_at"),
])
def test_models_construction_rejections(model, kwargs, field):
    with pytest.raises(ValueError) as excinfo:
        model(**kwargs)
    fields = [".".join(map(str, e["loc"])) for e in excinfo.value.errors()]
    assert any(f == field or f.startswith(field + ".") for f in fields), fields


def test_models_encode_refuses_oversize():
    config = DesiredConfig(version=1, issued_at=T0, body={"blob": "x" * MAX_PAYLOAD_BYTES})
    with pytest.raises(PayloadError, match="larger than"):
        encode(config)


def test_models_encode_refuses_non_models():
    with pytest.raises(TypeError):
        encode({"v": 1})  # type: ignore[arg-type]


def test_models_timestamp_overflow_is_a_validation_error():
    # year 1 with a positive offset cannot be expressed in UTC
    payload = b'{"v":1,"seq":1,"ts":"0001-01-01T00:00:00+08:00"}'
    error = rejected(Channel.ACK, payload)
    assert error.field == "ts"
