"""Property tests: decode() never fails with anything but ProtocolError, and every valid
model round-trips exactly.

Example counts are modest by default; HYPOTHESIS_PROFILE=long (tests/protocol/conftest.py)
runs 100 000 examples per test.
"""

import json
import os
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    COMMAND_ID_PATTERN,
    ID_PATTERN,
    MAX_INT,
    MODELS_BY_CHANNEL,
    NAME_PATTERN,
    PARAMS_BY_ACTION,
    Ack,
    Channel,
    Command,
    CommandAction,
    CommandReply,
    DesiredConfig,
    Event,
    EventType,
    ProtocolError,
    ReplyCode,
    Status,
    Telemetry,
    channel_of,
    decode,
    encode,
)
from protocol.examples import COMMAND_EXAMPLES, EVENT_EXAMPLES, EXAMPLES

_LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"


def _fast(max_examples):
    """Modest example counts, unless the long profile is loaded."""
    return settings(
        max_examples=settings.default.max_examples if _LONG else max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


CHANNELS = list(Channel)

# ---------------------------------------------------------------- arbitrary input

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # includes NaN and +-Infinity
    | st.text(max_size=20)
    | st.sampled_from(["2025-03-14T22:00:00Z", "2025-03-14T22:00:00", "2025-03-15T06:00:00+08:00",
                       "zone1", "run_zone", "outbox_dropped", "", "\x00", "done"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=12,
)


def _field_names(model):
    return [field.alias or name for name, field in model.model_fields.items()]


PARAM_NAMES = sorted({n for model in PARAMS_BY_ACTION.values() for n in _field_names(model)})
DROPPED_NAMES = ["seqs", "ranges", "reason", "from", "to"]


TIMESTAMP_TEXTS = st.sampled_from([
    "2025-03-14T22:00:00Z", "2025-03-14T22:05:00Z", "2025-03-15T06:00:00+08:00",
    "2025-03-14T22:00:00.123456Z", "2025-03-14T22:00:00", "1970-01-01T00:00:00Z"])
SMALL_INTS = st.integers(min_value=-2, max_value=10**6)
NAME_TEXTS = st.sampled_from(["zone1", "feeder1", "moisture_pct.zone1", "c-7f3a9e", "0.1.0",
                              "bad name", ""])
SPECIFIC = {
    "v": st.sampled_from([1, 1, 1, 1, 1, 2, 0, "1", True, 1.0]),
    "action": st.sampled_from([a.value for a in CommandAction] + ["nope"]),
    "type": st.sampled_from([t.value for t in EventType] + ["nope"]),
    "status": st.sampled_from(["accepted", "done", "maybe"]),
    "app": st.sampled_from(["irrigation", "fish_feeder", None, "x"]),
    "params": st.dictionaries(st.sampled_from(PARAM_NAMES),
                              json_values | SMALL_INTS | NAME_TEXTS | TIMESTAMP_TEXTS,
                              max_size=3),
    "details": st.dictionaries(st.sampled_from(DROPPED_NAMES + ["zone"]),
                               json_values | st.lists(SMALL_INTS, max_size=3), max_size=3),
    "body": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    "readings": st.dictionaries(NAME_TEXTS, scalars, max_size=3),
    "outputs": st.dictionaries(NAME_TEXTS, st.booleans() | scalars, max_size=3),
    "clamped": st.none() | st.fixed_dictionaries(
        {"field": NAME_TEXTS, "asked": SMALL_INTS | st.floats(), "allowed": scalars}),
    "detail": st.text(max_size=20),
}
for _name in ("ts", "issued_at", "expires_at", "until"):
    SPECIFIC[_name] = TIMESTAMP_TEXTS
for _name in ("seq", "version", "dropped", "backlog", "config_version"):
    SPECIFIC[_name] = SMALL_INTS
for _name in ("online", "clock_synced"):
    SPECIFIC[_name] = st.booleans()
for _name in ("fw", "id"):
    SPECIFIC[_name] = NAME_TEXTS


def _plausible(name):
    """Mostly values of the right shape for a field name, sometimes arbitrary JSON."""
    specific = SPECIFIC.get(name)
    if specific is None:
        return json_values
    return st.one_of(specific, specific, specific, json_values)


def _dicts_from_fields(model):
    """Every field with a plausible value, a few dropped, maybe an unknown one added."""
    names = [name for name in _field_names(model) if name != "v"]
    known = st.fixed_dictionaries(
        {"v": st.just(1), **{name: _plausible(name) for name in names}})
    dropped = st.sets(st.sampled_from(names), max_size=1)
    unknown = st.dictionaries(st.text(max_size=6), json_values, max_size=1)

    def combine(parts):
        known_values, drop, extra = parts
        return {**extra, **{k: v for k, v in known_values.items() if k not in drop}}

    return st.tuples(known, dropped, unknown).map(combine)


def _mutated_example(channel):
    base = json.loads(encode(EXAMPLES[channel]))
    values = json_values | _plausible("params") | _plausible("details")

    def mutate(change):
        key, drop, value = change
        copy = dict(base)
        if drop:
            copy.pop(key, None)
        else:
            copy[key] = value
        return copy

    return st.tuples(st.sampled_from(sorted(base)), st.booleans(), values).map(mutate)


FIELD_DICTS = st.one_of([
    st.tuples(st.just(c), _dicts_from_fields(MODELS_BY_CHANNEL[c])) for c in CHANNELS])
MUTATED = st.one_of([st.tuples(st.just(c), _mutated_example(c)) for c in CHANNELS])


def _to_bytes(value):
    """JSON text of any value, NaN/Infinity included (they must be refused)."""
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def check_decode(channel, data):
    """The one property: a valid model of the channel, or a ProtocolError."""
    try:
        message = decode(channel, data)
    except ProtocolError:
        return
    assert isinstance(message, MODELS_BY_CHANNEL[channel])
    # whatever decodes must also re-encode and decode to the same model
    assert decode(channel, encode(message)) == message


channels = st.sampled_from(CHANNELS)


@_fast(300)
@given(channel=channels, data=st.binary(max_size=400))
def test_models_properties_arbitrary_bytes(channel, data):
    check_decode(channel, data)


@_fast(200)
@given(channel=channels, text=st.text(max_size=200))
def test_models_properties_arbitrary_text(channel, text):
    check_decode(channel, text)


@_fast(150)
@given(channel=channels, value=json_values)
def test_models_properties_arbitrary_json(channel, value):
    check_decode(channel, _to_bytes(value))


@_fast(150)
@given(case=FIELD_DICTS)
def test_models_properties_dicts_with_real_field_names(case):
    channel, value = case
    check_decode(channel, _to_bytes(value))


@_fast(200)
@given(case=MUTATED)
def test_models_properties_mutated_examples(case):
    channel, value = case
    check_decode(channel, _to_bytes(value))


COMMAND_BASES = {action: json.loads(encode(cmd)) for action, cmd in COMMAND_EXAMPLES.items()}


@_fast(100)
@given(action=st.sampled_from(list(CommandAction)),
       params=st.dictionaries(st.sampled_from(PARAM_NAMES), json_values, max_size=4))
def test_models_properties_command_params(action, params):
    check_decode(Channel.CMD, _to_bytes({**COMMAND_BASES[action], "params": params}))


DROPPED_BASE = json.loads(encode(EVENT_EXAMPLES[-1]))


@_fast(100)
@given(details=st.dictionaries(st.sampled_from(DROPPED_NAMES), json_values, max_size=3)
       | st.fixed_dictionaries({"ranges": st.lists(st.dictionaries(
           st.sampled_from(["from", "to"]), json_values | st.integers(0, 3000)), max_size=3)}),
       seq=st.integers(-1, 5000))
def test_models_properties_outbox_dropped_details(details, seq):
    check_decode(Channel.EVENT, _to_bytes({**DROPPED_BASE, "seq": seq, "details": details}))


# ---------------------------------------------------------------- valid models

timestamps = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1),
    timezones=st.just(UTC) | st.timezones(),
)
names = st.from_regex(NAME_PATTERN, fullmatch=True)
idents = st.from_regex(ID_PATTERN, fullmatch=True)
command_ids = st.from_regex(COMMAND_ID_PATTERN, fullmatch=True)
safe_ints = st.integers(min_value=-MAX_INT, max_value=MAX_INT)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
seqs = st.integers(min_value=1, max_value=MAX_INT)
counts = st.integers(min_value=0, max_value=MAX_INT)
outputs = st.dictionaries(idents, st.booleans(), max_size=8)
valid_json = st.recursive(
    st.none() | st.booleans() | safe_ints | finite_floats | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=8), valid_json, max_size=5)

