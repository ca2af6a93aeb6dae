"""Hopper level: how much feed is left above a feeder.

Two ways to know it:

- ``UltrasonicLevel``: an HC-SR04-style ultrasonic sensor looking down into the hopper,
  read through gpiozero's ``DistanceSensor`` (trigger and echo pins; the echo line needs
  a 5 V -> 3.3 V divider). The distance to the feed surface gives the level between the
  configured full and empty distances. Cheap, no contact, but it sees the top of the feed
  only: a cone or a bridge of pellets fools it.
- ``LoadCell``: the hopper hangs on load cells read by a small amplifier board (e.g. an
  HX711 with a microcontroller) that sends the net weight over a serial line, a few lines
  per second, in the line protocol below. It weighs the feed itself, so it also measures
  what each feeding took out.

The load-cell line protocol
---------------------------
ASCII, one reading per line, ended by ``\\n`` (``\\r\\n`` is fine)::

    W,12345.6*D30C

- ``W,`` then the weight in grams: an optional minus sign, 1-7 digits, an optional
  decimal point with 1-3 digits;
- ``*`` then the checksum: CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF,
  no reflection, no final XOR) of every byte before the ``*``, as 4 upper-case hex digits.
  In Python: ``binascii.crc_hqx(b"W,12345.6", 0xFFFF)``. A CRC rather than an XOR
  because an XOR cannot see two swapped digits (``W,12354.6`` has the XOR of
  ``W,12345.6``); this CRC catches every error burst up to 16 bits long.

A line that does not match exactly, or whose checksum is wrong, is counted in ``garbled``
and ignored. ``read()`` takes the newest good line among those waiting (the board streams,
so old lines are history); if none arrives within ``timeout_s`` it raises ``SensorError``.
"""

from __future__ import annotations

import binascii
import logging
import re
import time

import serial
from gpiozero import DistanceSensor

from .base import ErrorCounters, SensorError
from .modbus import LazyPort

logger = logging.getLogger(__name__)

