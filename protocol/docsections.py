"""The sections of docs/protocol.md: the prose, with the tables and examples that
:mod:`protocol.doctables` makes from the code. Used by :mod:`protocol.docgen`."""

from __future__ import annotations

import json
from typing import Any

from protocol import codec, models, topics
from protocol.doctables import (
    enum_table,
    field_type,
    fields_table,
    json_block,
    models_tables,
    models_tables_many,
    plain,
    table,
)
from protocol.errors import ProtocolError
from protocol.events import (
    ALARM_CODE_DESCRIPTIONS,
    ALARM_SEVERITY,
    CLEAR_BY_COMMAND,
    CLEARED_BY,
    CONTROLLER_CODES,
    DETAILS_BY_TYPE,
    UNIT_CLEARS,
)
from protocol.examples import COMMAND_EXAMPLES, EVENT_EXAMPLES, EXAMPLES, LAST_WILL_EXAMPLE
from protocol.kinds import KINDS
from protocol.models import (
    COMMAND_ACTION_DESCRIPTIONS,
    EVENT_TYPE_DESCRIPTIONS,
    PARAMS_BY_ACTION,
    REPLY_CODES,
    REPLY_STATUS_DESCRIPTIONS,
)
from protocol.topics import CHANNEL_DIRECTION, CHANNEL_QOS, CHANNEL_RETAIN, ROOT, Channel

__all__ = ["command_extra", "config_extra", "delivery_section", "encoding_section",
           "errors_section", "event_extra", "intro", "payload_section", "reply_extra",
           "status_extra", "topics_section"]

_CHANNEL_SUMMARY = {
    Channel.STATUS: "What the unit is now; also its Last Will.",
    Channel.TELEMETRY: "Periodic sensor readings and output states.",
    Channel.EVENT: "Things that happened: runs, feedings, alarms, config, drops.",
    Channel.CMD: "An instruction for one unit.",
    Channel.CMD_REPLY: "The unit's answer to one command.",
    Channel.ACK: "Up to which seq the controller has stored everything.",
    Channel.CONFIG: "Desired schedules and rules, with a version.",
}


def intro() -> str:
    return f"""# Wire protocol (MQTT)

How units (park watering, pond feeding) and the controller talk over MQTT: the topics,
who publishes what, the JSON payloads, and the rules that keep data from being lost,
doubled, or acted on when stale.

This file is generated from the `protocol/` package, which both the units and the
controller import. Do not edit it by hand: change the code, then run
`python -m protocol.docgen --write`. The test suite runs
`python -m protocol.docgen --check`, which fails when this file and the code differ.

Schema version: `v` = {models.SCHEMA_VERSION}. Topic root: `{ROOT}`."""


