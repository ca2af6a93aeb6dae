"""Fuzzing: every decoder and serial parser, the controller's API, and the ingest path.

Three parts, each printing what it counted:

1. **Decoders and parsers** (Hypothesis, in process). Each target gets arbitrary and
   near-valid input and must either return a good value or raise its one documented
   error type; anything else is a *crash*. Targets: ``protocol.decode`` for every channel,
   ``protocol.parse_topic``, ``edge.sensors.soil.parse_line``,
   ``edge.sensors.ezo.parse_exchange`` and ``EzoSensor.read``,
   ``edge.sensors.hopper.parse_weight_stream`` and ``LoadCell.read``, and Modbus RTU
   answers to ``ModbusSensor.read`` and ``ModbusWaterQuality.read`` through a loopback
   port (``edge.sim.fish_feeder.SimModbusPort``, real frames and CRCs).
   What a target accepts is checked too (a decoded message round-trips; a reading is a
   finite number in its range); a violation counts as *wrong*.
2. **The controller's HTTP API** (schemathesis). Every operation of the OpenAPI schema,
   driven through its Hypothesis strategy with an admin token; schemathesis's checks run
   on each answer. Counts: requests, *server errors* (5xx), *crashes* (an exception out of
   the app), check failures (an answer that does not fit the schema).
3. **The ingest path.** A private Mosquitto and ``smartcity-controller serve``; fuzzed
   payloads are published on real unit topics (garbage payloads on a registered unit's
   topics, valid payloads from unregistered devices, under the wrong OPD, on malformed
   topic levels, replies to unknown commands). Counts: published, rejected by the
   controller (its ``smartcity_ingest_rejected_total``), and *stored garbage* (any row
   that appeared in the controller's database).

    .venv/bin/python -m faults.fuzz                  # the long run (about 10 minutes)
    .venv/bin/python -m faults.fuzz --scale 0.01     # 1% of the examples: a quick look
    .venv/bin/python -m faults.fuzz --only decode.event,modbus --seed 7

Exit status 0 only when there were no crashes, no wrong results, no server errors and
no stored garbage.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import random
import sqlite3
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import minimalmodbus
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from faults.common import ROOT

sys.path.insert(0, str(ROOT / "tests" / "protocol"))  # the protocol tests' strategies

import test_models_properties as props  # noqa: E402

from edge.sensors.base import SensorError  # noqa: E402
from edge.sensors.ezo import PLAUSIBLE, EzoSensor, parse_exchange  # noqa: E402
from edge.sensors.hopper import LoadCell, format_weight_line, parse_weight_stream  # noqa: E402
from edge.sensors.modbus import ModbusSensor  # noqa: E402
from edge.sensors.modbus_wq import ModbusWaterQuality  # noqa: E402
from edge.sensors.soil import parse_line, xor_checksum  # noqa: E402
from edge.sim.fish_feeder import SimModbusPort, _SimPort, modbus_crc  # noqa: E402
from protocol import (  # noqa: E402
    MODELS_BY_CHANNEL,
    Channel,
    ProtocolError,
    TopicParts,
    decode,
    encode,
    parse_topic,
)

Check = Callable[[Any], bool]
"""``check(example) -> True`` when accepted (and right), False when refused with the
documented error; raises ``Wrong`` for an accepted but wrong result; any other exception
is a crash."""


class Wrong(AssertionError):
    """A target accepted input and returned something it must never return."""


@dataclass
class Target:
    name: str
    strategy: st.SearchStrategy
    check: Check
    examples: int  # in the long run


@dataclass
class Tally:
    name: str
    examples: int = 0
    accepted: int = 0
    refused: int = 0
    crashes: int = 0
    wrong: int = 0
    seconds: float = 0.0
    samples: list[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.examples / self.seconds if self.seconds else 0.0
        return (f"{self.name:<22} {self.examples:>8} examples  {self.accepted:>7} accepted  "
                f"{self.refused:>8} refused  {self.crashes} crashes  {self.wrong} wrong  "
                f"({self.seconds:.0f} s, {rate:.0f}/s)")


# --------------------------------------------------------------------------- protocol
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


def _decode_strategy(channel: Channel) -> st.SearchStrategy:
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
_TOPIC_LEVEL = st.text(st.characters(blacklist_characters="/+#",
                                     blacklist_categories=("Cc", "Cs", "Cn", "Co")),
                       max_size=12)
_CHANNEL_TEXT = st.sampled_from([c.value for c in Channel] + ["cmd/x", "evt", ""])
TOPICS = st.one_of(
    st.text(max_size=80),
    st.builds(lambda o, d, c: f"smartcity/v1/{o}/{d}/{c}", _TOPIC_LEVEL, _TOPIC_LEVEL,
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


# --------------------------------------------------------------------------- serial lines
def _with_xor(body: bytes) -> bytes:
    return body + b"*%02X" % xor_checksum(body)


_NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.integers(-10**6, 10**6).map(str),
                    st.sampled_from(["nan", "inf", "-0", "1e309", "0x1F", "", "-", "."]))
_PAIR = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
    ["moisture_pct", "soil_temp_c", "value", "", "m=", "é"]), _NUMBER) | _NUMBER
SOIL_LINES = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda parts, sep, cks, end: (
        (_with_xor if cks else bytes)(sep.join(parts).encode("utf-8")) + end),
        st.lists(_PAIR, max_size=4), st.sampled_from([",", ";", " ", ",,", "\t"]),
        st.booleans(), st.sampled_from([b"\n", b"\r\n", b"", b"\r"])),
)


def _soil_check(raw: bytes) -> bool:
    try:
        values = parse_line(raw, require_checksum=False)
    except SensorError:
        return False
    if not values or not all(isinstance(v, float) and math.isfinite(v)
                             for v in values.values()):
        raise Wrong(f"parse_line({raw!r}) gave {values!r}")
    return True


_EZO_SEGMENT = st.sampled_from([b"8.23", b"97.4", b"8.23,97.4", b"28.104", b"7.41", b"-1.5",
                                b"*OK", b"*ER", b"*RS", b"*DONE", b"99999", b"1e3", b"",
                                b"\x00\xff", b"8.2.3", b"nan"]) | st.binary(max_size=8)
EZO_DATA = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda segs, sep, tail: sep.join(segs) + tail, st.lists(_EZO_SEGMENT, max_size=6),
              st.sampled_from([b"\r", b"\r\n", b"\n"]), st.sampled_from([b"", b"\r", b"8."])),
)


def _ezo_check(case: tuple[bytes, str, bool]) -> bool:
    data, quantity, need_ok = case
    result = parse_exchange(data, quantity, need_ok=need_ok)  # documented: never raises
    if result.value is None:
        if result.status == "ok":
            raise Wrong(f"status ok without a value for {data!r}")
        return False
    low, high = PLAUSIBLE[quantity]
    if result.status != "ok" or not (math.isfinite(result.value) and low <= result.value <= high):
        raise Wrong(f"parse_exchange({data!r}, {quantity}) gave {result!r}")
    return True


class _ReplyPort(_SimPort):
    """A loopback serial port whose device answers every write with the same bytes."""

    def __init__(self, answer: bytes, name: str = "fuzz"):
        super().__init__(name)
        self.answer = answer

    def _answer(self, data: bytes) -> None:
        self._rx += self.answer


def _ezo_read_check(case: tuple[bytes, str]) -> bool:
    answer, quantity = case
    sensor = EzoSensor(_ReplyPort(answer), quantity, timeout_s=0.2, slice_s=0.05,
                       monotonic=_fake_clock())
    try:
        value = sensor.read()
    except SensorError:
        return False
    low, high = PLAUSIBLE[quantity]
    if not (math.isfinite(value) and low <= value <= high):
        raise Wrong(f"EzoSensor.read() gave {value!r} for {answer!r}")
    return True


def _fake_clock() -> Callable[[], float]:
    t = [0.0]

    def now() -> float:
        t[0] += 0.01
        return t[0]

    return now


_WEIGHT_PART = st.one_of(
    st.floats(-99999, 99999, allow_nan=False).map(format_weight_line),
    st.floats(-99999, 99999, allow_nan=False).map(lambda g: format_weight_line(g)[:-3] + b"\n"),
    st.sampled_from([b"W,12345.6*D30C\n", b"W,1*0000\n", b"\r\n", b"W,\n", b"*\n"]),
    st.binary(max_size=12),
)
WEIGHT_STREAMS = st.lists(_WEIGHT_PART, max_size=6).map(b"".join) | st.binary(max_size=100)


def _weight_check(data: bytes) -> bool:
    values, garbled, rest = parse_weight_stream(data)  # documented: pure, never raises
    if not all(isinstance(v, float) and math.isfinite(v) and abs(v) < 10**7 for v in values):
        raise Wrong(f"parse_weight_stream({data!r}) gave {values!r}")
    if garbled < 0 or b"\n" in rest:
        raise Wrong(f"parse_weight_stream({data!r}): garbled {garbled}, rest {rest!r}")
    return bool(values)


class _StreamPort(_SimPort):
    """A loopback port that streams the given bytes once, in chunks of ``chunk``."""

    def __init__(self, data: bytes, chunk: int):
        super().__init__("fuzz-loadcell")
        self._rx += data
        self.chunk = chunk

    def read(self, size: int = 1) -> bytes:
        return super().read(min(size, self.chunk))

    def _answer(self, data: bytes) -> None:
        pass


def _loadcell_check(case: tuple[bytes, int]) -> bool:
    data, chunk = case
    cell = LoadCell(_StreamPort(data, chunk), timeout_s=0.1, slice_s=0.05,
                    monotonic=_fake_clock())
    try:
        grams = cell.read()
    except SensorError:
        return False
    if not (isinstance(grams, float) and math.isfinite(grams)):
        raise Wrong(f"LoadCell.read() gave {grams!r} for {data!r}")
    return True


# --------------------------------------------------------------------------- modbus
WQ_REGISTERS = {"do_mg_l": (0, 2, False), "temp_c": (1, 1, True), "ph": (2, 2, False)}
SOIL_REGISTERS = {"moisture_pct": (0, 1, False), "soil_temp_c": (1, 1, True)}


def _true_frame(slave: int, values: list[int]) -> bytes:
    body = bytes([slave, 3, 2 * len(values)]) + b"".join(
        (v & 0xFFFF).to_bytes(2, "big") for v in values)
    return body + modbus_crc(body)


def _corrupt(frame: bytes, at: int, value: int, how: str) -> bytes:
    at %= len(frame) + 1
    if how == "xor" and at < len(frame):
        return frame[:at] + bytes([frame[at] ^ value]) + frame[at + 1:]
    if how == "delete":
        return frame[:at] + frame[at + 1:]
    if how == "insert":
        return frame[:at] + bytes([value]) + frame[at:]
    return frame[:at]


def _modbus_answers(count: int) -> st.SearchStrategy:
    """Answers on the bus: noise, true frames (register values anywhere, or in the range
    a probe really sends; maybe from another slave), and true frames with one
    corruption."""
    register = st.integers(0, 0xFFFF) | st.integers(0, 1500) | st.integers(0xFFC0, 0xFFFF)
    values = st.lists(register, min_size=count, max_size=count)
    frames = st.builds(_true_frame, st.sampled_from([1, 1, 1, 2]), values)
    return st.one_of(
        st.binary(max_size=2 * count + 8),
        frames,
        st.builds(_corrupt, frames, st.integers(0, 20), st.integers(1, 255),
                  st.sampled_from(["xor", "delete", "insert", "cut"])),
        st.builds(lambda f, extra: f + extra, frames, st.binary(min_size=1, max_size=4)),
    )


def _sent_registers(case: bytes, count: int) -> list[int] | None:
    """The register values, when ``case`` begins with a true answer of slave 1."""
    size = 5 + 2 * count
    regs = [int.from_bytes(case[3 + 2 * i:5 + 2 * i], "big") for i in range(count)]
    return regs if len(case) >= size and case[:size] == _true_frame(1, regs) else None


def _scaled(regs: list[int], registers: dict) -> dict[str, float]:
    out = {}
    for name, (reg, decimals, signed) in registers.items():
        value = regs[reg] - 0x10000 if signed and regs[reg] >= 0x8000 else regs[reg]
        out[name] = value / 10 ** decimals
    return out


_BUS = {}


def _bus(kind: str):
    """One loopback bus and driver per kind and process (building minimalmodbus's
    instrument for every example would cost more than the example)."""
    if kind not in _BUS:
        port = _ModbusLoopback(b"")
        registers = SOIL_REGISTERS if kind == "soil" else WQ_REGISTERS
        sensor = (ModbusSensor(port, 1, registers) if kind == "soil"
                  else ModbusWaterQuality(port, 1, registers))
        _BUS[kind] = (port, sensor)
    return _BUS[kind]


def _no_silent_period() -> None:
    """minimalmodbus waits the bus's 1.75 ms silent period after every answer; a loopback
    bus has no line to settle, and the wait would be most of each example's time."""
    minimalmodbus._latest_read_times.clear()


