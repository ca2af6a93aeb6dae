"""ModbusSensor against a Modbus RTU slave answering real frames on a pseudo-terminal."""

import os
import select
import struct
import threading
import tty

import pytest
import serial

from edge.sensors.base import SensorError
from edge.sensors.modbus import ModbusSensor, open_port


def crc16(data: bytes) -> bytes:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


class FakeSlaves(threading.Thread):
    """Slaves on one RS-485 bus behind a pty: ``{address: {register: value}}``.

    ``mode``: "ok", "bad_crc" (answers with a broken CRC), "silent" (never answers),
    "exception" (answers "illegal data address").
    """

    def __init__(self, slaves: dict[int, dict[int, int]]):
        super().__init__(daemon=True)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.slaves = slaves
        self.mode = "ok"
        self.requests: list[tuple[int, int, int, int]] = []
        self._halt = threading.Event()

    def run(self):
        buf = b""
        while not self._halt.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                buf += os.read(self.master, 256)
            except OSError:
                return
            while len(buf) >= 8:
                frame, buf = buf[:8], buf[8:]
                self.answer(frame)

    def answer(self, frame: bytes):
        addr, fc, start, count = struct.unpack(">BBHH", frame[:6])
        if crc16(frame[:6]) != frame[6:8] or addr not in self.slaves:
            return
        self.requests.append((addr, fc, start, count))
        if self.mode == "silent":
            return
        regs = self.slaves[addr]
        if self.mode == "exception" or any(r not in regs for r in range(start, start + count)):
            body = struct.pack(">BBB", addr, fc | 0x80, 2)
        else:
            data = b"".join(struct.pack(">H", regs[r]) for r in range(start, start + count))
            body = struct.pack(">BBB", addr, fc, len(data)) + data
        crc = crc16(body)
        if self.mode == "bad_crc":
            crc = bytes([crc[0] ^ 0xFF, crc[1]])
        os.write(self.master, body + crc)

    def close(self):
        self._halt.set()
        self.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def bus():
    slaves = FakeSlaves({1: {0: 314, 1: 0xFFEC, 2: 71, 10: 1234},
                         2: {0: 275}})
    slaves.start()
    yield slaves
    slaves.close()


def test_modbus_sensor_reads_scaled_signed_registers_in_one_request(bus):
    probe = ModbusSensor(bus.path, slave=1, baudrate=9600, timeout_s=0.3,
                         registers={"moisture_pct": (0, 1, False), "soil_temp_c": (1, 1, True),
                                    "ec_us_cm": (2, 0, False), "raw": (10, 2, False)})
    assert probe.read() == {"moisture_pct": 31.4, "soil_temp_c": -2.0, "ec_us_cm": 71.0,
                            "raw": 12.34}
    # Registers 0-2 are neighbours: one request for them, one for register 10.
    assert bus.requests == [(1, 3, 0, 3), (1, 3, 10, 1)]
    assert probe.counters.as_dict()["errors"] == 0
    probe.close()


def test_modbus_sensor_uses_input_registers_when_asked(bus):
    probe = ModbusSensor(bus.path, 2, {"moisture_pct": (0, 1, False)}, timeout_s=0.3,
                         function_code=4)
    assert probe.read() == {"moisture_pct": 27.5}
    assert bus.requests == [(2, 4, 0, 1)]
    probe.close()


@pytest.mark.parametrize("mode", ["bad_crc", "silent", "exception"])
def test_modbus_sensor_counts_bad_answers_and_recovers(bus, mode):
    probe = ModbusSensor(bus.path, 1, {"moisture_pct": (0, 1, False)}, timeout_s=0.2)
    bus.mode = mode
    with pytest.raises(SensorError):
        probe.read()
    with pytest.raises(SensorError):
        probe.read()
    assert probe.counters.errors == 2 and probe.counters.consecutive_errors == 2
    bus.mode = "ok"
    assert probe.read() == {"moisture_pct": 31.4}
    assert probe.counters.consecutive_errors == 0 and probe.counters.reads == 3
    probe.close()


