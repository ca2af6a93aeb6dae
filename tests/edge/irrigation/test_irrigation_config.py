"""The irrigation config: the example park loads, mistakes name their field."""

from pathlib import Path

import pytest
from irrigation_harness import BASE, merge

from edge.cli import main
from edge.config import load_config, parse_config
from edge.errors import ConfigError
from edge.irrigation.config import IrrigationConfig

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "irrigation.example.toml"


def test_example_park_config_loads():
    config = load_config(EXAMPLE)
    assert isinstance(config, IrrigationConfig)
    assert (config.unit.device_id, config.unit.opd) == ("dlh-taman-bekapai-01", "dlh")
    assert config.site.timezone == "Asia/Makassar"
    assert [z.name for z in config.zones] == ["rumput-utara", "rumput-selatan", "bunga",
                                              "pohon-median"]
    assert config.master.kind == "pump" and config.limits.max_concurrent_zones == 2
    assert {s.kind for s in config.soil.sensors} == {"mcp3008", "serial", "modbus"}
    assert [p.name for p in config.program.programs] == ["pagi-kemarau", "sore-kemarau",
                                                         "musim-hujan"]


def test_example_passes_the_check_command(capsys, tmp_path, test_pki):
    # The example uses TLS with the broker's CA in /etc/smartcity/ca.pem; `check` also
    # wants that file, so point it at a real CA certificate here.
    text = EXAMPLE.read_text()
    assert 'ca_file = "/etc/smartcity/ca.pem"' in text
    path = tmp_path / "irrigation.toml"
    path.write_text(text.replace('"/etc/smartcity/ca.pem"', f'"{test_pki.ca_cert}"'))
    assert main(["check", "--config", str(path)]) == 0
    assert "OK (irrigation, unit dlh-taman-bekapai-01, OPD dlh)" in capsys.readouterr().out


ZONES_WITH_PROBE = [{"name": "z1", "valve": "v1", "soil_sensor": "p1"},
                    {"name": "z2", "valve": "v2"}]
PROBE = {"sensors": [{"name": "p1", "kind": "mcp3008", "channel": 0,
                      "dry_raw": 0.8, "wet_raw": 0.4}]}


@pytest.mark.parametrize("over,field,words", [
    ({"zones": [{"name": "z1", "valve": "v1"}, {"name": "z1", "valve": "v2"}]},
     "zones[z1].name", "twice"),
    ({"zones": [{"name": "z1", "valve": "v1"}, {"name": "z2", "valve": "v1"}]},
     "zones[z2].valve", "already opens"),
    ({"zones": [{"name": "z1", "valve": "nope"}]}, "zones[z1].valve", "no output"),
    ({"master": {"output": "v1"}}, "master.output", "zone valve"),
    ({"rain": {"input": "flow"}}, "rain.input", "digital"),
    ({"flow": {"input": "rain", "pulses_per_l": 2}}, "flow.input", "pulse"),
    ({"flow": {"input": "flow", "pulses_per_l": 2, "window_s": 60, "no_flow_s": 30}},
     "flow", "window_s"),
    ({"zones": ZONES_WITH_PROBE, "soil": PROBE,
      "outputs": BASE["outputs"] + [{"name": "x", "pin": 8, "max_on_s": 60}]},
     "outputs[x].pin", "SPI0 CE0"),
    ({"zones": [{"name": "z1", "valve": "v1", "soil_sensor": "p9"}]},
     "zones[z1].soil_sensor", "p9"),
    ({"program": {"programs": [{"name": "p", "start_times": ["06:00"],
                                "zones": [{"zone": "z9", "duration_min": 5}]}]}},
     "program.programs[p].zones[z9].zone", "z9"),
    ({"program": {"programs": [{"name": "p", "start_times": ["sunrise+09:00"],
                                "zones": [{"zone": "z1", "duration_min": 5}]}]}},
     "program.programs[p].start_times", "offset"),
    ({"program": {"programs": [{"name": "p", "start_times": ["06:00"], "weekdays": ["mon"],
                                "odd_even": "odd",
                                "zones": [{"zone": "z1", "duration_min": 5}]}]}},
     "program.programs[p]", "only one of"),
    ({"program": {"programs": [{"name": "p", "start_times": ["06:00"], "active_from": "07-01",
                                "zones": [{"zone": "z1", "duration_min": 5}]}]}},
     "program.programs[p]", "both"),
    ({"program": {"programs": [{"name": "p", "start_times": ["06:00"], "active_from": "02-30",
                                "active_to": "03-01",
                                "zones": [{"zone": "z1", "duration_min": 5}]}]}},
     "program.programs[p].active_from", "day of the year"),
    ({"program": {"zones": [{"zone": "z1", "moisture": {"skip_above_pct": 30}}]}},
     "program.zones[z1].moisture", "soil_sensor"),
    ({"zones": ZONES_WITH_PROBE, "soil": PROBE,
      "program": {"zones": [{"zone": "z1", "moisture": {"start_below_pct": 30,
                                                        "skip_above_pct": 25}}]}},
     "program.zones[z1].moisture", "below skip_above_pct"),
    ({"zones": [{"name": "z1", "valve": "v1", "flow_lpm": 1.5}],
      "flow": {"input": "flow", "pulses_per_l": 2, "no_flow_below_lpm": 2}},
     "zones[z1].flow_lpm", "no_flow"),
    ({"limits": {"max_concurrent_zones": 0}}, "limits.max_concurrent_zones", ""),
    ({"runs": {"on_interrupted": "retry"}}, "runs.on_interrupted", ""),
    ({"program": {"watering_pct": 400}}, "program.watering_pct", ""),
])
def test_config_mistakes_name_the_field(over, field, words):
    data = merge(BASE, {"master": None, "rain": None, "flow": None, "program": None})
    data = merge(data, over)
    with pytest.raises(ConfigError) as err:
        parse_config(data, "unit.toml", model=IrrigationConfig)
    fields = [f for f, _ in err.value.problems]
    assert any(f.startswith(field) for f in fields), err.value.problems
    assert words in str(err.value)
    assert "unit.toml" in str(err.value)
