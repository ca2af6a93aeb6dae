"""``smartcity-edge selftest`` on the example irrigation unit, on mock hardware.

The hardware is simulated as in the field: gpiozero mock pins whose relays are logged and
whose water meter gives pulses while the pump runs, an MCP3008 on mock SPI, a serial
probe node and a Modbus probe answering real frames on pseudo-terminals, and a real
Mosquitto that knows the unit's password.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPin
from test_sensors_modbus import FakeSlaves
from test_sensors_soil import MockMCP3008, QueryProbe

from edge.cli import main
from edge.clock import VirtualClock
from edge.provision import set_toml_values
from edge.selftest import FAIL, OK, WARN, WIDTH, selftest, verdict

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "irrigation.example.toml"
DEVICE = "dlh-taman-bekapai-01"
VALVES = [17, 27, 22, 23]  # the example's zone valves, in zone order
PUMP, METER, RAIN = 24, 6, 5
UNPLUGGED = "/nonexistent/ttyUSB9"  # a USB adapter that is not there


class Field:
    """The park behind the pins: logs every relay change (not the SPI lines); the meter
    pulses while the pump runs; the rain switch is closed (dry) unless ``wet``."""

    def __init__(self, meter_pulses: int = 5, wet: bool = False):
        self.log: list[tuple[int, bool]] = []
        self.meter_pulses = meter_pulses
        self.wet = wet
        self.factory = self._factory()

    def _factory(self) -> MockFactory:
        field = self

        class FieldPin(MockPin):
            def _change_state(self, value):
                changed = super()._change_state(value)
                number = int(self.info.name.removeprefix("GPIO"))
                if changed and self._function == "output" and number in [*VALVES, PUMP]:
                    field.log.append((number, bool(value)))
                    if number == PUMP and value:
                        meter = field.factory.pin(METER)
                        for _ in range(field.meter_pulses):
                            meter.drive_low()
                            meter.drive_high()
                return changed

            def _set_pull(self, value):
                super()._set_pull(value)
                if self.info.name == f"GPIO{RAIN}" and not field.wet:
                    self.drive_low()  # the normally-closed switch holds the line low

        # Plain mock pins (not PWM): the MCP3008's SPI lines must be plain.
        return MockFactory(pin_class=FieldPin)


def unit_config(tmp_path: Path, *, broker_host="127.0.0.1", broker_port=1, password="pw",
                serial_port="loop://", modbus_port=None, query=False,
                sync_check="never_synced", ca_file=None) -> Path:
    text = EXAMPLE.read_text()
    text = text.replace('state_dir = "/var/lib/smartcity/irrigation"',
                        f'state_dir = "{tmp_path / "state"}"')
    (tmp_path / "state").mkdir(exist_ok=True)
    secret = tmp_path / "mqtt.password"
    secret.write_text(password + "\n")
    text = set_toml_values(text, {("broker", "host"): broker_host,
                                  ("broker", "port"): broker_port,
                                  ("broker", "tls"): ca_file is not None,
                                  ("broker", "ca_file"): str(ca_file or "unused.pem"),
                                  ("broker", "password_file"): str(secret),
                                  ("clock", "sync_check"): sync_check,
                                  ("hardware", "pin_factory"): "mock"})
    text = text.replace('port = "/dev/ttyUSB0"', f'port = "{serial_port}"\ntimeout_s = 0.3'
                        + ('\nquery = "R\\r\\n"' if query else ""))
    text = text.replace('port = "/dev/ttyUSB1"',
                        f'port = "{modbus_port or UNPLUGGED}"')
    path = tmp_path / "irrigation.toml"
    path.write_text(text)
    return path


def by_status(checks, status):
    return [c.sentence() for c in checks if c.status == status]


def test_selftest_passing_run_pulses_each_output_alone_and_reads_every_sensor(
        tmp_path, mosquitto_factory):
    broker = mosquitto_factory(password_file_users={DEVICE: "s3cret"}, allow_anonymous=False)
    probe = QueryProbe("31.4")  # the flower beds' serial probe node
    bus = FakeSlaves({1: {0: 287}})  # the median's Modbus probe: 28.7 %
    probe.start()
    bus.start()
    field = Field()
    adc = MockMCP3008(field.factory)
    adc.channels[0] = 0.57 * 3.3  # halfway between soil-utara's calibration points: 25 %
    adc.channels[1] = 0.80 * 3.3  # soil-selatan's dry point: 5 %
    try:
        config = unit_config(tmp_path, broker_host=broker.host, broker_port=broker.port,
                             password="s3cret", serial_port=probe.path,
                             modbus_port=bus.path, query=True, sync_check="assume_synced")
        checks, text = selftest(config, factory=field.factory, clock=VirtualClock(), lang="en")
    finally:
        adc.close()
        probe.close()
        bus.close()

    assert verdict(checks), text
    assert by_status(checks, FAIL) == [] and by_status(checks, WARN) == []
    ok = by_status(checks, OK)
    # Each valve alone, in zone order; then the pump, only with the first valve open.
    for name, pin in zip(["valve-rumput-utara", "valve-rumput-selatan", "valve-bunga",
                          "valve-pohon-median"], VALVES, strict=True):
        assert f"Valve {name} (GPIO{pin}): on 0.5 s, then off." in ok
    assert ("Pump pompa (GPIO24): on 0.5 s with valve valve-rumput-utara open, then off."
            in ok)
    expected = [(p, s) for p in VALVES for s in (True, False)]
    expected += [(17, True), (PUMP, True), (PUMP, False), (17, False)]
    assert field.log == expected  # never two valves at once; the pump never alone
    assert all(not field.factory.pin(p).state for p in [*VALVES, PUMP])
    # Sensors, through the daemon's own drivers.
    assert "Flow meter meter-air (GPIO6): 5 pulses while valves were open." in ok
    assert "Rain sensor sensor-hujan (GPIO5): dry." in ok
    assert "Soil probe soil-utara (zone rumput-utara): 25.0 %." in ok
    assert "Soil probe soil-selatan (zone rumput-selatan): 5.0 %." in ok
    assert "Soil probe soil-bunga (zone bunga): 31.4 %." in ok
    assert "Soil probe soil-pohon (zone pohon-median): 28.7 %." in ok
    assert f"Broker {broker.host}:{broker.port}: login OK as {DEVICE}." in ok
    assert any(line.startswith("Clock synchronised: ") for line in ok)
    assert any(line.startswith("Disk: ") and "writable" in line for line in ok)
    # The checklist reads on a phone.
    lines = text.splitlines()
    assert all(len(line) <= WIDTH for line in lines)
    assert lines[0] == f"Selftest {DEVICE}" and lines[-1] == "FIT TO RUN: 0 FAIL, 0 WARN"


def test_selftest_cli_reports_a_silent_probe_and_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SMARTCITY_PIN_FACTORY", "mock")
    config = unit_config(tmp_path, serial_port="loop://")  # a probe that never answers
    assert main(["selftest", "--config", str(config), "--pulse-s", "0.02", "--lang", "en"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(len(line) <= WIDTH for line in lines), out
    # Unwrap the checklist into one sentence per check.
    items: list[str] = []
    for line in lines[3:-2]:
        if line.startswith(" " * 6):
            items[-1] += " " + line.strip()
        else:
            items.append(line)
    assert ("FAIL  Soil probe soil-bunga: no answer on loop://. Check the cable and the "
            "probe's power.") in items
    assert (f"FAIL  Soil probe soil-pohon: {UNPLUGGED} not found. Check that the USB "
            "adapter is plugged in (ls /dev/serial/by-id).") in items
    # No MCP3008 answers on bare mock pins: both analogue probes fail, with advice.
    assert sum("MCP3008 channel" in i and i.startswith("FAIL") for i in items) == 2
    assert any(i.startswith("FAIL  Broker 127.0.0.1:1: cannot connect") for i in items)
    assert any(i.startswith("WARN  Clock NOT synchronised") for i in items)
    assert any(i.startswith("OK    Valve valve-bunga (GPIO22): on 0.02 s") for i in items)
    assert lines[-1] == "NOT FIT TO RUN: 5 FAIL, 3 WARN"


def test_selftest_speaks_bahasa_indonesia_by_default(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SMARTCITY_PIN_FACTORY", "mock")
    config = unit_config(tmp_path)
    assert main(["selftest", "--config", str(config), "--no-outputs"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"Uji mandiri {DEVICE}"
    items = unwrap(out)
    assert "GAGAL Sensor tanah soil-bunga: tidak ada jawaban di loop://. Periksa kabel dan " \
           "catu daya sensor." in items
    assert any(i.startswith("AWAS  Jam BELUM tersinkron") for i in items), items
    # The verdicts are Indonesian too: no FAIL, WARN or English word left.
    assert {i.split()[0] for i in items} <= {"OK", "AWAS", "GAGAL"}, items
    assert out.splitlines()[-1] == "TIDAK LAYAK JALAN: 5 GAGAL, 2 AWAS"
    assert "Katup" not in out  # --no-outputs: nothing was switched


def unwrap(out: str) -> list[str]:
    """The checklist's items (between its two rules), one sentence each."""
    lines = out.splitlines()
    first, last = [i for i, line in enumerate(lines) if line == "=" * WIDTH]
    items: list[str] = []
    for line in lines[first + 1:last]:
        if line.startswith(" " * 6):
            items[-1] += " " + line.strip()
        else:
            items.append(line)
    return items


