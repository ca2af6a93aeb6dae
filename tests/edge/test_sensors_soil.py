"""Soil probes: the serial line protocol (loop:// and a pty), the MCP3008 ADC on mock SPI
pins, and moisture over Modbus."""

import os
import select
import threading
import tty

import pytest
import serial
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockSPIDevice
from test_sensors_modbus import FakeSlaves, UnpluggablePort

from edge.sensors.base import SensorError
from edge.sensors.modbus import ModbusSensor, open_port
from edge.sensors.soil import (
    AdcSoilSensor,
    Calibration,
    LineSensor,
    ModbusSoilSensor,
    SerialSoilSensor,
    parse_line,
    xor_checksum,
)


def with_checksum(body: str) -> bytes:
    raw = body.encode()
    return raw + b"*%02X\r\n" % xor_checksum(raw)


# -- the line protocol -------------------------------------------------------------------------
def test_parse_line_reads_pairs_bare_numbers_and_checksums():
    assert parse_line(b"moisture_pct=31.4,soil_temp_c=27.9\n") == {
        "moisture_pct": 31.4, "soil_temp_c": 27.9}
    assert parse_line(b"moisture_pct=31.4 soil_temp_c=-2\r\n") == {
        "moisture_pct": 31.4, "soil_temp_c": -2.0}
    assert parse_line(b"31.4\n", bare_key="moisture_pct") == {"moisture_pct": 31.4}
    assert parse_line(with_checksum("moisture_pct=31.4"), require_checksum=True) == {
        "moisture_pct": 31.4}


@pytest.mark.parametrize("raw", [
    b"moisture_pct=31.4*00\n",          # wrong checksum
    b"moisture_pct=31.4*ZZ\n",          # not hex
    b"moisture_pct=3\x001.4\n",         # line noise
    b"moisture_pct=abc\n",
    b"moisture_pct=nan\n",
    b"moisture_pct=inf\n",
    b"\n",
    b"moisture_pct=31.4",               # cut off: no end of line
    b"\xff\xfe=1\n",
])
def test_parse_line_rejects_garbled_lines(raw):
    with pytest.raises(SensorError):
        parse_line(raw)


def test_parse_line_can_require_a_checksum():
    with pytest.raises(SensorError, match="missing checksum"):
        parse_line(b"moisture_pct=31.4\n", require_checksum=True)


def test_line_sensor_takes_the_newest_good_line_and_counts_garbage():
    line = LineSensor("loop://", timeout_s=0.05)
    port = line._lazy.get()
    port.write(b"moisture_pct=20.0\nmoisture_pct=21.5\ngarbage!!\n")
    assert line.read() == {"moisture_pct": 21.5}
    assert line.counters.errors == 1 and line.counters.reads == 2
    with pytest.raises(SensorError, match="no line"):
        line.read()  # nothing sent since
    port.write(b"moisture_pct=22")  # half a line only
    with pytest.raises(SensorError):
        line.read()
    assert line.counters.errors == 3
    line.close()


class QueryProbe(threading.Thread):
    """A probe node on a pty that answers ``R\\r\\n`` with one checksummed line."""

    def __init__(self, value: str):
        super().__init__(daemon=True)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.value = value
        self.queries = 0
        self.halt = threading.Event()

    def run(self):
        buf = b""
        while not self.halt.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            buf += os.read(self.master, 64)
            while b"\r\n" in buf:
                cmd, _, buf = buf.partition(b"\r\n")
                if cmd == b"R":
                    self.queries += 1
                    os.write(self.master, with_checksum(f"moisture_pct={self.value}"))

    def close(self):
        self.halt.set()
        self.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)


def test_serial_soil_sensor_queries_a_polled_probe_over_a_pty():
    node = QueryProbe("28.3")
    node.start()
    try:
        sensor = SerialSoilSensor(LineSensor(node.path, query="R\r\n", require_checksum=True,
                                             timeout_s=0.5))
        assert sensor.read() == 28.3
        node.value = "150"  # out of range: not a moisture
        with pytest.raises(SensorError, match="outside 0-100"):
            sensor.read()
        assert node.queries == 2 and sensor.counters.errors == 1
        sensor.close()
    finally:
        node.close()


def test_line_sensor_closes_a_failed_port_and_opens_it_afresh(monkeypatch):
    node = QueryProbe("28.3")
    node.start()
    opened = []

    def serial_for_url(url, **kwargs):
        opened.append(UnpluggablePort(url, **kwargs))
        return opened[-1]

    monkeypatch.setattr(serial, "serial_for_url", serial_for_url)
    try:
        line = LineSensor(node.path, query="R\r\n", require_checksum=True, timeout_s=0.5)
        assert opened == []  # opened on first use, not when built
        assert line.read() == {"moisture_pct": 28.3}
        assert len(opened) == 1
        opened[0].unplugged = True  # the adapter is pulled and plugged back in
        with pytest.raises(SensorError, match="Input/output error"):
            line.read()
        assert line.counters.errors == 1
        assert not opened[0].is_open  # the dead port was closed, not kept
        assert line.read() == {"moisture_pct": 28.3}
        assert len(opened) == 2 and opened[1].is_open
        assert line.counters.consecutive_errors == 0
        line.close()
        assert not opened[1].is_open
    finally:
        node.close()


