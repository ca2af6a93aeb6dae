"""The wire contract between the units and the controller, shared by both sides.

- :mod:`protocol.topics`: the MQTT topic tree, QoS and retain per channel.
- :mod:`protocol.models`: one frozen pydantic model per payload (field types and bases in
  :mod:`protocol.fields`, commands and replies in :mod:`protocol.commands`).
- :mod:`protocol.codec`: :func:`encode` and :func:`decode` (bytes <-> models).
- :mod:`protocol.errors`: :class:`ProtocolError`, the one exception for bad input.
- :mod:`protocol.events`: one details model per event type, and the alarm codes.
- :mod:`protocol.kinds`: the registry of unit kinds, and each kind's schedule model.
- :mod:`protocol.checks`: would a unit take this schedule or command (models, then the
  names and limits it reports)?
- :mod:`protocol.ids`, :mod:`protocol.times`, :mod:`protocol.seqranges`: identifier
  patterns, time formats, sequence ranges.
- :mod:`protocol.mqtt`: the MQTT client set-up and plain words for connection failures
  (the one module here that does I/O).
- :mod:`protocol.release`: release bundles (the signed manifest, keys, platforms): what
  the controller builds and a unit checks before it installs one.
- :mod:`protocol.docgen`: builds docs/protocol.md from the above (its prose in
  :mod:`protocol.docsections`, its tables in :mod:`protocol.doctables`).
- :mod:`protocol.logs`: the log set-up both sides' entry points use (journal priorities,
  ``key=value`` fields, payloads as truncated JSON).

Typical use on the receiving side::

    from protocol import ProtocolError, decode, parse_topic

    try:
        parts = parse_topic(msg.topic)
        message = decode(parts.channel, msg.payload)
    except ProtocolError as exc:
        ...  # log, count, drop; never store

and on the sending side::

    from protocol import CHANNEL_QOS, CHANNEL_RETAIN, channel_of, encode, topic

    channel = channel_of(message)
    client.publish(topic(opd, device, channel), encode(message),
                   qos=CHANNEL_QOS[channel], retain=CHANNEL_RETAIN[channel])
"""

from protocol.codec import MAX_JSON_DEPTH, MAX_PAYLOAD_BYTES, decode, encode, errors_to_problems
from protocol.errors import PayloadError, ProtocolError, TopicError
from protocol.models import (
    COMMAND_ID_PATTERN,
    MAX_COMMAND_TTL,
    MAX_INT,
    MODELS_BY_CHANNEL,
    NAME_PATTERN,
    PARAMS_BY_ACTION,
    SCHEMA_VERSION,
    Ack,
    Clamp,
    ClearFaultParams,
    Command,
    CommandAction,
    CommandReply,
    DesiredConfig,
    DroppedRange,
    Event,
    EventType,
    FeedNowParams,
    Message,
    OutboxDropped,
    PauseParams,
    RainDelayParams,
    ReplyCode,
    ReplyStatus,
    ResumeParams,
    RunZoneParams,
    SkipNextParams,
    Status,
    StopAllParams,
    StopZoneParams,
    Telemetry,
    channel_of,
    dropped_ranges,
    offline_status,
)
from protocol.topics import (
    CHANNEL_DIRECTION,
    CHANNEL_QOS,
    CHANNEL_RETAIN,
    ID_PATTERN,
    ROOT,
    Channel,
    Direction,
    TopicParts,
    all_filter,
    device_filter,
    opd_filter,
    parse_topic,
    shared,
    topic,
    validate_id,
)

__all__ = [
    "CHANNEL_DIRECTION",
    "CHANNEL_QOS",
    "CHANNEL_RETAIN",
    "COMMAND_ID_PATTERN",
    "ID_PATTERN",
    "MAX_COMMAND_TTL",
    "MAX_INT",
    "MAX_JSON_DEPTH",
    "MAX_PAYLOAD_BYTES",
    "MODELS_BY_CHANNEL",
    "NAME_PATTERN",
    "PARAMS_BY_ACTION",
    "ROOT",
    "SCHEMA_VERSION",
    "Ack",
    "Channel",
    "Clamp",
    "Command",
    "CommandAction",
    "CommandReply",
    "DesiredConfig",
    "Direction",
    "DroppedRange",
    "Event",
    "EventType",
    "FeedNowParams",
    "Message",
    "OutboxDropped",
    "PauseParams",
    "PayloadError",
    "ProtocolError",
    "RainDelayParams",
    "ReplyCode",
    "ReplyStatus",
    "ResumeParams",
    "ClearFaultParams",
    "RunZoneParams",
    "SkipNextParams",
    "Status",
    "StopAllParams",
    "StopZoneParams",
    "Telemetry",
    "TopicError",
    "TopicParts",
    "all_filter",
    "channel_of",
    "decode",
    "device_filter",
    "dropped_ranges",
    "encode",
    "errors_to_problems",
    "offline_status",
    "opd_filter",
    "parse_topic",
    "shared",
    "topic",
    "validate_id",
]