def test_two_slaves_share_one_opened_port(bus):
    port = open_port(bus.path, baudrate=9600, timeout_s=0.3)
    a = ModbusSensor(port, 1, {"m": (0, 1, False)})
    b = ModbusSensor(port, 2, {"m": (0, 1, False)})
    assert (a.read(), b.read(), a.read()) == ({"m": 31.4}, {"m": 27.5}, {"m": 31.4})
    a.close()  # does not close the shared port
    assert b.read() == {"m": 27.5}
    port.close()


class UnpluggablePort(serial.Serial):
    """A real serial port on the pty whose adapter can be pulled: once ``unplugged``, every
    write fails as pyserial's does when the device is gone."""

    unplugged = False

    def write(self, data):
        if self.unplugged:
            raise serial.SerialException("write failed: [Errno 5] Input/output error")
        return super().write(data)


@pytest.fixture
def opened(monkeypatch):
    """Every port ``open_port`` opens, in order (as ``UnpluggablePort``)."""
    ports = []

    def serial_for_url(url, **kwargs):
        ports.append(UnpluggablePort(url, **kwargs))
        return ports[-1]

    monkeypatch.setattr(serial, "serial_for_url", serial_for_url)
    return ports


def test_a_port_that_fails_is_closed_and_opened_afresh_on_the_next_read(bus, opened):
    probe = ModbusSensor(bus.path, 1, {"moisture_pct": (0, 1, False)}, timeout_s=0.3)
    assert probe.read() == {"moisture_pct": 31.4}
    assert len(opened) == 1
    opened[0].unplugged = True  # the adapter is pulled and plugged back in
    with pytest.raises(SensorError, match="Input/output error"):
        probe.read()
    assert probe.counters.errors == 1
    assert not opened[0].is_open  # the dead port was closed, not kept
    assert probe.read() == {"moisture_pct": 31.4}
    assert len(opened) == 2 and opened[1].is_open
    assert probe.counters.consecutive_errors == 0
    probe.close()
    assert not opened[1].is_open


def test_a_slaves_bad_answer_keeps_the_port_open(bus, opened):
    probe = ModbusSensor(bus.path, 1, {"moisture_pct": (0, 1, False)}, timeout_s=0.2)
    bus.mode = "silent"
    with pytest.raises(SensorError):
        probe.read()
    bus.mode = "ok"
    assert probe.read() == {"moisture_pct": 31.4}
    assert len(opened) == 1 and opened[0].is_open
    probe.close()


def test_a_shared_port_that_fails_is_left_to_its_owner(bus):
    port = UnpluggablePort(bus.path, baudrate=9600, timeout=0.3)
    probe = ModbusSensor(port, 1, {"moisture_pct": (0, 1, False)})
    port.unplugged = True
    with pytest.raises(SensorError):
        probe.read()
    assert port.is_open  # the other sensors on the bus still hold it
    port.unplugged = False
    assert probe.read() == {"moisture_pct": 31.4}
    probe.close()
    assert port.is_open
    port.close()


def test_a_missing_port_is_a_counted_read_error_not_a_crash(tmp_path):
    probe = ModbusSensor(str(tmp_path / "ttyUSB9"), 1, {"m": (0, 1, False)})
    with pytest.raises(SensorError, match="cannot open"):
        probe.read()
    assert probe.counters.errors == 1


def test_modbus_sensor_rejects_a_bad_description():
    with pytest.raises(ValueError):
        ModbusSensor("loop://", 0, {"m": (0, 1, False)})
    with pytest.raises(ValueError):
        ModbusSensor("loop://", 1, {})
    with pytest.raises(ValueError):
        ModbusSensor("loop://", 1, {"m": (0, 1, False)}, function_code=6)