def topics_section() -> str:
    rows = []
    for channel in Channel:
        rows.append([
            f"`{channel.value}`",
            CHANNEL_DIRECTION[channel].value,
            str(CHANNEL_QOS[channel]),
            "yes" if CHANNEL_RETAIN[channel] else "never" if channel in (
                Channel.CMD, Channel.EVENT) else "no",
            f"[{models.MODELS_BY_CHANNEL[channel].__name__}](#{_anchor(channel)})",
            _CHANNEL_SUMMARY[channel],
        ])
    channels = table(["channel", "direction", "QoS", "retained", "payload", "what"], rows)
    example = topics.topic("dlh", "taman-bekapai-01", Channel.TELEMETRY)
    reply = topics.topic("dp3", "tambak-manggar-02", Channel.CMD_REPLY)
    return f"""## Topics

Every topic is `{ROOT}/{{opd}}/{{device}}/{{channel}}`:

- `{example}`
- `{reply}`

`opd` is the department (`dlh`, `dp3`, ...) and `device` the unit. Both are ids of 1 to
32 characters from lowercase `a-z`, digits, `-` and `_`, starting with a letter or digit
(regular expression `{topics.ID_PATTERN}`). So an id never holds `/`, `+`, `#`, `$`,
spaces or capitals. A topic with another root, a missing or extra level, an empty level,
a wildcard or an unknown channel is refused.

{channels}

All channels use QoS 1 (at least once). A message can therefore arrive twice; telemetry
and events are de-duplicated by `(device, seq)`, commands by `id`, config by `version`.

Why `cmd` and `event` are never retained: the broker hands a retained message to every
new subscriber. A retained command would run again each time a unit reconnects (a valve
opening by itself, "ghost switching"), and a retained event would be stored twice.
`status` and `config` are retained on purpose: a controller that starts learns every
unit's last state at once, and a unit that reconnects gets its desired config at once.

### Subscriptions

| who | subscribes to |
|---|---|
| a unit | its own `cmd`, `ack` and `config`: `{topics.device_filter("dlh", "taman-bekapai-01", Channel.CMD)}`, and the same with `ack` and `config` |
| the controller | `{topics.all_filter(Channel.STATUS)}`, and the same for `telemetry`, `event`, `cmd/reply` |
| a tool watching one OPD | e.g. `{topics.opd_filter("dp3", Channel.EVENT)}` |

Note that `+/+/cmd` does not match `cmd/reply`, and the other way round.

To spread ingest over several controller workers (MQTT 5), each worker subscribes to the
same shared subscription, e.g. `{topics.shared("ingest", topics.all_filter(Channel.TELEMETRY))}`;
the broker gives each message to one worker of the group. Storage by `(device, seq)`
keeps this safe when a message is redelivered to another worker.

The broker's access list follows the direction column: a unit may publish only to its
own `status`, `telemetry`, `event` and `cmd/reply`, and read only its own `cmd`, `ack`
and `config`. The controller also checks that the device in a topic is registered under
that OPD."""


def encoding_section() -> str:
    return f"""## Encoding

- Each payload is one JSON object in UTF-8, written compactly (no spaces). The examples
  below are indented only for reading.
- Each payload has `"v": {models.SCHEMA_VERSION}`, the schema version. A payload without
  `v`, or with another value, is refused.
- Unknown fields are refused, and so are missing required fields and wrong types.
  `"5"` is not a number, `1` is not `true`, `1.5` is not an integer.
- Timestamps are RFC 3339 strings with an offset, e.g. `2025-03-14T22:00:00Z`, with at
  most 6 decimals of seconds. Any offset is accepted and converted to UTC; a timestamp
  without an offset, a date alone, or a number of seconds is refused. The units write
  UTC (`Z`). Schedules inside `config` are in the site's local time (default
  Asia/Makassar, WITA); the timestamps of messages never are.
- Numbers must be finite (`NaN` and `Infinity` are refused) and integers are within
  +-{models.MAX_INT} (2^53 - 1).
- Names of outputs, sensors, zones and feeders (`zone1`, `moisture_pct.zone1`) are 1-64
  characters from `A-Za-z0-9_.:-`, starting with a letter, digit or `_`
  (`{models.NAME_PATTERN}`).
- A payload is at most {codec.MAX_PAYLOAD_BYTES} bytes (64 KiB) and nests at most
  {codec.MAX_JSON_DEPTH} levels. A key may not appear twice in one object.
- An empty payload on `status` or `config` is the broker's way of clearing a retained
  message. It is not a message: receivers skip it."""


def _anchor(channel: Channel) -> str:
    return "channel-" + channel.value.replace("/", "")


def payload_section(channel: Channel, extra: str = "") -> str:
    model = models.MODELS_BY_CHANNEL[channel]
    parts = [
        f'<a id="{_anchor(channel)}"></a>',
        f"### `{channel.value}`: {model.__name__}",
        plain(model.__doc__),
        fields_table(model),
        "Example:",
        json_block(EXAMPLES[channel]),
    ]
    if extra:
        parts.append(extra)
    return "\n\n".join(parts)