statuses = st.builds(
    Status, online=st.booleans(), fw=st.from_regex(r"^[!-~]{1,64}$", fullmatch=True),
    config_version=st.none() | counts, clock_synced=st.booleans(), outputs=outputs,
    ts=timestamps, app=st.sampled_from([None, "irrigation", "fish_feeder"]),
    dropped=counts, backlog=counts,
)
telemetries = st.builds(
    Telemetry, seq=seqs, ts=timestamps, outputs=outputs,
    readings=st.dictionaries(names, st.none() | st.booleans() | safe_ints | finite_floats,
                             max_size=10),
)
plain_events = st.builds(
    Event, seq=seqs, ts=timestamps, details=json_objects,
    type=st.sampled_from([t for t in EventType if t is not EventType.OUTBOX_DROPPED]),
)


@st.composite
def dropped_events(draw):
    seq = draw(st.integers(min_value=2, max_value=MAX_INT))
    below = st.integers(min_value=1, max_value=seq - 1)
    singles = draw(st.lists(below, max_size=5))
    ranges = []
    for start in draw(st.lists(below, max_size=3)):
        ranges.append({"from": start, "to": draw(st.integers(start, seq - 1))})
    if not singles and not ranges:
        singles = [draw(below)]
    return Event(seq=seq, ts=draw(timestamps), type=EventType.OUTBOX_DROPPED,
                 details={"seqs": singles, "ranges": ranges,
                          "reason": draw(st.text(max_size=30))})


