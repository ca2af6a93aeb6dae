"""The shared unit-config builder (``tests/support/unit_toml.py``): what it is given is what
the unit's own loader (``edge.config.load_config``) reads back."""

from __future__ import annotations

from pathlib import Path

from support.unit_toml import TWO_ZONES, Pump, unit_toml, write_unit_toml

from edge.config import load_config


def test_every_knob_reaches_the_validated_config(tmp_path):
    secret = tmp_path / "mqtt.pass"
    path = write_unit_toml(tmp_path / "unit.toml", device_id="taman-uji-07", opd="dlh",
                           name="Taman Uji", state_dir=tmp_path / "state", host="10.1.2.3",
                           port=18830, keepalive_s=7, username="taman-uji-07",
                           password_file=secret, sync_check="never_synced", telemetry_s=2.5,
                           zones=TWO_ZONES, max_on_s=300,
                           pump=Pump(output="pompa", pin=24, max_on_s=900, pre_s=1, post_s=2),
                           on_interrupted="drop")
    config = load_config(path)
    assert config.kind == "irrigation"
    assert config.state_dir == tmp_path / "state"
    assert (config.unit.device_id, config.unit.opd, config.unit.name) == \
        ("taman-uji-07", "dlh", "Taman Uji")
    assert (config.broker.host, config.broker.port, config.broker.keepalive_s) == \
        ("10.1.2.3", 18830, 7)
    assert (config.broker.username, config.broker.password_file) == ("taman-uji-07", secret)
    assert config.hardware.pin_factory == "mock"
    assert config.clock.sync_check == "never_synced"
    assert config.telemetry.interval_s == 2.5
    assert [(o.name, o.pin, o.max_on_s) for o in config.outputs] == \
        [("valve-1", 17, 300), ("valve-2", 27, 300), ("pompa", 24, 900)]
    assert [(z.name, z.valve) for z in config.zones] == [("zone1", "valve-1"),
                                                         ("zone2", "valve-2")]
    assert (config.master.output, config.master.kind, config.master.pre_s,
            config.master.post_s) == ("pompa", "pump", 1, 2)
    assert config.runs.on_interrupted == "drop"


def test_knobs_left_at_none_take_the_loaders_defaults(tmp_path):
    path = tmp_path / "unit.toml"
    path.write_text(unit_toml(device_id="taman-uji-08", opd="dlh", state_dir=tmp_path,
                              host="127.0.0.1", port=1883, keepalive_s=None,
                              sync_check=None))
    config = load_config(path)
    defaults = load_config(write_unit_toml(tmp_path / "defaults.toml", device_id="x",
                                           opd="dlh", state_dir=tmp_path, host="h", port=1))
    assert config.broker.keepalive_s == 30  # BrokerSection's default, not the builder's 5
    assert defaults.broker.keepalive_s == 5
    assert config.clock.sync_check == "timesyncd"
    assert config.telemetry.interval_s == 60
    assert config.broker.username is None and config.broker.password_file is None
    assert config.master is None
    assert [(z.name, z.valve) for z in config.zones] == [("zone1", "valve-1")]


def test_strings_with_quotes_and_backslashes_survive(tmp_path):
    odd = tmp_path / 'st"ate\\dir'
    path = write_unit_toml(tmp_path / "unit.toml", device_id="taman-uji-09", opd="dlh",
                           name='Taman "Kota" \\ Utara', state_dir=odd, host="127.0.0.1",
                           port=1883, password_file=Path("/etc/smartcity/m\u00e9dia.pass"))
    config = load_config(path)
    assert config.state_dir == odd
    assert config.unit.name == 'Taman "Kota" \\ Utara'
    assert config.broker.password_file == Path("/etc/smartcity/m\u00e9dia.pass")
