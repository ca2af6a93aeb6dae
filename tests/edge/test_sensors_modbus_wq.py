"""Modbus RTU water-quality probes: scaled registers, CRC, plausibility, garbage."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.sensors.base import SensorError
from edge.sensors.modbus_wq import ModbusWaterQuality
from edge.sim.fish_feeder import SimModbusPort, modbus_crc

REGISTERS = {"do_mg_l": (0, 2, False), "temp_c": (1, 1, True), "ph": (2, 2, False)}
TRUE = {0: 823, 1: 289, 2: 781}  # 8.23 mg/L, 28.9 degC, pH 7.81


def probe(port, **kw):
    return ModbusWaterQuality(port, 1, REGISTERS, **kw)


class ReplyPort(SimModbusPort):
    """A bus whose slave answers with ``make(request)`` instead of a correct frame."""

    def __init__(self, make):
        super().__init__("reply", {})
        self.make = make

    def _answer(self, data):
        self._rx += self.make(data)


def good_frame(regs=TRUE, count=3):
    body = bytes([1, 3, 2 * count]) + b"".join(regs[r].to_bytes(2, "big") for r in range(count))
    return body + modbus_crc(body)


def test_modbus_probe_reads_scaled_values_with_sign():
    port = SimModbusPort("sim", {1: lambda: {0: 823, 1: (-15) & 0xFFFF, 2: 781}})
    assert probe(port).read() == {"do_mg_l": 8.23, "temp_c": -1.5, "ph": 7.81}


def test_modbus_bad_crc_counted_as_garbled():
    frame = bytearray(good_frame())
    frame[-1] ^= 0x55
    p = probe(ReplyPort(lambda req: bytes(frame)))
    with pytest.raises(SensorError):
        p.read()
    assert p.garbled == 1 and p.counters.errors == 1


def test_modbus_no_answer_is_an_error_not_garbled():
    p = probe(SimModbusPort("sim", {7: lambda: TRUE}))  # nobody at address 1
    with pytest.raises(SensorError):
        p.read()
    assert p.garbled == 0 and p.counters.errors == 1


def test_modbus_implausible_value_refused():
    p = probe(SimModbusPort("sim", {1: lambda: {0: 9000, 1: 289, 2: 781}}))  # DO 90 mg/L
    with pytest.raises(SensorError, match="outside"):
        p.read()
    assert p.garbled == 1


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=16))
def test_modbus_garbage_answers_never_become_readings(answer):
    p = probe(ReplyPort(lambda req: answer))
    try:
        values = p.read()
    except SensorError:
        return
    assert values == {"do_mg_l": 8.23, "temp_c": 28.9, "ph": 7.81}  # only a true frame


@settings(max_examples=300, derandomize=True)
@given(st.integers(min_value=0, max_value=10), st.integers(min_value=1, max_value=255),
       st.sampled_from(["xor", "delete", "cut"]))
def test_modbus_single_corruption_of_a_true_frame_always_refused(at, value, how):
    frame = good_frame()
    if how == "xor":
        bad = frame[:at] + bytes([frame[at] ^ value]) + frame[at + 1:]
    elif how == "delete":
        bad = frame[:at] + frame[at + 1:]
    else:
        bad = frame[:at]
    p = probe(ReplyPort(lambda req: bad))
    with pytest.raises(SensorError):
        p.read()


def test_modbus_noisy_bus_values_are_real_or_refused():
    rng = random.Random(1)
    port = SimModbusPort("sim", {1: lambda: {0: rng.randint(200, 900), 1: 289, 2: 781}},
                         garble_rate=0.4, rng=random.Random(9))
    p = probe(port)
    ok = 0
    for _ in range(200):
        try:
            v = p.read()
        except SensorError:
            continue
        ok += 1
        assert 2.0 <= v["do_mg_l"] <= 9.0 and v["temp_c"] == 28.9 and v["ph"] == 7.81
    assert 80 < ok < 200
    assert p.garbled > 20


def test_modbus_unknown_quantity_rejected_at_construction():
    with pytest.raises(ValueError, match="unknown quantities"):
        ModbusWaterQuality("loop://", 1, {"salinity_ppt": (3, 1, False)})
