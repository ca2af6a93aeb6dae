"""Soil-moisture sensors: three ways a probe reaches the Pi.

Every soil sensor here has the same small face: ``read() -> float`` gives the soil's
volumetric water content in percent (``moisture_pct``) or raises ``SensorError``, and
``counters`` counts reads and errors.

- ``AdcSoilSensor``: a capacitive or resistive probe on an MCP3008 ADC (SPI, through
  gpiozero, so tests use gpiozero's mock pins). The raw 0..1 value is turned into percent
  by a two-point ``Calibration`` taken in the field (probe in dry soil, probe in soaked
  soil).
- ``SerialSoilSensor``: a probe node that speaks a text line protocol over a serial line
  (``LineSensor``), e.g. ``moisture_pct=31.4,soil_temp_c=27.9*5C``.
- ``ModbusSoilSensor``: an RS-485 Modbus RTU probe (``edge.sensors.modbus.ModbusSensor``).

The line protocol (``LineSensor``)
----------------------------------
One reading per line, ended by ``\\n`` (``\\r\\n`` is fine), ASCII::

    moisture_pct=31.4,soil_temp_c=27.9
    moisture_pct=31.4 soil_temp_c=27.9*1F
    31.4

Fields are ``key=value`` pairs separated by commas, semicolons or spaces; a bare number is
the value of the configured key. An optional ``*HH`` suffix is a checksum: the XOR of every
byte before the ``*``, in hex (as in NMEA). A line with a wrong checksum, no number, or a
value that is not finite is counted as an error and ignored, never used. A probe that only
answers when asked gets a ``query`` (e.g. ``"R\\r\\n"``) written before each read; one that
talks on its own is read by taking the newest complete line waiting. Its port is a
``LazyPort`` (``edge.sensors.modbus``), as for the other serial readers: opened on first
use, closed after a failure of the port itself so the next read opens it afresh.
"""

from __future__ import annotations

import logging
import math
import re
import statistics
from dataclasses import dataclass

import serial

from .base import ErrorCounters, SensorError
from .modbus import LazyPort, ModbusSensor

logger = logging.getLogger(__name__)

_SPLIT = re.compile(r"[,;\s]+")


def xor_checksum(body: bytes) -> int:
    value = 0
    for b in body:
        value ^= b
    return value


def parse_line(raw: bytes, *, require_checksum: bool = False,
               bare_key: str = "value") -> dict[str, float]:
    """Parse one line of the protocol above; raises ``SensorError`` when garbled."""
    line = raw.rstrip(b"\r\n")
    if not raw.endswith(b"\n"):
        raise SensorError(f"incomplete line {raw!r}")
    if b"*" in line:
        body, _, given = line.rpartition(b"*")
        try:
            expected = int(given, 16)
        except ValueError:
            raise SensorError(f"bad checksum field in {raw!r}") from None
        if len(given) != 2 or xor_checksum(body) != expected:
            raise SensorError(f"checksum mismatch in {raw!r}")
        line = body
    elif require_checksum:
        raise SensorError(f"missing checksum in {raw!r}")
    try:
        text = line.decode("ascii").strip()
    except UnicodeDecodeError:
        raise SensorError(f"not ASCII: {raw!r}") from None
    if not text:
        raise SensorError("empty line")
    values: dict[str, float] = {}
    for part in _SPLIT.split(text):
        if not part:
            continue
        key, sep, val = part.partition("=")
        if not sep:
            key, val = bare_key, part
        try:
            number = float(val)
        except ValueError:
            raise SensorError(f"not a number: {part!r} in {raw!r}") from None
        if not math.isfinite(number):
            raise SensorError(f"not a finite number: {part!r}")
        values[key.strip()] = number
    if not values:
        raise SensorError(f"no number in {raw!r}")
    return values


class LineSensor:
    """A serial probe that sends ``key=value`` lines (see the module docstring)."""

    def __init__(self, port_url, *, baudrate: int = 9600, timeout_s: float = 1.0,
                 query: str | None = None, require_checksum: bool = False,
                 bare_key: str = "value", max_lines: int = 64):
        self._lazy = LazyPort(port_url, baudrate=baudrate, timeout_s=timeout_s)
        self.port_name = self._lazy.name
        self._timeout_s = timeout_s
        self.query = query.encode("ascii") if query else None
        self.require_checksum = require_checksum
        self.bare_key = bare_key
        self.max_lines = max_lines
        self.counters = ErrorCounters()

    def _lines(self, port) -> list[bytes]:
        if self.query is not None:
            port.reset_input_buffer()
            port.write(self.query)
            return [port.readline()]
        lines = []
        while port.in_waiting and len(lines) < self.max_lines:
            lines.append(port.readline())
        if not lines:
            lines.append(port.readline())  # wait up to the timeout for one line
        return lines

    def read(self) -> dict[str, float]:
        """The newest good line's values; raises ``SensorError`` when there is none."""
        try:
            lines = self._lines(self._lazy.get())
        except SensorError as exc:  # the port did not open
            self.counters.failed(exc)
            raise
        except (serial.SerialException, OSError) as exc:
            self.counters.failed(exc)
            self._lazy.drop()  # reopen next time (an adapter that was unplugged)
            raise SensorError(f"{self.port_name}: {exc}") from exc
        if lines == [b""]:
            self.counters.failed("no answer")
            raise SensorError(f"{self.port_name}: no line within {self._timeout_s} s")
        last_error: SensorError | None = None
        for raw in reversed(lines):
            try:
                values = parse_line(raw, require_checksum=self.require_checksum,
                                    bare_key=self.bare_key)
            except SensorError as exc:
                logger.debug("%s: %s", self.port_name, exc)
                self.counters.failed(exc)
                last_error = last_error or exc
                continue
            self.counters.ok()
            return values
        raise SensorError(f"{self.port_name}: {last_error}")

    def close(self) -> None:
        self._lazy.drop()