def status_extra() -> str:
    return f"""#### Last Will

When a unit connects it registers this Status as its MQTT Last Will, retained, on its
own `status` topic. If the connection is lost without a clean disconnect, the broker
publishes it, so every subscriber sees `online: false`. Its `ts` is the time the unit
connected (the will is written in advance), so the controller takes the time it received
the will as the time the unit went offline. `outputs` is empty because the unit's state
is then unknown: it may still be running a scheduled run on its own. On a clean shutdown
the unit publishes the same offline Status itself before disconnecting.

{json_block(LAST_WILL_EXAMPLE)}

#### `limits`

What commands and schedules may name on the unit, with its local limits. The controller
checks each schedule and command against the last `limits` a unit reported before it
stores or sends it (HTTP 422 naming the field when the unit would refuse it); before a
unit has reported, only the models of this document apply. Refusals that depend on the
unit's moment (an untrusted clock, water already used today) stay with the unit.

{models_tables(models.UnitLimits)}

#### `outlook`

What holds the unit's schedules back now and what starts next. A unit publishes its
status again as soon as its outlook changes (a pause, a rain delay, a skip, a start
passed, the clock trusted), so a dashboard shows "paused until ..." or the next start
from the unit's own word within a second or two, not at the next telemetry.

{models_tables(models.Outlook)}

`next_start_reason`, when there is no next start:

{enum_table("reason", dict(models.NEXT_START_REASON_DESCRIPTIONS))}"""


def event_extra() -> str:
    examples = "\n\n".join(json_block(e) for e in EVENT_EXAMPLES[1:])
    dropped = fields_table(models.OutboxDropped)
    span = fields_table(models.DroppedRange)
    return f"""#### Event types

{enum_table("type", dict(EVENT_TYPE_DESCRIPTIONS))}

A new event type is added to the code before any unit sends it: upgrade the controller
first, then the units. A controller refuses an event type it does not know.

#### Details of each event type

`details` holds the facts of its type (`protocol.events`). The fields below are the ones
both sides rely on; a unit may add more facts of its own, which are kept as they are.

| type | details |
|---|---|
{_details_rows()}

{models_tables_many(sorted(set(DETAILS_BY_TYPE.values()) - {models.OutboxDropped},
                        key=lambda m: m.__name__))}

#### Alarm codes

An alarm's `code` is one of these (a unit raises no other; add a code here first). The
controller keeps each alarm as a record (raised, acknowledged, cleared; see
docs/controller.md): its severity comes from this table, and "ends by" says how its
record is cleared: by the unit's `alarm_cleared` (or the code that ends it), by a
person's command (the unit then sends `alarm_cleared` with `cleared_by = "command"`), by
the controller (codes it raises itself, never sent by a unit), or by a person in the API
(latched: the unit never says the condition ended).

{_alarm_table()}

#### `outbox_dropped` details

{dropped}

Each entry of `ranges`:

{span}

At least one seq must be given, and every dropped seq is lower than the `seq` of the
event that announces it.

More examples:

{examples}"""


def _alarm_table() -> str:
    def ends(code: Any) -> str:
        if code in CLEARED_BY:
            return f"ends `{CLEARED_BY[code].value}` (opens no alarm)"
        if code in CLEAR_BY_COMMAND:
            action, param = CLEAR_BY_COMMAND[code]
            return f"a person: `{action}` with `{param}`"
        if code in CONTROLLER_CODES:
            return "the controller (raised by it too)"
        if code in UNIT_CLEARS:
            return "the unit (`alarm_cleared`)"
        return "a person (latched)"

    return table(["code", "severity", "ends by", "meaning"],
                 [[f"`{k.value}`", ALARM_SEVERITY[k].value, ends(k), v]
                  for k, v in ALARM_CODE_DESCRIPTIONS.items()])


def _details_rows() -> str:
    return "\n".join(f"| `{t.value}` | `{m.__name__}` |" for t, m in DETAILS_BY_TYPE.items())