def no_pin_factory(mocker) -> list:
    """Record every pin factory the CLI builds (there must be none for a bad config)."""
    from edge import hardware

    built = []
    mocker.patch.object(hardware, "make_pin_factory",
                        lambda kind="auto": built.append(kind) or MockFactory())
    return built


def check_problems(err: str) -> list[str]:
    """The ``field: reason`` lines of `check`'s refusal on stderr."""
    return [line.strip() for line in err.splitlines() if line.startswith("  ")]


@pytest.mark.parametrize("lang", ["en", "id"])
@pytest.mark.parametrize("kind", ["irrigation", "fish_feeder"])
def test_selftest_and_check_agree_on_the_example_configs(tmp_path, capsys, mocker, monkeypatch,
                                                          kind, lang):
    """The examples name a CA file (/etc/smartcity/ca.pem) that is not on this machine:
    `check` refuses them, and so must selftest, with the same field and reason."""
    example = EXAMPLE.with_name(f"{kind}.example.toml")
    built = no_pin_factory(mocker)
    monkeypatch.chdir(example.parent)  # short paths: the checklist wraps at 40 columns
    assert main(["check", "--config", example.name, "--lang", lang]) == 2
    said_by_check = check_problems(capsys.readouterr().err)
    assert said_by_check, "check must name the problem"
    assert main(["selftest", "--config", example.name, "--lang", lang]) == 2
    out = capsys.readouterr().out
    config = "Config" if lang == "en" else "Konfigurasi"
    fail = "FAIL " if lang == "en" else "GAGAL"
    fails = [i.removeprefix(f"{fail} {config} {example.name}: ") for i in unwrap(out)]
    assert [f.split(". ")[0] for f in fails] == said_by_check, out
    assert built == [], "no pin may be touched with a config check refuses"