def _params(action, issued_at):
    if action is CommandAction.RUN_ZONE:
        return st.fixed_dictionaries({"zone": idents, "duration_s": st.integers(10, 86_400)})
    if action is CommandAction.SKIP_NEXT:
        return st.sampled_from([{}, {"zone": "zone1"}, {"feeder": "f1"}, {"zone": None}])
    if action is CommandAction.PAUSE:
        return st.timedeltas(timedelta(microseconds=1), timedelta(days=31)).map(
            lambda d: {"until": issued_at + d})
    if action is CommandAction.RAIN_DELAY:
        return st.fixed_dictionaries({"hours": st.floats(min_value=0, max_value=168,
                                                         exclude_min=True)})
    if action is CommandAction.FEED_NOW:
        return st.fixed_dictionaries({
            "feeder": idents,
            "dose_g": st.floats(min_value=0.5, max_value=100_000)
            | st.integers(1, 100_000)})
    if action is CommandAction.CLEAR_FAULT:
        return st.fixed_dictionaries({"feeder": idents})
    if action is CommandAction.STOP_ZONE:
        return st.fixed_dictionaries({"zone": idents})
    if action is CommandAction.UPDATE:
        return st.fixed_dictionaries({
            "version": st.from_regex(r"^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$", fullmatch=True),
            "url": st.sampled_from(["http://10.0.0.1:8080/api/v1/releases/0.3.0/bundle",
                                    "https://c.example/b?x=1"]),
            "sha256": st.from_regex(r"^[0-9a-f]{64}$", fullmatch=True),
            "size": st.integers(1, 10_000_000)})
    return st.just({})


@st.composite
def commands(draw):
    issued_at = draw(timestamps)
    lifetime = draw(st.timedeltas(timedelta(microseconds=1), timedelta(days=7)))
    action = draw(st.sampled_from(list(CommandAction)))
    return Command(id=draw(command_ids), issued_at=issued_at,
                   expires_at=issued_at + lifetime, action=action,
                   params=draw(_params(action, issued_at)))


numbers = safe_ints | finite_floats
replies = st.builds(
    CommandReply, id=command_ids, status=st.sampled_from(["accepted", "rejected", "expired",
                                                          "duplicate", "done", "failed"]),
    detail=st.text(max_size=500), ts=timestamps,
    clamped=st.none() | st.fixed_dictionaries({"field": names, "asked": numbers,
                                               "allowed": numbers}),
    code=st.none() | st.sampled_from(list(ReplyCode)),
    params=st.dictionaries(names, st.none() | st.booleans() | numbers | st.text(max_size=200),
                           max_size=20),
)
acks = st.builds(Ack, seq=counts, ts=timestamps)
configs = st.builds(DesiredConfig, version=seqs, issued_at=timestamps, body=json_objects)

valid_messages = (statuses | telemetries | plain_events | dropped_events() | commands()
                  | replies | acks | configs)


@_fast(150)
@given(message=valid_messages)
def test_models_properties_valid_models_round_trip(message):
    data = encode(message)
    again = decode(channel_of(message), data)
    assert again == message
    assert type(again) is type(message)
    assert encode(again) == data
    assert decode(channel_of(message), data.decode("utf-8")) == message