def _modbus_check(case: bytes) -> bool:
    port, sensor = _bus("soil")
    port.answer = case
    _no_silent_period()
    try:
        values = sensor.read()
    except SensorError:
        return False
    regs = _sent_registers(case, 2)
    if regs is None or values != _scaled(regs, SOIL_REGISTERS):
        raise Wrong(f"ModbusSensor.read() gave {values!r} for {case!r}")
    return True


def _modbus_wq_check(case: bytes) -> bool:
    port, probe = _bus("wq")
    port.answer = case
    _no_silent_period()
    try:
        values = probe.read()
    except SensorError:
        return False
    regs = _sent_registers(case, 3)
    if regs is None or values != _scaled(regs, WQ_REGISTERS) or not all(
            PLAUSIBLE[q][0] <= v <= PLAUSIBLE[q][1] for q, v in values.items()):
        raise Wrong(f"ModbusWaterQuality.read() gave {values!r} for {case!r}")
    return True


class _ModbusLoopback(SimModbusPort):
    """The bus: every request the driver writes gets ``answer`` back."""

    def __init__(self, answer: bytes):
        super().__init__("fuzz-modbus", {})
        self.answer = answer

    def _answer(self, data: bytes) -> None:
        self._rx += self.answer


# --------------------------------------------------------------------------- targets
def targets() -> list[Target]:
    """Every target and its example count in the long run (sized to about 10 minutes
    on the reference machine: the fast pure parsers get more than the 100,000 floor)."""
    out = [Target(f"decode.{c.value}", _decode_strategy(c), _decode_check(c), 100_000)
           for c in Channel]
    out += [
        Target("parse_topic", TOPICS, _topic_check, 100_000),
        Target("soil.parse_line", SOIL_LINES, _soil_check, 100_000),
        Target("ezo.parse_exchange", st.tuples(EZO_DATA, st.sampled_from(sorted(PLAUSIBLE)),
                                               st.booleans()), _ezo_check, 100_000),
        Target("ezo.read", st.tuples(EZO_DATA, st.sampled_from(sorted(PLAUSIBLE))),
               _ezo_read_check, 100_000),
        Target("hopper.parse_stream", WEIGHT_STREAMS, _weight_check, 100_000),
        Target("hopper.loadcell_read", st.tuples(WEIGHT_STREAMS, st.integers(1, 64)),
               _loadcell_check, 100_000),
        Target("modbus.read", _modbus_answers(2), _modbus_check, 100_000),
        Target("modbus_wq.read", _modbus_answers(3), _modbus_wq_check, 100_000),
    ]
    return out