@pytest.mark.parametrize(("problem", "lang", "reason"), [
    ("missing", "en", "file not found: ca.pem"),
    ("missing", "id", "berkas tidak ditemukan: ca.pem"),
    ("not_pem", "en", "not a PEM CA certificate"),
    ("not_pem", "id", "bukan sertifikat CA berformat PEM: ca.pem"),
])
def test_selftest_refuses_a_bad_ca_file_as_check_does_before_any_pin(
        tmp_path, capsys, mocker, monkeypatch, problem, lang, reason):
    monkeypatch.chdir(tmp_path)  # ca_file is read relative to the working directory
    ca = Path("ca.pem")
    if problem == "not_pem":
        ca.write_text("this is the password, not a certificate\n")
    unit_config(tmp_path, ca_file=ca, sync_check="assume_synced")
    built = no_pin_factory(mocker)
    assert main(["check", "--config", "irrigation.toml", "--lang", lang]) == 2
    assert f"broker.ca_file: {reason}" in capsys.readouterr().err
    assert main(["selftest", "--config", "irrigation.toml", "--lang", lang]) == 2
    out = capsys.readouterr().out
    assert all(len(line) <= WIDTH for line in out.splitlines()), out
    [item] = unwrap(out)  # the config's problem, and nothing else was tried
    config = "FAIL  Config" if lang == "en" else "GAGAL Konfigurasi"
    assert item.startswith(f"{config} irrigation.toml: broker.ca_file: {reason}"), item
    assert "--ca-file" in item  # what to do about it
    verdict_line = "NOT FIT TO RUN: 1 FAIL, 0 WARN" if lang == "en" else \
        "TIDAK LAYAK JALAN: 1 GAGAL, 0 AWAS"
    assert out.splitlines()[-1] == verdict_line
    assert built == []


def test_selftest_bad_config_exits_2_naming_file_field_and_reason_before_any_pin(
        tmp_path, capsys, mocker, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("broken.toml").write_text(
        EXAMPLE.read_text().replace("max_on_s = 2700", "max_on_s = -1", 1)
        .replace('name = "sensor-hujan"', 'name = "sensor-hujan"\ncolour = "red"'))
    built = no_pin_factory(mocker)
    assert main(["selftest", "--config", "broken.toml", "--lang", "en"]) == 2
    items = unwrap(capsys.readouterr().out)
    squeezed = ["".join(item.split()) for item in items]  # a long path wraps mid-word
    assert "FAILConfigbroken.toml:outputs[valve-rumput-utara].max_on_s:Inputshouldbe" \
           "greaterthan0(got-1)." in squeezed
    assert "FAILConfigbroken.toml:inputs[sensor-hujan].colour:unknownkey(atypo?)." \
           in squeezed
    assert built == []


class InterruptingClock(VirtualClock):
    """Ctrl-C during the third pulse."""

    def __init__(self):
        super().__init__()
        self.sleeps = 0

    def sleep(self, seconds):
        self.sleeps += 1
        if self.sleeps == 3:
            raise KeyboardInterrupt
        super().sleep(seconds)


def test_selftest_leaves_every_output_off_when_interrupted(tmp_path):
    field = Field()
    config = unit_config(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        selftest(config, factory=field.factory, clock=InterruptingClock())
    assert field.log[-1] == (22, False)  # the valve that was on went off
    assert field.log.count((22, True)) == 1
    assert all(not field.factory.pin(p).state for p in [*VALVES, PUMP])