def command_extra() -> str:
    rows = []
    for action, params_model in PARAMS_BY_ACTION.items():
        schema = params_model.model_json_schema()
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        if props:
            params = "; ".join(
                f"`{name}` ({field_type(prop, {})}{'' if name in required else ', optional'}): "
                f"{prop.get('description', '').rstrip('.')}"
                for name, prop in props.items()
            )
        else:
            params = "none: `{}`"
        rows.append([f"`{action.value}`", COMMAND_ACTION_DESCRIPTIONS[action], params])
    actions = table(["action", "what it does", "params"], rows)
    params_examples = "\n".join(
        f"- `{action.value}`: `{json.dumps(json.loads(codec.encode(cmd))['params'])}`"
        for action, cmd in COMMAND_EXAMPLES.items()
    )
    return f"""#### Actions

{actions}

`params` of each action, as in the examples:

{params_examples}

Skip next with neither `zone` nor `feeder` skips the unit's next run or feeding; giving
both is refused. Remote values are clamped to the unit's local hard limits (maximum
on-time, daily water minutes, grams per feeding and per day); the reply then carries
`clamped` and the unit also records a `limit_clamped` event."""


def _reply_code_table() -> str:
    return table(["code", "params", "meaning"],
                 [[f"`{code.value}`", ", ".join(f"`{p}`" for p in spec.params) or "none",
                   spec.description] for code, spec in REPLY_CODES.items()])


def reply_extra() -> str:
    clamp = fields_table(models.Clamp)
    return f"""#### Reply statuses

{enum_table("status", dict(REPLY_STATUS_DESCRIPTIONS))}

A command that is carried out gets `accepted` first and then `done` or `failed` (same
`id`). A command that is not carried out gets exactly one of `rejected`, `expired` or
`duplicate`.

#### Reply codes

Every reply says its outcome as a `code` with `params` (names and numbers, never
sentences), so a dashboard says it in its reader's language; `detail` carries the same in
English for logs and older readers. A reply from an older unit may have no `code`.

{_reply_code_table()}

#### `clamped`

{clamp}"""


def config_extra() -> str:
    schedules = "\n\n".join(
        f"#### `body` of a `{kind}` unit: `{spec.schedule.__name__}`\n\n"
        f"{models_tables(spec.schedule)}" for kind, spec in KINDS.items())
    return _CONFIG_TEXT + "\n\n" + schedules


_CONFIG_TEXT = """The unit validates `body` with the schedule model of its kind (below, from
`protocol.kinds`) before using any of it; the controller checks it with the same model,
and against the names the unit reports in its status `limits`, before it stores or
publishes a version. A unit then publishes a `config_applied` event (details: `version`) and a status with the new
`config_version`, or a `config_rejected` event (details: `version` and the reason) and
keeps its last accepted config. A unit ignores a config whose `version` is not higher
than the one it runs. The controller keeps the latest version retained on the unit's
`config` topic, so a unit that was offline gets it on reconnect."""


