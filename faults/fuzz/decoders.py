"""Targets for the protocol: ``protocol.decode`` for every channel and ``parse_topic``."""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

from hypothesis import strategies as st

from faults.common import ROOT
from faults.fuzz.base import Check, Target, Wrong

sys.path.insert(0, str(ROOT / "tests" / "protocol"))  # the protocol tests' strategies

import test_models_properties as props  # noqa: E402

from protocol import (  # noqa: E402
    MODELS_BY_CHANNEL,
    Channel,
    ProtocolError,
    TopicParts,
    decode,
    encode,
    parse_topic,
)

NASTY = [None, True, False, 0, -1, 1, 2**31, 2**53 + 1, 2**63, -2**63, 10**400, 0.5, -0.0,
         1e308, float("nan"), float("inf"), "", "x", "a" * 65, "zone1", "run_zone", "done",
         "2025-03-14T22:00:00Z", "2025-03-14T22:00:00", "2025-13-40T99:00:00Z",
         "1970-01-01T00:00:00+08:00", "\u0000", "\ud800", [], [1, 2], [[[[[[[[]]]]]]]],
         {}, {"a": 1}, {"from": 5, "to": 3}, {"zone": None}, ["x"] * 300,
         {f"k{i}": i for i in range(300)}, "x" * 70_000]
"""Field values that break validators: wrong types, bounds, non-finite numbers, naive and
impossible timestamps, NUL and lone surrogates, deep nesting, too many items, too big."""


def _paths(doc: dict, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a JSON object, two levels deep (``("params", "zone")``)."""
    out = []
    for key, value in doc.items():
        out.append((*prefix, key))
        if isinstance(value, dict) and len(prefix) < 1:
            out += _paths(value, (*prefix, key))
    return out


def _bases(channel: Channel) -> list[bytes]:
    """The valid examples of a channel (every command action, every sample event)."""
    from protocol.examples import COMMAND_EXAMPLES, EVENT_EXAMPLES, EXAMPLES, LAST_WILL_EXAMPLE

    extra = {Channel.CMD: list(COMMAND_EXAMPLES.values()),
             Channel.EVENT: list(EVENT_EXAMPLES), Channel.STATUS: [LAST_WILL_EXAMPLE]}
    return [encode(m) for m in [EXAMPLES[channel], *extra.get(channel, [])]]


def _edit(base: bytes, edits: list[tuple[tuple, bool, Any]]) -> bytes:
    doc = json.loads(base)
    for path, drop, value in edits:
        node = doc
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        if drop:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = copy.deepcopy(value)  # NASTY itself stays as it is
    return json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")


def _flip(base: bytes, ops: list[tuple[int, str, int]]) -> bytes:
    data = bytearray(base)
    for at, op, byte in ops:
        at %= len(data) + 1
        if op == "x" and at < len(data):
            data[at] ^= byte or 1
        elif op == "d" and at < len(data):
            del data[at]
        elif op == "i":
            data.insert(at, byte)
        elif op == "c":
            del data[at:]
    return bytes(data)


def decode_strategy(channel: Channel) -> st.SearchStrategy:
    """Cheap to draw, so a long run can afford 100,000 examples a target: arbitrary bytes,
    a valid example with its bytes flipped, cut or inserted, a valid example with up to
    three fields (nested ones too) dropped or set to a value from ``NASTY``, and, one draw
    in nine, the protocol tests' mutated examples and arbitrary JSON."""
    bases = _bases(channel)
    keys = sorted({p for b in bases for p in _paths(json.loads(b))} | {("v",), ("extra",)})
    # One integer per edit or flip (few draws: drawing is most of an example's cost).
    table = [(k, drop, v) for k in keys for drop in (False, True)
             for v in (NASTY if not drop else [None])]
    edits = st.lists(st.integers(0, len(table) - 1).map(table.__getitem__),
                     min_size=1, max_size=3)
    flips = st.lists(st.integers(0, 2001 * 4 * 256 - 1).map(
        lambda n: (n // 1024, "xdic"[n // 256 % 4], n % 256)), min_size=1, max_size=4)
    base = st.sampled_from(bases)
    cheap = [st.binary(max_size=400), st.builds(_edit, base, edits),
             st.builds(_edit, base, edits), st.builds(_flip, base, flips)]
    rich = st.one_of(props._mutated_example(channel).map(props._to_bytes),
                     props.json_values.map(props._to_bytes))
    return st.one_of(*cheap, *cheap, rich)


def _decode_check(channel: Channel) -> Check:
    model = MODELS_BY_CHANNEL[channel]

    def check(data: bytes) -> bool:
        try:
            message = decode(channel, data)
        except ProtocolError:
            return False
        if not isinstance(message, model) or decode(channel, encode(message)) != message:
            raise Wrong(f"decoded {message!r} does not round-trip")
        return True

    return check


# Levels of any characters a broker accepts in a topic (no wildcards, no separators, no
# control, surrogate, unassigned or private-use code points).
TOPIC_LEVEL = st.text(st.characters(blacklist_characters="/+#",
                                     blacklist_categories=("Cc", "Cs", "Cn", "Co")),
                       max_size=12)
_CHANNEL_TEXT = st.sampled_from([c.value for c in Channel] + ["cmd/x", "evt", ""])
TOPICS = st.one_of(
    st.text(max_size=80),
    st.builds(lambda o, d, c: f"smartcity/v1/{o}/{d}/{c}", TOPIC_LEVEL, TOPIC_LEVEL,
              _CHANNEL_TEXT),
    st.builds(lambda o, d, c: f"smartcity/v1/{o}/{d}/{c}",
              st.sampled_from(["dlh", "dp3", "DLH", "-x", "a" * 33]),
              st.sampled_from(["taman-01", "t", "tam an", "x" * 33, "_x"]), _CHANNEL_TEXT),
)


def _topic_check(text: str) -> bool:
    try:
        parts = parse_topic(text)
    except ProtocolError:
        return False
    if not isinstance(parts, TopicParts) or parts.channel not in set(Channel):
        raise Wrong(f"parse_topic({text!r}) gave {parts!r}")
    return True


def targets() -> list[Target]:
    """``decode.<channel>`` for every channel, then ``parse_topic``."""
    out = [Target(f"decode.{c.value}", decode_strategy(c), _decode_check(c), 100_000)
           for c in Channel]
    out.append(Target("parse_topic", TOPICS, _topic_check, 100_000))
    return out
