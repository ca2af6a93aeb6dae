"""The smaller parts of the contract: event details and alarm codes, sequence ranges, the
MQTT client set-up, identifier patterns and time formats shared by units and controller."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from protocol.errors import PayloadError
from protocol.events import DETAILS_BY_TYPE, Alarm, AlarmCode, details_of
from protocol.examples import EVENT_EXAMPLES
from protocol.ids import ID_PATTERN
from protocol.kinds import KINDS
from protocol.models import EventType
from protocol.mqtt import make_client
from protocol.seqranges import merge_ranges, runs
from protocol.times import parse_hhmm, parse_start


def test_events_every_type_has_a_details_model():
    assert set(DETAILS_BY_TYPE) == set(EventType)


def test_events_documented_examples_fit_their_details_models():
    for event in EVENT_EXAMPLES:
        details_of(event.type, event.details)
    alarm = next(e for e in EVENT_EXAMPLES if e.type is EventType.ALARM)
    # the controller reads "code" (docs/protocol.md once said "kind")
    assert details_of(alarm.type, alarm.details).code is AlarmCode.NO_FLOW


@pytest.mark.parametrize("details", [{"kind": "no_flow"}, {"code": "bogus"},
                                     {"code": "leak", "zone": "Zone 1"}])
def test_events_alarm_details_refused_without_a_known_code(details):
    with pytest.raises(PayloadError) as excinfo:
        details_of("alarm", details)
    assert excinfo.value.field.startswith("details.")


def test_events_details_keep_extra_facts():
    alarm = details_of("alarm", {"code": "leak", "message": "3 L/min", "flow_lpm": 3.0})
    assert isinstance(alarm, Alarm) and alarm.model_extra == {"flow_lpm": 3.0}


def test_seqranges_merge_overlapping_and_adjacent():
    assert merge_ranges([(4, 6), (1, 1), (2, 3), (10, 12), (11, 11)]) == [(1, 6), (10, 12)]
    assert runs([3, 1, 2, 2, 7]) == [(1, 3), (7, 7)]
    assert merge_ranges([]) == []


@pytest.mark.parametrize(("version", "protocol", "persistent"), [
    ("5", MQTTProtocolVersion.MQTTv5, None), ("3.1.1", MQTTProtocolVersion.MQTTv311, False)])
def test_mqtt_make_client_versions_and_login(version, protocol, persistent):
    broker = SimpleNamespace(host="127.0.0.1", port=1883, tls=False, ca_file=None,
                             username="unit-1", mqtt_version=version)
    client = make_client(broker, client_id="unit-1", password="s3cret", reconnect_s=(1, 30))
    assert client.protocol == protocol
    assert client._client_id == b"unit-1"
    assert client._username == b"unit-1" and client._password == b"s3cret"
    assert (client._reconnect_min_delay, client._reconnect_max_delay) == (1, 30)
    if persistent is False:
        assert client._clean_session is False
    anonymous = make_client(broker, client_id="ctl", login=False)
    assert anonymous._username is None


def test_ids_one_pattern_for_config_commands_and_topics():
    from edge.config import Ident as EdgeIdent
    from protocol.topics import ID_PATTERN as TOPIC_ID

    assert TOPIC_ID == ID_PATTERN
    assert EdgeIdent.__metadata__[-1].pattern == ID_PATTERN


def test_times_one_format_for_both_kinds():
    assert parse_hhmm("05:30") == parse_start("05:30").offset_s == 5 * 3600 + 30 * 60
    for bad in ("5:30", "24:00", " 05:30"):
        with pytest.raises(ValueError):
            parse_hhmm(bad)
        with pytest.raises(ValueError):
            parse_start(bad)


def test_kinds_registry_schedules_and_actions():
    assert set(KINDS) == {"irrigation", "fish_feeder"}
    assert KINDS["irrigation"].schedule.__name__ == "IrrigationProgramConfig"
    assert KINDS["fish_feeder"].schedule.__name__ == "RemoteBody"
    assert not KINDS["irrigation"].actions & {"feed_now", "clear_fault"}
    assert not KINDS["fish_feeder"].actions & {"run_zone", "rain_delay"}
