"""Serial stand-ins for the fish feeder simulator (``edge.sim.fish_feeder``).

The probes
    ``SimEzoPort`` answers the EZO text protocol, ``SimModbusPort`` is a Modbus RTU bus
    with probe slaves (real frames and CRCs, parsed and answered), ``SimLoadCellPort``
    streams the load-cell line protocol, ``SimDistance`` stands in for the ultrasonic
    sensor. Each adds realistic noise, and can garble a share of its answers
    (``garble_rate``): junk bytes, cut frames, and (on the checksummed Modbus and
    load-cell lines) flipped bits. They are serial-like objects handed to the app through its
    ``ports`` argument; ``PtyBridge`` puts any of them behind a real pseudo-terminal so a
    daemon can open it by path.
"""

from __future__ import annotations

import logging
import os
import random
import select
import struct
import threading

from ..sensors.hopper import format_weight_line
from .pond import FeederSim

logger = logging.getLogger(__name__)


class _SimPort:
    """The part of ``serial.Serial`` the drivers use; answers appear at once."""

    def __init__(self, name: str):
        self.port = name
        self.is_open = True
        self.timeout = 0.05
        self.baudrate = 1_000_000  # a simulated line: no 3.5-character waits in minimalmodbus
        self._rx = bytearray()
        self.writes = 0

    def open(self):
        self.is_open = True

    def close(self):
        self.is_open = False

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def reset_input_buffer(self):
        self._rx.clear()

    def reset_output_buffer(self):
        pass

    def flush(self):
        pass

    def read(self, size: int = 1) -> bytes:
        out = bytes(self._rx[:size])
        del self._rx[:size]
        return out

    def write(self, data: bytes) -> int:
        self.writes += 1
        self._answer(bytes(data))
        return len(data)

    def _answer(self, data: bytes) -> None:
        raise NotImplementedError


def _garble(rng: random.Random, frame: bytes, kinds=("junk", "cut", "flip")) -> bytes:
    """Line noise: junk bytes, a cut, or a flipped bit."""
    kind = rng.choice(kinds)
    if kind == "junk":
        at = rng.randrange(len(frame) + 1)
        junk = bytes(rng.choice(b"\x00\xff\xfe#@!~\x1b") for _ in range(rng.randint(1, 4)))
        return frame[:at] + junk + frame[at:]
    if kind == "cut":
        return frame[: rng.randrange(max(1, len(frame) - 1))]
    at = rng.randrange(len(frame))
    return frame[:at] + bytes([frame[at] ^ (1 << rng.randrange(8))]) + frame[at + 1:]


class SimEzoPort(_SimPort):
    """An EZO circuit: answers ``R`` with ``value()`` plus noise, then ``*OK``."""

    def __init__(self, name: str, value, *, decimals: int = 2, noise: float = 0.02,
                 garble_rate: float = 0.0, silent: bool = False,
                 rng: random.Random | None = None):
        super().__init__(name)
        self.value = value
        self.decimals = decimals
        self.noise = noise
        self.garble_rate = garble_rate
        self.silent = silent
        self.rng = rng or random.Random(0)
        self._cmd = bytearray()
        self.sent_values: list[float] = []

    def _answer(self, data: bytes) -> None:
        self._cmd += data
        while b"\r" in self._cmd:
            cmd, _, rest = bytes(self._cmd).partition(b"\r")
            self._cmd = bytearray(rest)
            if self.silent:
                continue
            if cmd == b"R":
                v = round(self.value() + self.rng.gauss(0, self.noise), self.decimals)
                self.sent_values.append(v)
                frame = f"{v:.{self.decimals}f}\r*OK\r".encode()
                if self.rng.random() < self.garble_rate:
                    # No bit flips here: the EZO protocol has no checksum, so a flipped
                    # bit that turns one digit into another cannot be caught by anyone
                    # (docs/fish_feeder.md). Noise bursts and dropouts can.
                    frame = _garble(self.rng, frame, ("junk", "cut"))
                self._rx += frame
            elif cmd in (b"C,0", b"*OK,1") or cmd.startswith(b"T,"):
                self._rx += b"*OK\r"
            else:
                self._rx += b"*ER\r"


