"""A broken config exits non-zero naming file, field and reason, before any pin is claimed."""

import pytest
from gpiozero.pins.mock import MockFactory

from edge import cli, hardware
from edge.config import load_config
from edge.errors import ConfigError

BROKEN = {
    "unknown_key": (
        lambda t: t.replace('opd = "dlh"', 'opd = "dlh"\ncolour = "blue"'),
        "unit.colour", "unknown key (a typo?)",
    ),
    "wrong_type": (
        lambda t: t.replace("max_on_s = 600\n\n[[outputs]]", 'max_on_s = "long"\n\n[[outputs]]', 1),
        "outputs[valve1].max_on_s", "valid number",
    ),
    "duplicate_pin": (
        lambda t: t.replace("pin = 27", "pin = 17"),
        "outputs[valve2].pin", "GPIO17 already used by outputs[valve1]",
    ),
    "limit_out_of_range": (
        lambda t: t.replace("max_on_s = 600\n\n[[zones]]", "max_on_s = 999999\n\n[[zones]]"),
        "outputs[valve2].max_on_s", "less than or equal to 86400",
    ),
    "toml_syntax": (
        lambda t: t.replace('name = "lawn"', 'name = "lawn'),
        "(syntax)", "line",
    ),
    "unknown_reference": (
        lambda t: t.replace('valve = "valve2"', 'valve = "valve9"'),
        "zones[hedge].valve", "no output named 'valve9'",
    ),
    "bad_device_id": (
        lambda t: t.replace('device_id = "dlh-test-01"', 'device_id = "DLH/+"'),
        "unit.device_id", "should match pattern",
    ),
}