BUFFER_SIZES = (16, 64, 256, 1024, 4096)


def run_target(target: Target, examples: int, seed_value: int,
               driver: str = "buffers") -> Tally:
    """Run one target for ``examples`` examples; never stops at a failure.

    ``driver="buffers"`` (the default) feeds seeded random byte strings to Hypothesis's
    ``fuzz_one_input``, its entry point for fuzzers: the same strategies and checks,
    without the engine's per-example bookkeeping (about 0.6 ms an example here, which
    would make 100,000 examples of 15 targets take most of an hour). ``"engine"`` runs
    the usual ``@given`` with ``settings(max_examples=examples)`` instead.
    """
    tally = Tally(target.name)

    def body(example):
        tally.examples += 1
        try:
            if target.check(example):
                tally.accepted += 1
            else:
                tally.refused += 1
        except Wrong as exc:
            tally.wrong += 1
            if len(tally.samples) < 5:
                tally.samples.append(f"wrong: {exc}"[:500])
        except Exception as exc:  # noqa: BLE001 - a crash is what this counts
            tally.crashes += 1
            if len(tally.samples) < 5:
                tally.samples.append(f"crash: {type(exc).__name__}: {exc} on {example!r}"[:500]
                                     + "\n" + traceback.format_exc(limit=3))

    quiet = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}
    t0 = time.perf_counter()
    if driver == "engine":
        seed(seed_value)(settings(max_examples=examples, phases=[Phase.generate], **quiet)(
            given(target.strategy)(body)))()
    else:
        test = settings(**quiet)(given(target.strategy)(body))
        rng = random.Random(seed_value ^ zlib.crc32(target.name.encode()))
        for _ in range(20 * examples):  # a buffer too short for the example is skipped
            if tally.examples >= examples:
                break
            test.hypothesis.fuzz_one_input(rng.randbytes(rng.choice(BUFFER_SIZES)))
    tally.seconds = time.perf_counter() - t0
    return tally