def delivery_section() -> str:
    return f"""## Delivery: seq, outbox and ack

Telemetry and events carry `seq`, a per-device sequence number, one counter for both,
starting at 1, that never repeats and survives restarts and power loss.

1. The unit writes each telemetry sample and event to its outbox (SQLite on the SD card)
   before publishing it with QoS 1.
2. The broker's PUBACK is not proof of safety (the broker may not have written the
   message to disk), so the row stays in the outbox.
3. The controller stores messages by `(device, seq)`. A second copy of a seq is ignored.
   A missing seq is a visible gap.
4. After its database commit, the controller publishes `ack` with `seq` = N: every
   message of this unit with seq <= N is committed (or was announced as dropped). The
   controller never acknowledges past a gap: with 1-5 and 7 stored, the ack says 5.
5. On an ack for N, the unit deletes rows with seq <= N. Rows above N stay and are
   published again after a reconnect.

An ack is cumulative, so a lost ack is repaired by the next one. `backlog` in the status
is the number of rows waiting. An ack above every seq the unit has assigned means the
unit's outbox was replaced (a new SD card) while the controller still knows the device:
the unit continues its seq after the ack and renumbers the rows still waiting, so new
messages are not taken for duplicates.

The controller keeps a persistent MQTT session (a fixed client id, no clean start), so
messages published while it is down are queued by the broker and arrive when it returns.

## Outbox drop announcements

The outbox has a size bound. When it is full the unit thins old telemetry first. Events
are never dropped. Each dropped message is counted (`dropped` in the status) and its seq
is announced in an `outbox_dropped` event, as single `seqs` and inclusive `ranges`
(`{{"from": a, "to": b}}`). The controller records those seqs as accounted for, so its
ack can move past them instead of waiting for messages that will never come.

## Commands: expiry and at-most-once

- Every command has an `id`, `issued_at` and `expires_at` (later than `issued_at`, at
  most {models.MAX_COMMAND_TTL.days} days after). Keep the window short (minutes):
  a command queued for an offline unit must not act hours later.
- A unit that receives a command at or after `expires_at` does not act on it and replies
  `expired`. A unit whose clock is not synchronised cannot judge expiry or times, so it
  refuses time-bounded commands (replies `rejected`).
- A unit remembers the ids it has acted on and runs each id at most once. A second
  delivery of the same id (QoS 1 may deliver twice) gets `duplicate`.
- A unit answers every command it can read on `cmd/reply`. A payload it cannot read at
  all has no usable id and gets no reply; the controller marks such a command expired
  when `expires_at` passes without an answer.
- Commands are never retained (see Topics)."""


def errors_section() -> str:
    return f"""## Errors

A receiver never stores or acts on a payload that breaks this contract. In the code,
`parse_topic()` and `decode()` raise `ProtocolError` (a `ValueError`), with the two
kinds `TopicError` and `PayloadError`. The message names the field and the reason, for
example:

```
{_error_examples()}
```

Reasons a payload is refused: larger than {codec.MAX_PAYLOAD_BYTES} bytes (checked before
it is parsed), not UTF-8, not JSON, not an object, nested too deep, a duplicate key, NaN
or Infinity, missing or unsupported `v`, an unknown field, a missing field, a wrong
type, a value out of range. The receiver logs the topic and the error, counts it, and
drops the message. The sender's own `encode()` refuses a message larger than the limit,
so a unit never publishes a payload the controller would refuse for size.

## Versions

`v` is the payload schema version and `v1` in the topic root the topic tree version. A
change that an older receiver would refuse (a new field, a new event type, a new
action) is released to the controller first, then to the units. An incompatible change
gets a new `v` and the receivers accept both during the change-over."""


_BAD_PAYLOADS = (
    (Channel.TELEMETRY, '{"v":1,"seq":0,"ts":"2025-03-14T22:02:00Z"}'),
    (Channel.CMD, '{"v":1,"id":"c-1","issued_at":"2025-03-14T22:00:00Z",'
                  '"expires_at":"2025-03-14T22:05:00Z","action":"run_zone",'
                  '"params":{"zone":"zone1","duration_s":90000}}'),
    (Channel.STATUS, '{"v":1,"fw":"0.1.0","clock_synced":true,'
                     '"ts":"2025-03-14T22:02:00Z","extra":1}'),
    (Channel.EVENT, '{"v":1,"seq":5,"ts":"2025-03-14 22:02:00","type":"alarm"}'),
    (Channel.ACK, '{"v":1,"seq":12,"ts":"2025-03-14T22:02:00Z","seq":13}'),
)


def _error_examples() -> str:
    """Real error messages, produced by decoding a few bad payloads."""
    lines = []
    for channel, payload in _BAD_PAYLOADS:
        try:
            codec.decode(channel, payload)
        except ProtocolError as exc:
            lines.append(str(exc))
        else:  # pragma: no cover - a bad example that decodes is a bug in this file
            raise AssertionError(f"example payload for {channel} decoded: {payload}")
    return "\n".join(lines)
