"""Config validation: the example loads; every broken reference names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import load_config, parse_config
from edge.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "fish_feeder.example.toml"


def problems(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def test_example_config_is_valid():
    config = load_config(EXAMPLE)
    assert config.unit.device_id == "dp3-tambak-manggar-01" and config.unit.opd == "dp3"
    assert [p.species for p in config.ponds] == ["nila", "vaname"]
    assert config.feeder("pakan-vaname").hopper.driver == "loadcell"


def test_unknown_motor_and_pulse_input_named(config_dict):
    text = problems(config_dict(feeders={"pakan-nila": {"motor": "nope"}}))
    assert "feeders[pakan-nila].motor" in text and "nope" in text
    d = config_dict(feeders={"pakan-nila": {"rotation_input": "rot-x"}})
    assert "feeders[pakan-nila].rotation_input" in problems(d)


def test_dose_that_cannot_fit_the_motor_max_on_time_refused(config_dict):
    text = problems(config_dict(feeders={"pakan-nila": {"rate_g_per_s": 5.0}}))
    assert "feeders[pakan-nila].max_dose_g" in text and "max_on_s" in text


def test_pulse_confirmation_needs_rotation_input(config_dict):
    d = config_dict(feeders={"pakan-nila": {"rotation_input": None}})
    assert "rotation_input" in problems(d)


def test_weight_confirmation_needs_a_load_cell(config_dict):
    d = config_dict(feeders={"pakan-nila": {"confirm_by": "weight"}})
    assert "loadcell" in problems(d)


def test_plan_needs_doses_or_biomass_not_both(config_dict):
    d = config_dict(ponds={"kolam-nila": {"plan": {"times": ["07:00"]}}})
    assert "fish_count" in problems(d)
    d = config_dict(ponds={"kolam-nila": {"plan": {"times": ["07:00", "09:00"],
                                                        "doses_g": [100]}}})
    assert "one dose per time" in problems(d)
    d = config_dict(ponds={"kolam-nila": {"plan": {"times": ["7:00"], "doses_g": [1]}}})
    assert "HH:MM" in problems(d)


def test_pond_sensor_reference_and_duplicate_quantity(config_dict):
    d = config_dict(ponds={"kolam-nila": {"sensors": ["do-nila", "ghost"]}})
    assert "ponds[kolam-nila].sensors[#2]" in problems(d)
    d = config_dict(ponds={"kolam-nila": {"sensors": ["do-nila", "probe-vaname"]}})
    assert "do_mg_l already comes from" in problems(d)


def test_serial_port_shared_only_by_modbus_probes(config_dict):
    d = config_dict()
    d["sensors"][1]["port_url"] = "sim://do"
    assert "only Modbus probes share a port" in problems(d)
    d = config_dict()
    d["sensors"].append({**d["sensors"][3], "name": "probe-2", "slave": 2})
    parse_config(d)  # a second probe on the same RS-485 bus is fine
    d["sensors"][-1]["slave"] = 1
    assert "slave 1" in problems(d)


def test_hopper_pins_must_not_collide(config_dict):
    d = config_dict(feeders={"pakan-nila": {"hopper": {"echo_pin": 17}}})
    assert "GPIO17 already used" in problems(d)


def test_threshold_overrides_checked_against_preset(config_dict):
    d = config_dict(ponds={"kolam-nila": {"thresholds": {"temp_max_c": 22}}})
    assert "temp_min_c" in problems(d)
    d = config_dict(ponds={"kolam-nila": {"thresholds": {"oxygen": 3}}})
    assert "oxygen" in problems(d)


def test_hard_limits_consistent(config_dict):
    d = config_dict(feeders={"pakan-nila": {"max_daily_g": 100}})
    assert "max_daily_g" in problems(d)
