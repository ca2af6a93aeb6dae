"""A generic Modbus RTU register reader (RS-485 sensors) on minimalmodbus.

Many field sensors (soil moisture probes, water-quality probes) are Modbus RTU slaves
that keep each quantity in a 16-bit register, scaled by a power of ten. Describe them as
``{name: (register, decimals, signed)}``::

    probe = ModbusSensor("/dev/ttyUSB0", slave=1,
                         registers={"moisture_pct": (0, 1, False),
                                    "soil_temp_c": (1, 1, True)},
                         baudrate=9600, timeout_s=0.5)
    probe.read()   # {"moisture_pct": 31.4, "soil_temp_c": 27.9}

The port is opened with ``serial.serial_for_url``, so a test can pass ``loop://`` or a
pty, and several sensors on one bus can share one opened port (pass the serial object
instead of a URL). A port given as a URL is a ``LazyPort``: opened on first use, so an
unplugged adapter is a counted read error, not a crash at start, and closed after a
failure of the port itself, so a re-plugged adapter is opened afresh on the next read
(a slave's bad answer leaves the port open). Registers that sit next to each other are
read in one request. Every failure (no answer, bad CRC, exception reply) raises
``SensorError`` and is counted in ``counters``.

Only one thread may talk on a bus at a time; the daemons poll their sensors from one job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import minimalmodbus
import serial

from .base import ErrorCounters, SensorError

logger = logging.getLogger(__name__)

RegisterMap = Mapping[str, tuple[int, int, bool]]

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


def open_port(url: str, *, baudrate: int = 9600, timeout_s: float = 0.5,
              parity: str = "N", bytesize: int = 8, stopbits: int = 1):
    """Open a serial port (device path or pyserial URL); raises ``SensorError``."""
    try:
        return serial.serial_for_url(
            url, baudrate=baudrate, timeout=timeout_s, write_timeout=timeout_s,
            parity=_PARITY[parity], bytesize=bytesize, stopbits=stopbits,
        )
    except (serial.SerialException, OSError, ValueError, KeyError) as exc:
        raise SensorError(f"cannot open serial port {url}: {exc}") from exc


class LazyPort:
    """A sensor's serial port: a URL opened on first use and closed after an error (so
    the next read opens it afresh), or an already open serial-like object (a port shared
    by several sensors on one bus, or the simulator's), which is never closed here.
    ``open_args`` are further ``open_port`` arguments (parity, bytesize, stopbits)."""

    def __init__(self, port, *, baudrate: int, timeout_s: float, **open_args):
        self._baudrate, self._timeout_s = baudrate, timeout_s
        self._open_args = open_args
        if isinstance(port, str):
            self.name, self.port, self.owned = port, None, True
        else:
            self.name = getattr(port, "port", None) or repr(port)
            self.port, self.owned = port, False

    def get(self):
        """The open port; opens it when needed (raises ``SensorError``)."""
        if self.port is None:
            self.port = open_port(self.name, baudrate=self._baudrate, timeout_s=self._timeout_s,
                                  **self._open_args)
        return self.port

    def drop(self) -> bool:
        """Close a port we opened; True when there was one to close."""
        if not self.owned or self.port is None:
            return False
        try:
            self.port.close()
        except (OSError, serial.SerialException):
            logger.debug("closing %s failed", self.name, exc_info=True)
        self.port = None
        return True


def _runs(registers: RegisterMap, max_count: int = 32):
    """Group register numbers into (start, count) runs of neighbours."""
    numbers = sorted({reg for reg, _, _ in registers.values()})
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][0] + runs[-1][1] and runs[-1][1] < max_count:
            runs[-1][1] += 1
        else:
            runs.append([n, 1])
    return [(start, count) for start, count in runs]


class ModbusSensor:
    """Reads named, scaled registers from one Modbus RTU slave."""

    def __init__(self, port_url, slave: int, registers: RegisterMap, *,
                 baudrate: int = 9600, timeout_s: float = 0.5, function_code: int = 3,
                 parity: str = "N", stopbits: int = 1):
        if not 1 <= slave <= 247:
            raise ValueError(f"Modbus slave address must be 1-247, got {slave}")
        if function_code not in (3, 4):
            raise ValueError("function_code must be 3 (holding) or 4 (input registers)")
        if not registers:
            raise ValueError("a Modbus sensor needs at least one register")
        for name, (reg, decimals, _signed) in registers.items():
            if not 0 <= reg <= 0xFFFF or not 0 <= decimals <= 6:
                raise ValueError(f"register {name}: bad address {reg} or decimals {decimals}")
        self.slave = slave
        self.registers = dict(registers)
        self.function_code = function_code
        self.counters = ErrorCounters()
        self._lazy = LazyPort(port_url, baudrate=baudrate, timeout_s=timeout_s,
                              parity=parity, stopbits=stopbits)
        self.port_name = self._lazy.name
        self._instrument = None
        self._runs = _runs(self.registers)

    def _ensure_instrument(self):
        port = self._lazy.get()
        if self._instrument is None or self._instrument.serial is not port:
            try:
                inst = minimalmodbus.Instrument(port, self.slave)
            except (OSError, ValueError) as exc:
                raise SensorError(f"{self.port_name}: {exc}") from exc
            inst.clear_buffers_before_each_transaction = True
            self._instrument = inst
        return self._instrument

    def read(self) -> dict[str, float]:
        """Read every register; returns ``{name: value}`` or raises ``SensorError``."""
        try:
            inst = self._ensure_instrument()
            raw: dict[int, int] = {}
            for start, count in self._runs:
                values = inst.read_registers(start, count, functioncode=self.function_code)
                raw.update(zip(range(start, start + count), values, strict=True))
        except SensorError as exc:
            self.counters.failed(exc)
            raise
        except (OSError, ValueError, TypeError) as exc:
            # minimalmodbus raises ModbusException (an IOError) for no answer, bad CRC
            # and exception replies: the slave's trouble, the port stays open. Anything
            # else is the port's own (SerialException, an IOError: the adapter was
            # unplugged...): it is closed and the next read opens it afresh.
            if not isinstance(exc, minimalmodbus.ModbusException):
                self._drop_port()
            self.counters.failed(exc)
            raise SensorError(f"modbus slave {self.slave} on {self.port_name}: {exc}") from exc
        result = {}
        for name, (reg, decimals, signed) in self.registers.items():
            value = raw[reg]
            if signed and value >= 0x8000:
                value -= 0x10000
            result[name] = value / (10 ** decimals) if decimals else float(value)
        self.counters.ok()
        return result

    def _drop_port(self) -> None:
        self._lazy.drop()
        self._instrument = None

    def close(self) -> None:
        self._drop_port()
