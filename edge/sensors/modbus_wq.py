"""Modbus RTU water-quality probes (dissolved oxygen, temperature, pH on RS-485).

Multi-parameter pond probes with an RS-485 port keep each quantity in a 16-bit register,
scaled by a power of ten (e.g. DO 823 with 2 decimals = 8.23 mg/L; temperature 289 with
1 decimal = 28.9 degC, signed). This is ``edge.sensors.modbus.ModbusSensor`` (minimalmodbus
on a port opened with ``serial.serial_for_url``; CRC-16 checked by minimalmodbus, timeouts
from the port) plus what a pond needs on top:

- quantities are named as the fish feeder's rules know them (``do_mg_l``, ``temp_c``,
  ``ph``);
- a value outside what a pond can physically show (``edge.sensors.ezo.PLAUSIBLE``) is a
  garbled answer: counted in ``garbled``, the whole read refused (``SensorError``), so a
  probe in trouble never lands as data.

A frame with a bad CRC, a short frame or no answer is refused by minimalmodbus and
counted by ``ModbusSensor.counters``; those and the implausible values are also counted
in ``garbled`` when they are bad bytes rather than silence.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from .base import SensorError
from .ezo import PLAUSIBLE
from .modbus import ModbusSensor

logger = logging.getLogger(__name__)


class ModbusWaterQuality:
    """A water-quality probe: ``read() -> {"do_mg_l": 8.23, "temp_c": 28.9, ...}``.

    ``registers`` maps quantity -> ``(register, decimals, signed)``; ``port`` is a URL or
    an open serial-like object shared with the other probes on the same bus.
    """

    def __init__(self, port, slave: int, registers: Mapping[str, tuple[int, int, bool]], *,
                 baudrate: int = 9600, timeout_s: float = 0.5, function_code: int = 3):
        unknown = set(registers) - set(PLAUSIBLE)
        if unknown:
            raise ValueError(f"unknown quantities {sorted(unknown)}; use {sorted(PLAUSIBLE)}")
        self.modbus = ModbusSensor(port, slave, registers, baudrate=baudrate,
                                   timeout_s=timeout_s, function_code=function_code)
        self.garbled = 0

    @property
    def counters(self):
        return self.modbus.counters

    @property
    def quantities(self) -> list[str]:
        return list(self.modbus.registers)

    def read(self) -> dict[str, float]:
        try:
            values = self.modbus.read()
        except SensorError as exc:
            cause = exc.__cause__
            if cause is not None and type(cause).__name__ in (
                    "InvalidResponseError", "LocalEchoError"):
                self.garbled += 1
            raise
        for quantity, value in values.items():
            low, high = PLAUSIBLE[quantity]
            if not (math.isfinite(value) and low <= value <= high):
                self.garbled += 1
                exc = SensorError(f"modbus slave {self.modbus.slave}: {quantity} = {value} "
                                  f"is outside {low}..{high}")
                self.modbus.counters.failed(exc)
                raise exc
        return values

    def close(self) -> None:
        self.modbus.close()
