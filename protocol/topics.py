"""MQTT topic tree of the wire contract.

Every message lives under one root, then the department (OPD), the unit, and a channel::

    smartcity/v1/{opd}/{device}/{channel}
    smartcity/v1/dlh/taman-bekapai-01/telemetry
    smartcity/v1/dp3/tambak-manggar-02/cmd/reply

Build topics with :func:`topic`, subscription filters with :func:`device_filter`,
:func:`opd_filter` and :func:`all_filter`, and read an incoming topic with
:func:`parse_topic`, which refuses anything outside the tree with a :class:`TopicError`.

``opd`` and ``device`` ids match :data:`ID_PATTERN`: 1 to 32 characters, lowercase
letters, digits, ``-`` and ``_``, starting with a letter or digit. So an id can never
hold an MQTT wildcard (``+``, ``#``), a level separator (``/``) or a leading ``$``.

:data:`CHANNEL_QOS` and :data:`CHANNEL_RETAIN` fix how each channel is published;
publishers must take them from here rather than choose their own.
"""

from __future__ import annotations

import logging
import re
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

from protocol.errors import TopicError

__all__ = [
    "CHANNEL_DIRECTION",
    "CHANNEL_QOS",
    "CHANNEL_RETAIN",
    "ID_PATTERN",
    "ROOT",
    "Channel",
    "Direction",
    "TopicParts",
    "all_filter",
    "device_filter",
    "opd_filter",
    "parse_topic",
    "shared",
    "topic",
    "validate_id",
]

logger = logging.getLogger(__name__)

ROOT = "smartcity/v1"
"""First two levels of every topic; the ``v1`` changes only with an incompatible tree."""

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
"""Syntax of ``opd`` and ``device`` ids (one MQTT topic level each)."""

_ID_RE = re.compile(ID_PATTERN)
_SHARE_GROUP_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Channel(StrEnum):
    """The last level(s) of a topic: what kind of message travels there."""

    STATUS = "status"
    TELEMETRY = "telemetry"
    EVENT = "event"
    CMD = "cmd"
    CMD_REPLY = "cmd/reply"
    ACK = "ack"
    CONFIG = "config"


class Direction(StrEnum):
    """Who publishes on a channel."""

    UNIT_TO_CONTROLLER = "unit -> controller"
    CONTROLLER_TO_UNIT = "controller -> unit"


CHANNEL_DIRECTION: MappingProxyType[Channel, Direction] = MappingProxyType(
    {
        Channel.STATUS: Direction.UNIT_TO_CONTROLLER,
        Channel.TELEMETRY: Direction.UNIT_TO_CONTROLLER,
        Channel.EVENT: Direction.UNIT_TO_CONTROLLER,
        Channel.CMD: Direction.CONTROLLER_TO_UNIT,
        Channel.CMD_REPLY: Direction.UNIT_TO_CONTROLLER,
        Channel.ACK: Direction.CONTROLLER_TO_UNIT,
        Channel.CONFIG: Direction.CONTROLLER_TO_UNIT,
    }
)
"""Which side publishes on each channel (the broker ACL follows this)."""

CHANNEL_QOS: MappingProxyType[Channel, int] = MappingProxyType({channel: 1 for channel in Channel})
"""MQTT QoS per channel. All QoS 1: at least once; duplicates are removed by seq or id."""

CHANNEL_RETAIN: MappingProxyType[Channel, bool] = MappingProxyType(
    {
        Channel.STATUS: True,
        Channel.TELEMETRY: False,
        Channel.EVENT: False,
        Channel.CMD: False,
        Channel.CMD_REPLY: False,
        Channel.ACK: False,
        Channel.CONFIG: True,
    }
)
"""Retain flag per channel. ``cmd`` and ``event`` are never retained: a retained command
would act again on every reconnect ("ghost switching"), a retained event would be counted
twice."""


class TopicParts(NamedTuple):
    """A topic taken apart by :func:`parse_topic`."""

    opd: str
    device: str
    channel: Channel

    @property
    def topic(self) -> str:
        """The topic string these parts came from."""
        return topic(self.opd, self.device, self.channel)


