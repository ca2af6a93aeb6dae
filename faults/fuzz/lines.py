"""Targets for the serial line protocols: the soil probe's lines, the EZO circuits'
exchanges and ``EzoSensor.read``, the load cell's weight stream and ``LoadCell.read``."""

from __future__ import annotations

import math
from collections.abc import Callable

from hypothesis import strategies as st

from edge.sensors.base import SensorError
from edge.sensors.ezo import PLAUSIBLE, EzoSensor, parse_exchange
from edge.sensors.hopper import LoadCell, format_weight_line, parse_weight_stream
from edge.sensors.soil import parse_line, xor_checksum
from edge.sim.fish_feeder import _SimPort
from faults.fuzz.base import Target, Wrong


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


def targets() -> list[Target]:
    return [
        Target("soil.parse_line", SOIL_LINES, _soil_check, 100_000),
        Target("ezo.parse_exchange", st.tuples(EZO_DATA, st.sampled_from(sorted(PLAUSIBLE)),
                                               st.booleans()), _ezo_check, 100_000),
        Target("ezo.read", st.tuples(EZO_DATA, st.sampled_from(sorted(PLAUSIBLE))),
               _ezo_read_check, 100_000),
        Target("hopper.parse_stream", WEIGHT_STREAMS, _weight_check, 100_000),
        Target("hopper.loadcell_read", st.tuples(WEIGHT_STREAMS, st.integers(1, 64)),
               _loadcell_check, 100_000),
    ]