def _run_named(name: str, examples: int, seed_value: int, driver: str) -> Tally:
    """``run_target`` by name, in a worker process (strategies do not pickle)."""
    return run_target(next(t for t in targets() if t.name == name), examples, seed_value,
                      driver)


# --------------------------------------------------------------------------- the API
@dataclass
class ApiTally:
    operations: int = 0
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    server_errors: int = 0
    crashes: int = 0
    check_failures: int = 0
    seconds: float = 0.0
    samples: list[str] = field(default_factory=list)

    def text(self) -> str:
        classes = Counter(f"{s // 100}xx" for s in self.statuses.elements())
        return (f"api: {self.operations} operations, {self.requests} requests "
                f"({dict(sorted(classes.items()))}), {self.server_errors} server errors (5xx), "
                f"{self.crashes} crashes, {self.check_failures} check failures "
                f"({self.seconds:.0f} s)")


def fuzz_api(per_operation: int, seed_value: int, workdir: Path) -> ApiTally:
    """Schemathesis over every operation, as tests/controller/test_api_schemathesis.py
    does it (its pytest plugin does not run under pytest 9: the strategies are driven
    directly), with ``per_operation`` examples each."""
    import schemathesis
    from fastapi.testclient import TestClient
    from schemathesis.checks import positive_data_acceptance

    from controller.api.main import create_app
    from controller.auth import hash_token
    from controller.publisher import MemoryTransport
    from controller.settings import parse_settings
    from controller.store import Store

    sys.path.insert(0, str(ROOT / "tests" / "controller"))
    from controller_support import auth
    from controller_support import seed as seed_db

    tally = ApiTally()
    path = workdir / "api-fuzz.db"
    t0 = time.perf_counter()
    with Store.open(path) as store:
        tokens = seed_db(store)
        # Move the admin's token away from the small ids DELETE /tokens/{id} will try.
        admin_id = store.principal_for(hash_token(tokens.admin))["id"]
        store.db.execute("UPDATE tokens SET id = 987654 WHERE id = ?", [admin_id])
        # Schemathesis probes every operation with a wrong token: lift the failed-login
        # limit, or the admin's own calls would be answered 429 after ten probes.
        app = create_app(parse_settings({"database": {"path": str(path)},
                                         "mqtt": {"enabled": False},
                                         "api": {"login_failures_max": 100_000}}, environ={}),
                         store=store, mqtt=MemoryTransport())
        headers = auth(tokens.admin)
        with TestClient(app):
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            operations = [op.ok() for op in schema.get_all_operations()]
            tally.operations = len(operations)
            for operation in operations:

                @seed(seed_value)
                @settings(max_examples=per_operation, deadline=None, database=None,
                          phases=[Phase.explicit, Phase.generate],
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy())
                def call(case):
                    tally.requests += 1
                    try:
                        response = case.call(headers=headers)
                    except Exception as exc:  # noqa: BLE001 - what this counts
                        tally.crashes += 1
                        tally.samples.append(f"crash {case.method} {case.formatted_path}: "
                                             f"{type(exc).__name__}: {exc}"[:400])
                        return
                    tally.statuses[response.status_code] += 1
                    if response.status_code >= 500:
                        tally.server_errors += 1
                        tally.samples.append(f"{response.status_code} {case.method} "
                                             f"{case.formatted_path}: {response.text[:200]}")
                    try:
                        case.validate_response(response, headers=headers,
                                               excluded_checks=[positive_data_acceptance],
                                               transport_kwargs={"headers": headers})
                    except Exception as exc:  # noqa: BLE001 - a failed check, counted
                        tally.check_failures += 1
                        if len(tally.samples) < 20:
                            tally.samples.append(f"check {case.method} {case.formatted_path}: "
                                                 f"{str(exc)[:300]}")

                call()
    tally.seconds = time.perf_counter() - t0
    return tally