_LINE = re.compile(rb"^(W,(-?\d{1,7}(?:\.\d{1,3})?))\*([0-9A-F]{4})$")


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (``0x29B1`` for ``b"123456789"``)."""
    return binascii.crc_hqx(data, 0xFFFF)


def format_weight_line(grams: float) -> bytes:
    """The line a load-cell board sends for ``grams`` (used by the simulator and tests)."""
    body = f"W,{grams:.1f}".encode("ascii")
    return body + b"*%04X\n" % crc16_ccitt(body)


def parse_weight_line(line: bytes) -> float | None:
    """The grams in one line (without its ``\\n``), or None when it is not a good line."""
    m = _LINE.match(line.rstrip(b"\r"))
    if m is None:
        return None
    if int(m.group(3), 16) != crc16_ccitt(m.group(1)):
        return None
    return float(m.group(2))


def parse_weight_stream(data: bytes) -> tuple[list[float], int, bytes]:
    """Split a chunk of the stream into good readings, a garbled count and the rest.

    The rest is the trailing partial line (no ``\\n`` yet), to be prefixed to the next
    chunk of the same read; pure, never raises.
    """
    *lines, rest = data.split(b"\n")
    values: list[float] = []
    garbled = 0
    for line in lines:
        if not line.strip(b"\r"):
            continue
        value = parse_weight_line(line)
        if value is None:
            garbled += 1
        else:
            values.append(value)
    return values, garbled, rest


class LoadCell:
    """Net hopper weight from a load-cell board on a serial port (protocol above)."""

    def __init__(self, port, *, baudrate: int = 9600, timeout_s: float = 0.5,
                 slice_s: float = 0.05, max_bytes: int = 4096, monotonic=time.monotonic):
        self.timeout_s = timeout_s
        self.slice_s = slice_s
        self.max_bytes = max_bytes
        self.counters = ErrorCounters()
        self.garbled = 0
        self._monotonic = monotonic
        self._lazy = LazyPort(port, baudrate=baudrate, timeout_s=slice_s)
        self.port_name = self._lazy.name

    def read(self) -> float:
        """The newest good weight (grams) waiting, else the next one within the timeout."""
        try:
            values, garbled = self._collect(self._lazy.get())
        except (OSError, serial.SerialException, ValueError) as exc:
            self._lazy.drop()
            err = exc if isinstance(exc, SensorError) else SensorError(
                f"{self.port_name}: {exc}")
            self.counters.failed(err)
            raise err from exc
        self.garbled += garbled
        if not values:
            err = SensorError(f"load cell on {self.port_name}: no good line within "
                              f"{self.timeout_s:g} s ({garbled} garbled)")
            self.counters.failed(err)
            raise err
        self.counters.ok()
        return values[-1]

    def _collect(self, port) -> tuple[list[float], int]:
        values: list[float] = []
        garbled = 0
        rest = b""
        silent_s = 0.0
        seen = 0
        start = self._monotonic()
        # First whatever is waiting (the stream's recent past), then wait for a line.
        while seen < self.max_bytes:
            waiting = getattr(port, "in_waiting", 0) or 0
            chunk = port.read(max(1, min(waiting, self.max_bytes - seen)) if waiting else 64)
            if chunk:
                seen += len(chunk)
                silent_s = 0.0
                got, bad, rest = parse_weight_stream(rest + chunk)
                values += got
                garbled += bad
                if values and not (getattr(port, "in_waiting", 0) or 0):
                    break
            else:
                silent_s += self.slice_s
                if silent_s >= self.timeout_s:
                    break
            if self._monotonic() - start > 4 * self.timeout_s:
                break
        if rest.strip(b"\r"):
            garbled += 1  # a partial line left at the end is never joined to the next read
        return values, garbled

    def close(self) -> None:
        self._lazy.drop()


class UltrasonicLevel:
    """Hopper level from the distance to the feed surface.

    ``source`` is anything with a ``distance`` attribute in metres: gpiozero's
    ``DistanceSensor`` (see ``from_pins``) or the simulator's stand-in. A source that also
    has ``last_echo_s`` (seconds on ``time.monotonic`` of its last good echo) is refused
    as stale when that is older than ``max_echo_age_s``: gpiozero keeps averaging its last
    readings when the sensor stops answering, which must not pass for a level.
    """

    def __init__(self, source, *, full_distance_m: float, empty_distance_m: float,
                 max_echo_age_s: float = 5.0, monotonic=time.monotonic):
        if not 0 < full_distance_m < empty_distance_m:
            raise ValueError("need 0 < full_distance_m < empty_distance_m")
        self.source = source
        self.full_distance_m = full_distance_m
        self.empty_distance_m = empty_distance_m
        self.max_echo_age_s = max_echo_age_s
        self._monotonic = monotonic
        self.counters = ErrorCounters()

    @classmethod
    def from_pins(cls, *, trigger_pin: int, echo_pin: int, pin_factory,
                  full_distance_m: float, empty_distance_m: float) -> UltrasonicLevel:
        try:
            sensor = _EchoTimedDistanceSensor(
                echo=echo_pin, trigger=trigger_pin, max_distance=max(1.0, empty_distance_m * 1.5),
                partial=True, pin_factory=pin_factory)
        except Exception as exc:  # noqa: BLE001 - gpiozero raises many kinds here
            raise SensorError(f"ultrasonic sensor on GPIO{trigger_pin}/{echo_pin}: {exc}") from exc
        return cls(sensor, full_distance_m=full_distance_m, empty_distance_m=empty_distance_m)

    def read_pct(self) -> float:
        """Level in percent of the hopper's height (0 = empty, 100 = full)."""
        last = getattr(self.source, "last_echo_s", False)
        if last is not False and (last is None
                                  or self._monotonic() - last > self.max_echo_age_s):
            err = SensorError("ultrasonic sensor: no echo (check its wiring)")
            self.counters.failed(err)
            raise err
        try:
            d = float(self.source.distance)
        except Exception as exc:  # noqa: BLE001 - a driver fault must not stop the loop
            err = SensorError(f"ultrasonic read failed: {exc}")
            self.counters.failed(err)
            raise err from exc
        if not 0.01 <= d <= 10:  # an HC-SR04 cannot see closer than about 2 cm
            err = SensorError(f"ultrasonic distance {d!r} m is not plausible")
            self.counters.failed(err)
            raise err
        span = self.empty_distance_m - self.full_distance_m
        pct = (self.empty_distance_m - d) / span * 100.0
        self.counters.ok()
        return round(min(100.0, max(0.0, pct)), 1)

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


class _EchoTimedDistanceSensor(DistanceSensor):
    """gpiozero's ``DistanceSensor``, noting when its last good echo came.

    Built with ``partial=True`` so that reading it never blocks (with ``partial=False``
    gpiozero waits for a full queue of echoes: forever if the sensor is unplugged).
    """

    last_echo_s: float | None = None

    def _read(self):  # gpiozero 2.x sampling hook, called by its queue thread
        try:
            value = super()._read()
        except AttributeError:
            # close() drops the trigger while the sampling thread may be mid-read; there
            # is no reading then (and staleness covers any other cause).
            return None
        if value is not None:
            self.last_echo_s = time.monotonic()
        return value