def _check_pct(value: float, source: str) -> float:
    if not 0.0 <= value <= 100.0:
        raise SensorError(f"{source}: moisture {value} % is outside 0-100")
    return value


class SerialSoilSensor:
    """``moisture_pct`` from one key of a ``LineSensor``."""

    def __init__(self, line_sensor: LineSensor, key: str = "moisture_pct"):
        self.line = line_sensor
        self.key = key

    @property
    def counters(self) -> ErrorCounters:
        return self.line.counters

    def read(self) -> float:
        values = self.line.read()
        if self.key not in values:
            self.counters.failed(f"no {self.key}")
            raise SensorError(f"{self.line.port_name}: line has no {self.key!r}: {values}")
        try:
            return _check_pct(values[self.key], self.line.port_name)
        except SensorError as exc:
            self.counters.failed(exc)
            raise

    def close(self) -> None:
        self.line.close()


class ModbusSoilSensor:
    """``moisture_pct`` from one named register of a ``ModbusSensor``."""

    def __init__(self, modbus: ModbusSensor, name: str = "moisture_pct"):
        if name not in modbus.registers:
            raise ValueError(f"register {name!r} is not configured")
        self.modbus = modbus
        self.name = name

    @property
    def counters(self) -> ErrorCounters:
        return self.modbus.counters

    def read(self) -> float:
        value = self.modbus.read()[self.name]
        try:
            return _check_pct(value, f"modbus slave {self.modbus.slave}")
        except SensorError as exc:
            self.counters.failed(exc)
            raise

    def close(self) -> None:
        self.modbus.close()


@dataclass(frozen=True)
class Calibration:
    """Two field points: the raw ADC value (0..1) in dry and in soaked soil."""

    dry_raw: float
    wet_raw: float
    dry_pct: float = 0.0
    wet_pct: float = 100.0

    def __post_init__(self):
        if abs(self.dry_raw - self.wet_raw) < 0.01:
            raise ValueError("calibration: dry_raw and wet_raw must differ")

    def pct(self, raw: float) -> float:
        frac = (raw - self.dry_raw) / (self.wet_raw - self.dry_raw)
        pct = self.dry_pct + frac * (self.wet_pct - self.dry_pct)
        return min(100.0, max(0.0, pct))


class AdcSoilSensor:
    """A probe on one channel of an MCP3008 (gpiozero, pin factory passed in).

    A reading is the median of ``samples`` conversions. A raw value stuck at either rail
    (below ``rail`` or above ``1 - rail``) means a cut wire or a short, and is an error.
    """

    def __init__(self, channel: int, *, calibration: Calibration, pin_factory,
                 device: int = 0, samples: int = 5, rail: float = 0.005):
        from gpiozero import MCP3008, Device

        self.channel = channel
        self.calibration = calibration
        self.samples = max(1, samples)
        self.rail = rail
        self.counters = ErrorCounters()
        # gpiozero 2.0's software SPI bus (used off a Pi, e.g. on mock pins) builds its
        # base Device without the factory passed in, so it asks for a process-wide
        # default one, which does not exist there. Lend it ours for the construction only.
        previous = Device.pin_factory
        try:
            if previous is None:
                Device.pin_factory = pin_factory
            self._adc = MCP3008(channel=channel, device=device, pin_factory=pin_factory)
        except Exception as exc:  # noqa: BLE001 - gpiozero raises many kinds here
            raise SensorError(f"MCP3008 channel {channel}: {exc}") from exc
        finally:
            Device.pin_factory = previous

    def read_raw(self) -> float:
        try:
            values = [float(self._adc.value) for _ in range(self.samples)]
        except Exception as exc:  # noqa: BLE001 - an SPI failure of any kind
            self.counters.failed(exc)
            raise SensorError(f"MCP3008 channel {self.channel}: {exc}") from exc
        return statistics.median(values)

    def read(self) -> float:
        raw = self.read_raw()
        if raw < self.rail or raw > 1.0 - self.rail:
            self.counters.failed(f"raw {raw:.3f} at a rail")
            raise SensorError(
                f"MCP3008 channel {self.channel}: raw {raw:.3f} at a rail (wire cut or short?)"
            )
        self.counters.ok()
        return self.calibration.pct(raw)

    def close(self) -> None:
        self._adc.close()