# --------------------------------------------------------------------------- ingest
@dataclass
class IngestTally:
    published: int = 0
    expected: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    stored_garbage: int = 0
    crashed: bool = False
    seconds: float = 0.0
    samples: list[str] = field(default_factory=list)

    def text(self) -> str:
        return (f"ingest: {self.published} published on unit topics, "
                f"{sum(self.rejected.values())} counted rejected by the controller "
                f"{dict(sorted(self.rejected.items()))}, {self.stored_garbage} stored garbage"
                f"{', CONTROLLER DIED' if self.crashed else ''} ({self.seconds:.0f} s)")


REGISTERED = [("taman-fz-01", "dlh"), ("tambak-fz-01", "dp3")]
UNIT_CHANNELS = [Channel.STATUS, Channel.TELEMETRY, Channel.EVENT, Channel.CMD_REPLY]


def _valid_payload(channel: Channel) -> bytes:
    from protocol.examples import EXAMPLES

    return encode(EXAMPLES[channel])


_DROPPED = '{"v":1,"seq":500,"ts":"2025-03-14T22:20:00Z","type":"outbox_dropped"'
BAD_DROPPED = [(_DROPPED + tail).encode() for tail in (
    "}", ',"details":{}}', ',"details":{"seqs":[]}}', ',"details":{"seqs":[500]}}',
    ',"details":{"seqs":[900]}}', ',"details":{"ranges":[{"from":9,"to":3}]}}',
    ',"details":{"ranges":[{"from":1,"to":700}]}}', ',"details":{"seqs":[0]}}',
    ',"details":{"seqs":[-4]}}', ',"details":{"seqs":["7"]}}')]
