"""EZO-style water-quality circuits (dissolved oxygen, temperature, pH) over a serial line.

Atlas Scientific's EZO circuits, and the many boards that copy their UART protocol, speak
short ASCII commands ended by a carriage return. This driver uses three of them:

- ``C,0``: stop continuous readings (the circuit then answers only when asked);
- ``*OK,1``: answer every command with ``*OK`` (or ``*ER`` for an unknown command);
- ``R``: take one reading. The circuit answers the value, then ``*OK``::

      > R\\r
      < 8.23\\r        (DO in mg/L; an RTD circuit gives e.g. 28.104, a pH circuit 7.41)
      < *OK\\r

  A DO circuit set to report % saturation too answers ``8.23,97.4``: the first field is
  used.

Status lines the circuit may send at any time (``*RS``, ``*RE``, ``*SL``, ``*WA``,
``*OV``, ``*UV``, ``*DONE``) are ignored.

The protocol has no checksum, so the driver is strict instead: a reading counts only when
it is a complete line holding nothing but a number in the form above, inside the
physically possible range for its quantity, and followed by ``*OK`` in the same exchange.
Anything else on the line (stray bytes, a partial line cut by the timeout, an impossible
value) is counted in ``garbled`` and ignored. Input waiting before the request is
discarded, and a partial line is never joined to the next exchange. What no strict parser
can catch is a digit changed in transit into another digit: the plausible-range check and
the staleness and interlock rules of the app are the guard there.

Each read is bounded: the port is read in short slices (``slice_s``) and the exchange
gives up after ``timeout_s`` of silence, or ``4 * timeout_s`` in all, or ``max_bytes``.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass

import serial

from .base import ErrorCounters, SensorError
from .modbus import LazyPort

logger = logging.getLogger(__name__)

PLAUSIBLE = {
    "do_mg_l": (0.0, 50.0),
    "temp_c": (-5.0, 60.0),
    "ph": (0.0, 14.0),
}
"""Values outside these ranges cannot come from a pond: counted as garbled."""

_VALUE = re.compile(rb"^-?\d{1,5}(?:\.\d{1,4})?(?:,-?\d{1,5}(?:\.\d{1,4})?){0,3}$")
_STATUS = {b"*RS", b"*RE", b"*SL", b"*WA", b"*OV", b"*UV", b"*DONE"}


@dataclass(frozen=True)
class Exchange:
    """What one request's response held."""

    value: float | None
    status: str  # "ok", "error" (the circuit said *ER), "timeout" (no *OK), "no_value"
    garbled: int


def parse_exchange(data: bytes, quantity: str, *, need_ok: bool = True) -> Exchange:
    """Parse the bytes received after one request (pure; never raises on any input).

    ``data`` may end in a partial line (the exchange timed out); that part is garbled.
    With ``need_ok`` (the default) the value must be followed by ``*OK``; the last value
    line before the first ``*OK`` is the reading.
    """
    low, high = PLAUSIBLE[quantity]
    *lines, tail = data.split(b"\r")
    garbled = 1 if tail.strip(b"\n") else 0
    value: float | None = None
    for line in lines:
        if line.startswith(b"\n"):  # the \n of a \r\n ending
            line = line[1:]
        if not line:
            continue
        if line == b"*OK":
            if value is None:
                return Exchange(None, "no_value", garbled)
            return Exchange(value, "ok", garbled)
        if line == b"*ER":
            return Exchange(None, "error", garbled)
        if line in _STATUS:
            continue
        if _VALUE.match(line):
            v = float(line.split(b",", 1)[0])
            if math.isfinite(v) and low <= v <= high:
                value = v
                if not need_ok:
                    return Exchange(value, "ok", garbled)
                continue
        garbled += 1
    return Exchange(None, "timeout", garbled)


def _complete(buf: bytes, need_ok: bool) -> bool:
    """True once ``buf`` holds the end of a response (no need to wait any longer)."""
    text = b"\r" + buf.replace(b"\n", b"")
    if b"\r*OK\r" in text or b"\r*ER\r" in text:
        return True
    return not need_ok and b"\r" in buf


class EzoSensor:
    """One EZO circuit (one quantity) on its own serial port.

    ``port`` is a device path or pyserial URL (opened lazily, so an unplugged adapter is a
    counted error, not a crash), or an already open serial-like object (the simulator's).
    ``read()`` returns the value or raises ``SensorError``; ``garbled`` counts lines that
    were thrown away.
    """

    def __init__(self, port, quantity: str, *, baudrate: int = 9600, timeout_s: float = 1.5,
                 slice_s: float = 0.05, max_bytes: int = 256, response_codes: bool = True,
                 monotonic=time.monotonic):
        if quantity not in PLAUSIBLE:
            raise ValueError(f"unknown quantity {quantity!r}; use one of {sorted(PLAUSIBLE)}")
        self.quantity = quantity
        self.timeout_s = timeout_s
        self.slice_s = slice_s
        self.max_bytes = max_bytes
        self.need_ok = response_codes
        self.counters = ErrorCounters()
        self.garbled = 0
        self._monotonic = monotonic
        self._lazy = LazyPort(port, baudrate=baudrate, timeout_s=slice_s)
        self.port_name = self._lazy.name
        self._set_up = False

    # -- the port ------------------------------------------------------------------------
    def _ensure_port(self):
        if self._lazy.port is None:
            self._lazy.get()
        else:
            try:
                self._lazy.port.timeout = self.slice_s
            except (AttributeError, ValueError, serial.SerialException):
                pass  # an injected port without a settable timeout
        if not self._set_up:
            self._set_up = True
            # Polling mode and response codes; their answers are read and dropped.
            self._exchange(b"C,0\r", need_ok=True)
            self._exchange(b"*OK,1\r", need_ok=True)
        return self._lazy.port

    def _exchange(self, request: bytes, need_ok: bool) -> bytes:
        port = self._lazy.port
        try:
            port.reset_input_buffer()
            port.write(request)
            buf = bytearray()
            silent_s = 0.0
            start = self._monotonic()
            while len(buf) < self.max_bytes:
                chunk = port.read(min(64, self.max_bytes - len(buf)))
                if chunk:
                    buf += chunk
                    silent_s = 0.0
                    if _complete(bytes(buf), need_ok):
                        break
                else:
                    silent_s += self.slice_s
                    if silent_s >= self.timeout_s:
                        break
                if self._monotonic() - start > 4 * self.timeout_s:
                    break
            return bytes(buf)
        except (OSError, serial.SerialException, ValueError) as exc:
            self._drop_port()
            raise SensorError(f"{self.port_name}: {exc}") from exc

    def _drop_port(self):
        if self._lazy.drop():
            self._set_up = False

    # -- reading -----------------------------------------------------------------------
    def read(self) -> float:
        try:
            self._ensure_port()
            data = self._exchange(b"R\r", self.need_ok)
        except SensorError as exc:
            self.counters.failed(exc)
            raise
        result = parse_exchange(data, self.quantity, need_ok=self.need_ok)
        if result.garbled:
            self.garbled += result.garbled
            logger.debug("%s: %d garbled line(s) in %r", self.port_name, result.garbled, data)
        if result.value is None:
            reason = {"error": "circuit answered *ER", "no_value": "*OK without a reading",
                      "timeout": "no complete answer before the timeout"}[result.status]
            exc = SensorError(f"EZO {self.quantity} on {self.port_name}: {reason}")
            self.counters.failed(exc)
            raise exc
        self.counters.ok()
        return result.value

    def close(self) -> None:
        self._drop_port()