def test_line_sensor_on_an_adapter_not_plugged_in_errors_until_it_is(tmp_path):
    device = tmp_path / "ttyUSB0"
    line = LineSensor(str(device), query="R\r\n", timeout_s=0.5)
    for _ in range(2):
        with pytest.raises(SensorError, match="cannot open serial port"):
            line.read()
    assert line.counters.errors == 2 and line.counters.consecutive_errors == 2
    node = QueryProbe("30.5")
    node.start()
    try:
        device.symlink_to(node.path)  # plugged in
        assert line.read() == {"moisture_pct": 30.5}
        assert line.counters.consecutive_errors == 0
        line.close()
    finally:
        node.close()


def test_line_sensor_leaves_a_shared_port_to_its_owner():
    port = serial.serial_for_url("loop://", timeout=0.05)
    line = LineSensor(port, timeout_s=0.05)
    port.write(b"moisture_pct=12.5\n")
    assert line.read() == {"moisture_pct": 12.5}
    line.close()
    assert port.is_open  # other readers on the line still hold it
    port.close()


def test_serial_soil_sensor_needs_its_key():
    line = LineSensor("loop://", timeout_s=0.05)
    line._lazy.get().write(b"soil_temp_c=27\n")
    sensor = SerialSoilSensor(line)
    with pytest.raises(SensorError, match="moisture_pct"):
        sensor.read()
    assert sensor.counters.errors == 1


def test_modbus_soil_sensor_reads_moisture_from_its_register():
    bus = FakeSlaves({3: {0: 312}})
    bus.start()
    try:
        port = open_port(bus.path, timeout_s=0.3)
        probe = ModbusSoilSensor(ModbusSensor(port, 3, {"moisture_pct": (0, 1, False)}))
        assert probe.read() == 31.2
        bus.slaves[3][0] = 1500  # 150.0 %: a probe in trouble
        with pytest.raises(SensorError):
            probe.read()
        assert probe.counters.errors == 1
        port.close()
    finally:
        bus.close()


# -- the MCP3008 ---------------------------------------------------------------------------------
class MockMCP3008(MockSPIDevice):
    """The slave side of an MCP3008 on gpiozero's mock SPI pins (CE0)."""

    def __init__(self, factory, vref=3.3):
        super().__init__(11, 10, 9, 8, pin_factory=factory)
        self.vref = vref
        self.channels = [0.0] * 8
        self.state = "idle"

    def on_start(self):
        super().on_start()
        self.state = "idle"

    def on_bit(self):
        if self.state == "idle":
            if self.rx_buf[-1]:
                self.state, self.rx_buf = "mode", []
        elif self.state == "mode":
            self.state, self.rx_buf = ("single" if self.rx_buf[-1] else "diff"), []
        elif self.state in ("single", "diff"):
            if len(self.rx_buf) == 3:
                volts = min(max(self.channels[self.rx_word()], 0.0), self.vref)
                self.tx_word(int(round(volts / self.vref * 1023)), 12)
                self.state = "result"
        elif self.state == "result" and not self.tx_buf:
            self.state, self.rx_buf = "idle", []


@pytest.fixture
def adc():
    factory = MockFactory()  # plain mock pins: the SPI slave pins are not PWM pins
    chip = MockMCP3008(factory)
    yield factory, chip
    chip.close()


CAL = Calibration(dry_raw=0.80, wet_raw=0.40, dry_pct=5, wet_pct=45)


def test_calibration_is_linear_between_the_field_points_and_clipped():
    assert CAL.pct(0.80) == pytest.approx(5.0)
    assert CAL.pct(0.40) == pytest.approx(45.0)
    assert CAL.pct(0.60) == pytest.approx(25.0)
    assert CAL.pct(0.20) == 65.0 and CAL.pct(0.99) == 0.0
    with pytest.raises(ValueError):
        Calibration(0.5, 0.505)


def test_adc_soil_sensor_turns_the_channel_voltage_into_moisture(adc):
    factory, chip = adc
    sensor = AdcSoilSensor(2, calibration=CAL, pin_factory=factory)
    assert Device.pin_factory is None  # gpiozero's process-wide default is left alone
    chip.channels[2] = 0.60 * 3.3  # raw 0.60: halfway between the calibration points
    assert sensor.read() == pytest.approx(25.0, abs=0.3)
    chip.channels[2] = 0.40 * 3.3
    assert sensor.read() == pytest.approx(45.0, abs=0.3)
    chip.channels[2] = 0.0  # cut wire: the input sits at the rail
    with pytest.raises(SensorError, match="rail"):
        sensor.read()
    assert sensor.counters.errors == 1 and sensor.counters.reads == 3
    sensor.close()