"""``outbox_dropped`` events that announce nothing, or seqs at or above their own: an ack
moved by one of these would acknowledge messages that never arrived."""


def ingest_cases(count: int, seed_value: int,
                 problems: list[str] | None = None) -> list[tuple[str, bytes, str]]:
    """(topic, payload, the rejection reason the controller must count), ``count`` of them.

    Every payload is checked here first with the same decoder, so a fuzzed payload that
    happens to be a valid message is never sent as "garbage" by mistake."""
    from protocol import topic

    cases: list[tuple[str, bytes, str]] = []
    problems = problems if problems is not None else []
    kinds = st.sampled_from(["payload"] * 6 + ["device", "opd", "topic", "reply", "big",
                                               "dropped"])
    channels = st.sampled_from(UNIT_CHANNELS)
    garbage = st.one_of(*[_decode_strategy(c) for c in UNIT_CHANNELS])

    @settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(kind=kinds, channel=channels, payload=garbage, level=_TOPIC_LEVEL,
           n=st.integers(0, 10**6))
    def make(kind, channel, payload, level, n):
        device, opd = REGISTERED[n % 2]
        if kind == "payload":
            try:
                decode(channel, payload)
            except ProtocolError:
                cases.append((topic(opd, device, channel), payload, "bad_payload"))
            return
        if kind == "device":
            cases.append((topic(opd, f"ghost-{n}", channel), _valid_payload(channel),
                          "unknown_device"))
        elif kind == "opd":
            cases.append((topic("dp3" if opd == "dlh" else "dlh", device, channel),
                          _valid_payload(channel), "wrong_opd"))
        elif kind == "topic":
            t = f"smartcity/v1/{level or 'X'}/{device}/{channel.value}"
            try:
                parse_topic(t)
            except ProtocolError:
                if len(t.encode("utf-8")) < 60_000:
                    cases.append((t, payload, "bad_topic"))
        elif kind == "reply":
            reply = json.loads(_valid_payload(Channel.CMD_REPLY))
            reply["id"] = f"nope-{n}"
            cases.append((topic(opd, device, Channel.CMD_REPLY), json.dumps(reply).encode(),
                          "unknown_command"))
        elif kind == "dropped":  # drop announcements that must not move the ack
            payload = BAD_DROPPED[n % len(BAD_DROPPED)]
            try:
                decode(Channel.EVENT, payload)
                problems.append(f"decoded as valid: {payload!r}")
            except ProtocolError:
                cases.append((topic(opd, device, Channel.EVENT), payload, "bad_payload"))
        else:  # larger than any payload a unit may send
            cases.append((topic(opd, device, channel), b'{"v":1,"x":"' + b"a" * 70_000 + b'"}',
                          "bad_payload"))

    rng = random.Random(seed_value)
    for _ in range(20 * count):  # driven like the parser targets (see run_target)
        if len(cases) >= count:
            break
        make.hypothesis.fuzz_one_input(rng.randbytes(rng.choice(BUFFER_SIZES)))
    return cases