def validate_id(value: object, what: str = "id") -> str:
    """Return ``value`` if it is a valid opd or device id, else raise :class:`TopicError`.

    ``what`` names the id in the message (``"opd"``, ``"device"``).
    """
    if not isinstance(value, str):
        raise TopicError(f"must be a string, not {type(value).__name__}", field=what)
    if not _ID_RE.fullmatch(value):
        raise TopicError(
            f"{value!r} is not a valid id (1-32 of a-z 0-9 _ -, starting with a letter "
            "or digit)",
            field=what,
        )
    return value


def _channel(value: object) -> Channel:
    try:
        return Channel(value)
    except ValueError:
        known = ", ".join(c.value for c in Channel)
        raise TopicError(f"unknown channel {value!r} (known: {known})", field="channel") from None


def topic(opd: str, device: str, channel: Channel | str) -> str:
    """The topic a message for ``channel`` of one unit is published on.

    >>> topic("dlh", "taman-01", Channel.CMD_REPLY)
    'smartcity/v1/dlh/taman-01/cmd/reply'
    """
    validate_id(opd, "opd")
    validate_id(device, "device")
    return f"{ROOT}/{opd}/{device}/{_channel(channel).value}"


def device_filter(opd: str, device: str, channel: Channel | str) -> str:
    """Subscription filter for one channel of one unit (no wildcard).

    A unit subscribes to its own ``cmd``, ``ack`` and ``config`` with this.
    """
    return topic(opd, device, channel)


def opd_filter(opd: str, channel: Channel | str) -> str:
    """Subscription filter for one channel of every unit of one OPD.

    >>> opd_filter("dp3", "event")
    'smartcity/v1/dp3/+/event'
    """
    validate_id(opd, "opd")
    return f"{ROOT}/{opd}/+/{_channel(channel).value}"


def all_filter(channel: Channel | str) -> str:
    """Subscription filter for one channel of every unit of every OPD.

    >>> all_filter(Channel.TELEMETRY)
    'smartcity/v1/+/+/telemetry'
    """
    return f"{ROOT}/+/+/{_channel(channel).value}"


def shared(group: str, topic_filter: str) -> str:
    """Wrap a filter as an MQTT 5 shared subscription: ``$share/{group}/{filter}``.

    The broker hands each message to one member of the group, so several controller
    ingest workers can split the load. ``group`` is 1-64 of ``A-Za-z0-9_-``.

    >>> shared("ingest", all_filter("event"))
    '$share/ingest/smartcity/v1/+/+/event'
    """
    if not isinstance(group, str) or not _SHARE_GROUP_RE.fullmatch(group):
        raise TopicError(f"{group!r} is not a valid share group (1-64 of A-Za-z0-9_-)",
                         field="group")
    if not isinstance(topic_filter, str) or not topic_filter.startswith(ROOT + "/"):
        raise TopicError(f"{topic_filter!r} is not a filter under {ROOT}/", field="filter")
    return f"$share/{group}/{topic_filter}"


def parse_topic(value: str) -> TopicParts:
    """Split a concrete topic into :class:`TopicParts`.

    Raises :class:`TopicError` for anything that is not exactly
    ``smartcity/v1/{opd}/{device}/{channel}``: another root, missing or extra levels,
    wildcards, empty levels, a bad id or an unknown channel.
    """
    if not isinstance(value, str):
        raise TopicError(f"topic must be a string, not {type(value).__name__}")
    prefix = ROOT + "/"
    if not value.startswith(prefix):
        raise TopicError(f"topic {value!r} is not under {prefix}")
    rest = value[len(prefix):].split("/")
    if len(rest) < 3:
        raise TopicError(f"topic {value!r} has too few levels (want {prefix}opd/device/channel)")
    opd, device, channel = rest[0], rest[1], "/".join(rest[2:])
    validate_id(opd, "opd")
    validate_id(device, "device")
    return TopicParts(opd, device, _channel(channel))
