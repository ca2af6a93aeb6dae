"""Targets for Modbus RTU: answers on a loopback bus to ``ModbusSensor.read`` and
``ModbusWaterQuality.read`` (minimalmodbus's CRC and framing included)."""

from __future__ import annotations

import minimalmodbus
from hypothesis import strategies as st

from edge.sensors.base import SensorError
from edge.sensors.ezo import PLAUSIBLE
from edge.sensors.modbus import ModbusSensor
from edge.sensors.modbus_wq import ModbusWaterQuality
from edge.sim.fish_feeder import SimModbusPort, modbus_crc
from faults.fuzz.base import Target, Wrong

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


def targets() -> list[Target]:
    return [
        Target("modbus.read", _modbus_answers(2), _modbus_check, 100_000),
        Target("modbus_wq.read", _modbus_answers(3), _modbus_wq_check, 100_000),
    ]