def modbus_crc(frame: bytes) -> bytes:
    crc = 0xFFFF
    for b in frame:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


class SimModbusPort(_SimPort):
    """An RS-485 bus with probe slaves; ``slaves[addr]()`` gives ``{register: raw}``."""

    def __init__(self, name: str, slaves: dict, *, garble_rate: float = 0.0,
                 rng: random.Random | None = None):
        super().__init__(name)
        self.slaves = slaves
        self.garble_rate = garble_rate
        self.rng = rng or random.Random(0)
        self.bad_requests = 0

    def _answer(self, data: bytes) -> None:
        if len(data) != 8 or modbus_crc(data[:6]) != data[6:]:
            self.bad_requests += 1
            return
        addr, fc, start, count = struct.unpack(">BBHH", data[:6])
        if addr not in self.slaves:
            return  # no such slave: silence, as on a real bus
        if fc not in (3, 4):
            body = bytes([addr, fc | 0x80, 1])
        else:
            regs = self.slaves[addr]()
            if any(r not in regs for r in range(start, start + count)):
                body = bytes([addr, fc | 0x80, 2])
            else:
                values = [regs[r] & 0xFFFF for r in range(start, start + count)]
                body = bytes([addr, fc, 2 * count]) + struct.pack(f">{count}H", *values)
        frame = body + modbus_crc(body)
        if self.rng.random() < self.garble_rate:
            frame = _garble(self.rng, frame)
        self._rx += frame


class SimLoadCellPort(_SimPort):
    """A load-cell board streaming ``W,<grams>*<crc>`` lines; one fresh line per read."""

    def __init__(self, name: str, weight_g, *, noise_g: float = 2.0, garble_rate: float = 0.0,
                 rng: random.Random | None = None):
        super().__init__(name)
        self.weight_g = weight_g
        self.noise_g = noise_g
        self.garble_rate = garble_rate
        self.rng = rng or random.Random(0)

    def read(self, size: int = 1) -> bytes:
        if not self._rx:
            line = format_weight_line(self.weight_g() + self.rng.gauss(0, self.noise_g))
            if self.rng.random() < self.garble_rate:
                line = _garble(self.rng, line[:-1]) + b"\n"
            self._rx += line
        return super().read(size)

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def _answer(self, data: bytes) -> None:
        pass  # the board only talks


class SimDistance:
    """Stands in for gpiozero's ``DistanceSensor``: ``distance`` in metres to the feed."""

    def __init__(self, feeder: FeederSim, *, capacity_g: float, full_distance_m: float,
                 empty_distance_m: float, noise_m: float = 0.005,
                 rng: random.Random | None = None):
        self.feeder = feeder
        self.capacity_g = capacity_g
        self.full_distance_m = full_distance_m
        self.empty_distance_m = empty_distance_m
        self.noise_m = noise_m
        self.rng = rng or random.Random(0)
        self.broken = False  # an unplugged sensor: every read fails

    @property
    def distance(self) -> float:
        if self.broken:
            raise OSError("no echo received")
        fill = max(0.0, min(1.0, self.feeder.hopper_g / self.capacity_g))
        d = self.empty_distance_m - fill * (self.empty_distance_m - self.full_distance_m)
        return max(0.0, d + self.rng.gauss(0, self.noise_m))

    def close(self) -> None:
        pass


class PtyBridge:
    """Put a simulated serial device behind a pseudo-terminal (``path``), for a daemon
    or a driver that opens ports by name. A thread moves bytes both ways."""

    def __init__(self, device: _SimPort, *, poll_s: float = 0.02):
        import tty

        self.device = device
        self._master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name=f"pty:{device.port}",
                                        daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], self._poll_s)
            try:
                if ready:
                    data = os.read(self._master, 4096)
                    if data:
                        self.device.write(data)
                out = self.device.read(4096) if (ready or isinstance(
                    self.device, SimLoadCellPort)) else b""
                if out:
                    os.write(self._master, out)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
