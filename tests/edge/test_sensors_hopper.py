"""Hopper level: the load-cell line protocol (CRC-16) and the ultrasonic level."""

from __future__ import annotations

import binascii
import random
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.sensors.base import SensorError
from edge.sensors.hopper import (
    LoadCell,
    UltrasonicLevel,
    crc16_ccitt,
    format_weight_line,
    parse_weight_line,
    parse_weight_stream,
)
from edge.sim.fish_feeder import SimLoadCellPort

LINE = re.compile(rb"^(W,(-?\d{1,7}(?:\.\d{1,3})?))\*([0-9A-F]{4})\r?$")


class StreamPort:
    """A board that streamed ``data`` before the read; delivered in chunks."""

    def __init__(self, data: bytes, chunk: int):
        self._chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
        self.port = "stream"

    @property
    def in_waiting(self):
        return len(self._chunks[0]) if self._chunks else 0

    def read(self, size=1):
        if not self._chunks:
            return b""
        c = self._chunks.pop(0)
        if len(c) > size:
            self._chunks.insert(0, c[size:])
            c = c[:size]
        return c

    def close(self):
        pass


def test_crc16_check_value_and_documented_example():
    assert crc16_ccitt(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value
    line = format_weight_line(12345.6)
    assert line == b"W,12345.6*%04X\n" % binascii.crc_hqx(b"W,12345.6", 0xFFFF)
    assert parse_weight_line(line[:-1]) == 12345.6
    assert parse_weight_line(line[:-1] + b"\r") == 12345.6


def test_swapped_digits_rejected_where_an_xor_would_pass():
    good = format_weight_line(12345.6)[:-1]
    swapped = good.replace(b"12345", b"12354")
    assert parse_weight_line(swapped) is None


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=40))
def test_weight_parse_any_bytes_never_crashes_never_invents(data):
    value = parse_weight_line(data)
    if value is not None:
        m = LINE.match(data)
        assert m is not None and int(m.group(3), 16) == crc16_ccitt(m.group(1))
        assert value == float(m.group(2))


@settings(max_examples=400, derandomize=True)
@given(st.floats(min_value=-500, max_value=99999, allow_nan=False),
       st.integers(min_value=0, max_value=30), st.integers(min_value=0, max_value=255),
       st.sampled_from(["substitute", "delete", "insert", "swap"]))
def test_weight_single_corruption_never_yields_another_value(grams, at, byte, how):
    line = format_weight_line(grams)[:-1]
    sent = parse_weight_line(line)
    at %= len(line)
    if how == "substitute":
        bad = line[:at] + bytes([byte]) + line[at + 1:]
    elif how == "delete":
        bad = line[:at] + line[at + 1:]
    elif how == "insert":
        bad = line[:at] + bytes([byte]) + line[at:]
    else:
        at = min(at, len(line) - 2)
        bad = line[:at] + line[at + 1:at + 2] + line[at:at + 1] + line[at + 2:]
    assert parse_weight_line(bad) in (None, sent)


good_line = st.floats(min_value=0, max_value=60000, allow_nan=False).map(format_weight_line)
noise = st.binary(min_size=1, max_size=8)


@settings(max_examples=200, derandomize=True)
@given(st.lists(st.one_of(good_line, noise, good_line.map(lambda b: b[:len(b) // 2])),
                min_size=1, max_size=12),
       st.integers(min_value=1, max_value=9))
def test_loadcell_noisy_stream_reads_only_sent_weights(parts, chunk):
    data = b"".join(parts)
    sent = {parse_weight_line(p[:-1]) for p in parts if p.endswith(b"\n")} - {None}
    cell = LoadCell(StreamPort(data, chunk), timeout_s=0.1)
    try:
        value = cell.read()
    except SensorError:
        return
    assert value in sent
    assert value == parse_weight_stream(data)[0][-1]  # the newest good line


def test_loadcell_takes_newest_good_line_and_counts_garbled():
    data = (format_weight_line(1000.0) + b"W,999.0*0000\n" + b"\xff\xfe\n"
            + format_weight_line(990.5))
    cell = LoadCell(StreamPort(data, 7), timeout_s=0.1)
    assert cell.read() == 990.5
    assert cell.garbled == 2


def test_loadcell_silent_board_times_out():
    cell = LoadCell(StreamPort(b"", 1), timeout_s=0.2)
    with pytest.raises(SensorError, match="no good line"):
        cell.read()
    assert cell.counters.errors == 1


def test_loadcell_simulated_board_with_noise_and_garbling():
    port = SimLoadCellPort("sim", lambda: 20_000.0, noise_g=2.0, garble_rate=0.3,
                           rng=random.Random(2))
    cell = LoadCell(port, timeout_s=0.1)
    got = []
    for _ in range(200):
        try:
            got.append(cell.read())
        except SensorError:
            pass
    assert len(got) > 100
    assert all(abs(v - 20_000) < 15 for v in got)
    assert cell.garbled > 20


class FakeDistance:
    def __init__(self, d):
        self.distance = d


def test_ultrasonic_level_between_full_and_empty():
    level = UltrasonicLevel(FakeDistance(0.485), full_distance_m=0.12, empty_distance_m=0.85)
    assert level.read_pct() == pytest.approx(50.0, abs=0.1)
    level.source.distance = 0.05  # above the full mark: a heap, counts as full
    assert level.read_pct() == 100.0
    level.source.distance = 1.2  # past the bottom (echo off the frame): empty
    assert level.read_pct() == 0.0


def test_ultrasonic_implausible_distance_is_an_error():
    level = UltrasonicLevel(FakeDistance(float("nan")), full_distance_m=0.1,
                            empty_distance_m=0.8)
    with pytest.raises(SensorError):
        level.read_pct()
    assert level.counters.errors == 1


@pytest.mark.filterwarnings("ignore::gpiozero.PWMSoftwareFallback")
def test_ultrasonic_through_gpiozero_distance_sensor_on_mock_pins():
    from gpiozero.pins.mock import MockFactory, MockTriggerPin

    factory = MockFactory()
    echo = factory.pin(24)
    # Sound travels 343 m/s: an echo of 10 ms is 1.715 m to the feed surface. (A long
    # echo, so the mock pins' thread timing hardly shows in the result.)
    factory.pin(23, pin_class=MockTriggerPin, echo_pin=echo, echo_time=0.010)
    level = UltrasonicLevel.from_pins(trigger_pin=23, echo_pin=24, pin_factory=factory,
                                      full_distance_m=0.2, empty_distance_m=3.0)
    try:
        deadline = time.monotonic() + 3
        pct = None
        while time.monotonic() < deadline:
            try:
                pct = level.read_pct()
            except SensorError:
                pct = None
            if pct is not None and 0 < pct < 100:
                break
            time.sleep(0.05)
        assert pct == pytest.approx((3.0 - 1.715) / 2.8 * 100, abs=15)
        assert level.source.last_echo_s is not None
    finally:
        level.close()


@pytest.mark.filterwarnings("ignore::gpiozero.PWMSoftwareFallback")
@pytest.mark.filterwarnings("ignore::gpiozero.DistanceSensorNoEcho")
def test_ultrasonic_unplugged_sensor_errors_at_once_never_blocks():
    from gpiozero.pins.mock import MockFactory

    level = UltrasonicLevel.from_pins(trigger_pin=23, echo_pin=24, pin_factory=MockFactory(),
                                      full_distance_m=0.12, empty_distance_m=0.85)
    try:
        start = time.monotonic()
        with pytest.raises(SensorError, match="no echo"):
            level.read_pct()
        assert time.monotonic() - start < 0.5
    finally:
        level.close()