def fuzz_ingest(count: int, seed_value: int, workdir: Path) -> IngestTally:
    """Publish ``count`` generated cases to a real broker; the controller must count each
    as rejected and store none of them."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    from faults.common import ControllerProcess, metric_sum, start_broker, wait_until

    tally = IngestTally()
    cases = ingest_cases(count, seed_value, tally.samples)
    t0 = time.perf_counter()
    broker = start_broker(workdir)
    controller = ControllerProcess(workdir, broker)
    controller.register([(d, o, "irrigation") for d, o in REGISTERED])
    try:
        controller.start()
        before = _db_rows(controller.db)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fuzzer",
                             protocol=MQTTProtocolVersion.MQTTv5)
        acked = Counter()
        client.on_publish = lambda *a: acked.update(["puback"])
        client.connect(broker.host, broker.port)
        client.loop_start()
        for topic_, payload, reason in cases:
            info = client.publish(topic_, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                tally.samples.append(f"publish refused locally: {topic_!r} rc {info.rc}")
                continue
            tally.published += 1
            tally.expected[reason] += 1
            while tally.published - acked["puback"] > 500:  # keep paho's queue short
                time.sleep(0.005)
        wait_until(lambda: acked["puback"] >= tally.published, 120, "every PUBACK")
        client.disconnect()
        client.loop_stop()

        def counted() -> bool:
            metrics = controller.metrics()
            tally.rejected = Counter({dict(labels)["reason"]: int(v)
                                      for (name, labels), v in metrics.items()
                                      if name == "smartcity_ingest_rejected_total"})
            return metric_sum(metrics, "smartcity_ingest_rejected_total") >= tally.published

        try:
            wait_until(counted, 300, "every fuzzed message counted as rejected", step=0.5)
        except TimeoutError as exc:
            tally.samples.append(str(exc))
        after = _db_rows(controller.db)
        tally.stored_garbage = sum(after[k] - before[k] for k in after)
        if tally.stored_garbage:
            tally.samples.append(f"rows before {before}, after {after}")
        tally.crashed = controller.proc.poll() is not None
    finally:
        controller.stop()
        broker.close()
    tally.seconds = time.perf_counter() - t0
    return tally


def _db_rows(db: Path) -> Counter:
    """Rows a unit's message could create, per table (device_state: filled-in statuses)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        out = Counter()
        for table in ("telemetry", "events", "command_replies", "status_history"):
            out[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
        out["device_state"] = conn.execute(
            "SELECT count(*) FROM device_state WHERE status_at IS NOT NULL").fetchone()[0]
        out["devices"] = conn.execute("SELECT count(*) FROM devices").fetchone()[0]
        return out
    finally:
        conn.close()


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m faults.fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every example count (default 1: the long run)")
    p.add_argument("--api-examples", type=int, default=300,
                   help="schemathesis examples per API operation (default 300)")
    p.add_argument("--ingest", type=int, default=50_000,
                   help="fuzzed messages published to the ingest (default 50000)")
    p.add_argument("--only", default="",
                   help="comma-separated name prefixes of the parts to run, e.g. "
                        "decode,modbus,api,ingest")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--driver", choices=["buffers", "engine"], default="buffers",
                   help="buffers: random byte strings through Hypothesis's fuzz_one_input "
                        "(fast, default); engine: @given with settings(max_examples)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="processes running the decoder and parser targets (default: CPUs)")
    args = p.parse_args(argv)
    # The API logs each refused request; the counts below are what matters.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    seed_value = random.randrange(2**32) if args.seed is None else args.seed
    only = [s for s in args.only.split(",") if s]

    def wanted(name: str) -> bool:
        return not only or any(name.startswith(prefix) for prefix in only)

    print(f"seed {seed_value}, scale {args.scale:g}, {args.jobs} job(s)", flush=True)
    bad = 0
    started = time.perf_counter()
    names = [t.name for t in targets() if wanted(t.name)]
    examples = {t.name: max(1, int(t.examples * args.scale)) for t in targets()}
    if names:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(_run_named, n, examples[n], seed_value, args.driver): n for n in names}
            tallies = {futures[f]: f.result()
                       for f in as_completed(futures)}
        total = Tally("all targets")
        for name in names:
            tally = tallies[name]
            print(tally.line(), flush=True)
            for sample in tally.samples:
                print("   ", sample)
            bad += tally.crashes + tally.wrong
            for key in ("examples", "accepted", "refused", "crashes", "wrong"):
                setattr(total, key, getattr(total, key) + getattr(tally, key))
        total.seconds = time.perf_counter() - started
        print(total.line().replace("/s)", "/s wall)"), flush=True)
    with tempfile.TemporaryDirectory(prefix="faults-fuzz-") as tmp:
        if wanted("api"):
            api = fuzz_api(max(1, int(args.api_examples * args.scale)) if args.scale < 1
                           else args.api_examples, seed_value, Path(tmp))
            print(api.text(), flush=True)
            for sample in api.samples[:20]:
                print("   ", sample)
            bad += api.server_errors + api.crashes + api.check_failures
        if wanted("ingest"):
            count = max(50, int(args.ingest * min(args.scale, 1.0)))
            ingest = fuzz_ingest(count, seed_value, Path(tmp))
            print(ingest.text(), flush=True)
            for sample in ingest.samples[:10]:
                print("   ", sample)
            missing = ingest.published - sum(ingest.rejected.values())
            bad += ingest.stored_garbage + int(ingest.crashed) + max(0, missing)
            bad += sum(s.startswith("decoded as valid") for s in ingest.samples)
            if ingest.rejected != ingest.expected:
                print(f"    expected rejections {dict(sorted(ingest.expected.items()))}")
                bad += 1
    print(f"total {time.perf_counter() - started:.0f} s: "
          f"{'PASS' if bad == 0 else f'FAIL ({bad})'}")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
