"""Topic builders, filters and the parser of the smartcity/v1 tree."""

import pytest

from protocol import (
    CHANNEL_DIRECTION,
    CHANNEL_QOS,
    CHANNEL_RETAIN,
    ROOT,
    Channel,
    Direction,
    ProtocolError,
    TopicError,
    TopicParts,
    all_filter,
    device_filter,
    opd_filter,
    parse_topic,
    shared,
    topic,
    validate_id,
)


def test_topics_root_and_channel_values():
    assert ROOT == "smartcity/v1"
    assert [c.value for c in Channel] == [
        "status", "telemetry", "event", "cmd", "cmd/reply", "ack", "config"]


@pytest.mark.parametrize("channel", list(Channel))
def test_topics_build_and_parse_round_trip(channel):
    built = topic("dlh", "taman-bekapai-01", channel)
    assert built == f"smartcity/v1/dlh/taman-bekapai-01/{channel.value}"
    parts = parse_topic(built)
    assert parts == TopicParts("dlh", "taman-bekapai-01", channel)
    assert parts.topic == built
    assert isinstance(parts.channel, Channel)


def test_topics_builder_accepts_channel_strings():
    assert topic("dp3", "tambak_2", "cmd/reply") == "smartcity/v1/dp3/tambak_2/cmd/reply"


def test_topics_filters():
    assert device_filter("dlh", "u1", Channel.CMD) == "smartcity/v1/dlh/u1/cmd"
    assert opd_filter("dp3", Channel.EVENT) == "smartcity/v1/dp3/+/event"
    assert all_filter(Channel.TELEMETRY) == "smartcity/v1/+/+/telemetry"
    assert all_filter("cmd/reply") == "smartcity/v1/+/+/cmd/reply"


def test_topics_shared_subscription():
    assert shared("ingest", all_filter("event")) == "$share/ingest/smartcity/v1/+/+/event"


@pytest.mark.parametrize(("group", "topic_filter"), [
    ("", "smartcity/v1/+/+/event"),
    ("a/b", "smartcity/v1/+/+/event"),
    ("g+", "smartcity/v1/+/+/event"),
    ("g#", "smartcity/v1/+/+/event"),
    ("ingest", "other/+/event"),
    ("ingest", "$share/x/smartcity/v1/+/+/event"),
])
def test_topics_shared_rejects_bad_group_or_filter(group, topic_filter):
    with pytest.raises(TopicError):
        shared(group, topic_filter)


@pytest.mark.parametrize("good", ["a", "0", "dlh", "taman-bekapai-01", "a_b", "x" * 32])
def test_topics_valid_ids(good):
    assert validate_id(good) == good


@pytest.mark.parametrize("bad", [
    "", "x" * 33, "DLH", "Taman", "-lead", "_lead", "a/b", "a+", "+", "#", "a#", "$sys",
    "with space", "dot.ted", "ünï", "tab\t", "nul\x00", 5, None,
])
def test_topics_bad_ids_rejected(bad):
    with pytest.raises(TopicError) as excinfo:
        topic("dlh", bad, Channel.STATUS)
    assert excinfo.value.field == "device"
    with pytest.raises(TopicError) as excinfo:
        topic(bad, "unit1", Channel.STATUS)
    assert excinfo.value.field == "opd"


@pytest.mark.parametrize("bad_channel", ["", "reply", "cmd/", "telemetry/extra", "+", "#", 3])
def test_topics_unknown_channel_rejected(bad_channel):
    with pytest.raises(TopicError) as excinfo:
        topic("dlh", "u1", bad_channel)
    assert excinfo.value.field == "channel"
    with pytest.raises(TopicError):
        all_filter(bad_channel)


@pytest.mark.parametrize("bad", [
    "",
    "smartcity/v1",
    "smartcity/v1/",
    "smartcity/v1/dlh",
    "smartcity/v1/dlh/u1",
    "smartcity/v1/dlh/u1/",
    "smartcity/v2/dlh/u1/status",
    "smartcity/v1/dlh/u1/status/extra",
    "smartcity/v1/dlh/u1/cmd/reply/extra",
    "smartcity/v1/dlh/u1/cmd/",
    "smartcity/v1/dlh//status",
    "smartcity/v1//u1/status",
    "smartcity/v1/+/+/telemetry",
    "smartcity/v1/dlh/u1/#",
    "smartcity/v1/dlh/#",
    "smartcity/v1/dlh/u+/status",
    "smartcity/v1/DLH/u1/status",
    "/smartcity/v1/dlh/u1/status",
    "smartcity/v1/dlh/u1/status ",
    " smartcity/v1/dlh/u1/status",
    "$share/g/smartcity/v1/dlh/u1/status",
    "$SYS/broker/uptime",
    "smartcity/v1/dlh/u1/unknown",
])
def test_topics_parse_rejects(bad):
    with pytest.raises(TopicError):
        parse_topic(bad)


@pytest.mark.parametrize("bad", [None, b"smartcity/v1/dlh/u1/status", 42])
def test_topics_parse_rejects_non_strings(bad):
    with pytest.raises(TopicError):
        parse_topic(bad)


def test_topics_errors_are_value_errors_with_a_reason():
    with pytest.raises(ValueError, match="not a valid id") as excinfo:
        parse_topic("smartcity/v1/dlh/Bad/status")
    assert isinstance(excinfo.value, ProtocolError)
    assert excinfo.value.kind == "topic"
    assert "device" in str(excinfo.value)


def test_topics_qos_and_retain_table():
    assert all(CHANNEL_QOS[c] == 1 for c in Channel)
    assert CHANNEL_RETAIN == {
        Channel.STATUS: True,
        Channel.TELEMETRY: False,
        Channel.EVENT: False,
        Channel.CMD: False,
        Channel.CMD_REPLY: False,
        Channel.ACK: False,
        Channel.CONFIG: True,
    }


def test_topics_tables_are_read_only():
    with pytest.raises(TypeError):
        CHANNEL_RETAIN[Channel.CMD] = True  # type: ignore[index]


def test_topics_directions():
    up = {c for c, d in CHANNEL_DIRECTION.items() if d is Direction.UNIT_TO_CONTROLLER}
    assert up == {Channel.STATUS, Channel.TELEMETRY, Channel.EVENT, Channel.CMD_REPLY}
    assert set(CHANNEL_DIRECTION) == set(Channel)