def test_config_good_file_loads(tmp_path, good_config_text):
    path = tmp_path / "unit.toml"
    path.write_text(good_config_text)
    config = load_config(path)
    assert config.unit.device_id == "dlh-test-01"
    assert [z.valve for z in config.zones] == ["valve1", "valve2"]
    assert config.site.timezone == "Asia/Makassar"


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_config_broken_file_names_file_field_reason(tmp_path, good_config_text, case):
    mutate, field, reason = BROKEN[case]
    path = tmp_path / f"{case}.toml"
    text = mutate(good_config_text)
    assert text != good_config_text, "the mutation must change the file"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert field in message
    assert reason in message


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_config_broken_file_run_exits_nonzero_before_any_pin(
    tmp_path, good_config_text, case, mocker, capsys
):
    mutate, field, reason = BROKEN[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(mutate(good_config_text))
    factories = []

    def spy_factory(kind="auto"):
        factory = MockFactory()
        factories.append(factory)
        return factory

    mocker.patch.object(hardware, "make_pin_factory", spy_factory)
    code = cli.main(["run", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert str(path) in err and field in err and reason in err
    assert factories == [], "no pin factory may be built for a broken config"


def test_config_missing_file_and_unknown_kind(tmp_path, good_config_text):
    with pytest.raises(ConfigError, match=r"\(file\): No such file"):
        load_config(tmp_path / "nope.toml")
    path = tmp_path / "kind.toml"
    path.write_text(good_config_text.replace('kind = "irrigation"', 'kind = "sprinkler"'))
    with pytest.raises(ConfigError, match=r"kind: must be one of"):
        load_config(path)


def test_config_check_command_reports_ok(tmp_path, good_config_text, capsys):
    path = tmp_path / "unit.toml"
    path.write_text(good_config_text)
    assert cli.main(["check", "--config", str(path)]) == 0
    assert "OK (irrigation, unit dlh-test-01, OPD dlh)" in capsys.readouterr().out


# What `check --lang id` says for each broken file: Bahasa Indonesia, made from the
# problem's code (the English reason must not show through).
INDONESIAN = {
    "unknown_key": ("unit.colour", "kunci tidak dikenal (salah ketik?)"),
    "wrong_type": ("outputs[valve1].max_on_s", "harus angka (isinya 'long')"),
    "duplicate_pin": ("outputs[valve2].pin", "GPIO17 sudah dipakai oleh outputs[valve1]"),
    "limit_out_of_range": ("outputs[valve2].max_on_s", "paling banyak 86400 (isinya 999999)"),
    "toml_syntax": ("(sintaks)", "sintaks TOML salah di baris "),
    "unknown_reference": ("zones[hedge].valve", "tidak ada keluaran (outputs) bernama 'valve9'"),
    "bad_device_id": ("unit.device_id", "tidak cocok dengan pola ^[a-z0-9]"),
}


@pytest.mark.parametrize("case", sorted(INDONESIAN))
def test_config_check_speaks_bahasa_indonesia_by_default(tmp_path, good_config_text, capsys,
                                                         case):
    mutate, _, english = BROKEN[case]
    field, reason = INDONESIAN[case]
    path = tmp_path / "unit.toml"
    path.write_text(mutate(good_config_text))
    assert cli.main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"smartcity-edge: {path}: konfigurasi tidak sah\n"), err
    assert f"  {field}: {reason}" in err
    assert english not in err
    assert cli.main(["check", "--config", str(path), "--lang", "en"]) == 2
    assert english in capsys.readouterr().err


@pytest.mark.parametrize(("mutate", "field", "reason"), [
    (lambda t: t.replace('kind = "irrigation"', 'kind = "sprinkler"'), "kind",
     "harus salah satu dari ['fish_feeder', 'irrigation'], bukan 'sprinkler'"),
    (lambda t: t + '\n[site]\ntimezone = "Asia/Balikpapan"\n', "site.timezone",
     "zona waktu 'Asia/Balikpapan' tidak dikenal"),
    (lambda t: t.replace('pin_factory = "mock"', 'pin_factory = "rpigpio"'),
     "hardware.pin_factory", "harus salah satu dari: 'auto', 'mock', 'lgpio' (isinya 'rpigpio')"),
    (lambda t: t.replace('valve = "valve1"', 'valve = "valve1"\nflow_lpm = "banyak"'),
     "zones[lawn].flow_lpm", "harus angka (isinya 'banyak')"),
    (lambda t: t.replace('name = "hedge"', 'name = "lawn"'), "zones[lawn].name",
     "zona 'lawn' ditulis dua kali"),
    (lambda t: t.replace("[hardware]", "[clock]\nsync_check = true\n\n[hardware]"),
     "clock.sync_check", "harus salah satu dari: 'timesyncd', 'assume_synced', 'never_synced'"),
])
def test_config_check_says_other_problems_in_bahasa_indonesia(tmp_path, good_config_text,
                                                               capsys, mutate, field, reason):
    path = tmp_path / "unit.toml"
    path.write_text(mutate(good_config_text))
    assert cli.main(["check", "--config", str(path), "--lang", "id"]) == 2
    assert f"  {field}: {reason}" in capsys.readouterr().err


def test_config_check_a_missing_file_in_bahasa_indonesia(tmp_path, capsys):
    assert cli.main(["check", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "  (berkas): berkas tidak ada" in capsys.readouterr().err


@pytest.mark.parametrize(("mutate", "lang", "lines"), [
    # a misspelt required key: one line at the key written, naming the one meant
    (lambda t: t.replace("max_on_s = 600\n\n[[outputs]]", "max_on_sec = 600\n\n[[outputs]]", 1),
     "id", ["outputs[valve1].max_on_sec: kunci tidak dikenal; maksudnya max_on_s?"]),
    # a misspelt optional key: the known key it resembles
    (lambda t: t.replace('valve = "valve1"', 'valve = "valve1"\nflow_lmp = 20'),
     "en", ["zones[lawn].flow_lmp: unknown key; did you mean flow_lpm?"]),
    # nothing resembles it: no guess
    (lambda t: t.replace('valve = "valve1"', 'valve = "valve1"\nwarna = 20'),
     "id", ["zones[lawn].warna: kunci tidak dikenal (salah ketik?)"]),
])
def test_config_check_names_entries_and_says_what_was_meant(tmp_path, good_config_text,
                                                          capsys, mutate, lang, lines):
    """One line per mistake, entries named by their name, never by a 0-based index."""
    path = tmp_path / "unit.toml"
    path.write_text(mutate(good_config_text))
    assert cli.main(["check", "--config", str(path), "--lang", lang]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[1:] == [f"  {line}" for line in lines], err
