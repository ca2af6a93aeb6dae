"""``provision`` without a controller (offline flags), into a temporary root, and the
in-place TOML editing it relies on."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from edge.cli import main
from edge.config import load_config
from edge.provision import set_toml_values

REPO = Path(__file__).resolve().parents[2]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its type, mode and content (or link target)."""
    tree = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if path.is_symlink():
            tree[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            tree[rel] = ("dir", st.st_mode & 0o7777)
        else:
            tree[rel] = ("file", st.st_mode & 0o7777, path.read_bytes())
    return tree


def offline_args(tmp_path: Path, root: Path, *extra: str) -> list[str]:
    secret = tmp_path / "from-the-admin.txt"
    secret.write_text("pw-offline-123\n")
    return ["provision", "--device-id", "dp3-kolam-uji-02", "--opd", "dp3",
            "--kind", "fish_feeder", "--name", "Kolam uji", "--broker-host", "10.1.2.3",
            "--mqtt-password-file", str(secret), "--root", str(root), *extra]


def test_provision_offline_writes_a_working_unit_and_second_run_changes_nothing(
        tmp_path, capsys):
    root = tmp_path / "root"
    assert main(offline_args(tmp_path, root)) == 0
    out = capsys.readouterr().out
    assert "[3/7] Config: written" in out and "[7/7] Enabled: linked" in out

    config = load_config(root / "etc/smartcity/fish_feeder.toml")
    assert (config.unit.device_id, config.unit.opd, config.unit.name) == (
        "dp3-kolam-uji-02", "dp3", "Kolam uji")
    # Broker host from the flag; port and TLS as the template says.
    assert (config.broker.host, config.broker.port, config.broker.tls) == ("10.1.2.3", 8883,
                                                                           True)
    assert config.broker.username == "dp3-kolam-uji-02"
    secret = root / str(config.broker.password_file).lstrip("/")
    assert secret.read_text() == "pw-offline-123\n"
    assert secret.stat().st_mode & 0o777 == 0o600
    # Everything else is the example config, comments included.
    example = (REPO / "config/fish_feeder.example.toml").read_text()
    written = (root / "etc/smartcity/fish_feeder.toml").read_text()
    assert [line for line in written.splitlines() if line.startswith("#")] == [
        line for line in example.splitlines() if line.startswith("#")]
    assert "WARNING: TLS is on" in out  # no CA certificate installed yet
    assert (root / "var/lib/smartcity/fish_feeder").is_dir()
    link = root / "etc/systemd/system/multi-user.target.wants/smartcity-fish-feeder.service"
    assert os.readlink(link) == "../smartcity-fish-feeder.service"
    # the path unit that runs a release the controller offered, enabled for this kind
    systemd = root / "etc/systemd/system"
    assert (systemd / "smartcity-update@.service").is_file()
    assert "/var/lib/smartcity/%i/update-request.json" in (
        systemd / "smartcity-update@.path").read_text()
    link = systemd / "multi-user.target.wants/smartcity-update@fish_feeder.path"
    assert os.readlink(link) == "../smartcity-update@.path"
    assert "linked multi-user.target.wants/smartcity-update@fish_feeder.path" in out

    before = snapshot(root)
    assert main(offline_args(tmp_path, root)) == 0
    out = capsys.readouterr().out
    assert snapshot(root) == before
    assert out.count(": unchanged") == 5 and "Nothing changed" in out


def test_provision_keeps_the_technicians_edits_and_changes_only_identity(tmp_path, capsys):
    root = tmp_path / "root"
    assert main(offline_args(tmp_path, root)) == 0
    path = root / "etc/smartcity/fish_feeder.toml"
    edited = path.read_text().replace("rate_g_per_s = 18.0  ", "rate_g_per_s = 21.5  ", 1)
    path.write_text(edited)
    args = offline_args(tmp_path, root)
    args[args.index("10.1.2.3")] = "mqtt.example.net"
    assert main(args) == 0
    assert "[3/7] Config: updated" in capsys.readouterr().out
    config = load_config(path)
    assert config.broker.host == "mqtt.example.net"
    assert config.feeders[0].rate_g_per_s == 21.5  # the calibration survived


def test_provision_dry_run_writes_nothing(tmp_path, capsys):
    root = tmp_path / "root"
    assert main(offline_args(tmp_path, root, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert not root.exists()
    assert "[3/7] Config: would write" in out and "Dry run: nothing was written." in out


def test_provision_refuses_half_given_identity(tmp_path, capsys):
    assert main(["provision", "--device-id", "x-01", "--root", str(tmp_path / "r")]) == 1
    assert "missing: --opd, --kind, --mqtt-password-file" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_set_toml_values_edits_in_place_and_keeps_comments():
    text = ('kind = "x"\n\n[unit]\ndevice_id = "old" # the id\nname = "a # b"  # site\n\n'
            '[[outputs]]\nname = "v"\n')
    out = set_toml_values(text, {("unit", "device_id"): "new", ("unit", "name"): 'say "hi"',
                                 ("unit", "opd"): "dlh", ("broker", "port"): 1883,
                                 ("broker", "tls"): False})
    assert 'device_id = "new" # the id\n' in out
    assert 'name = "say \\"hi\\""  # site\n' in out
    data = tomllib.loads(out)
    assert data["unit"] == {"device_id": "new", "name": 'say "hi"', "opd": "dlh"}
    assert data["broker"] == {"port": 1883, "tls": False}
    assert data["outputs"] == [{"name": "v"}]  # the array table is untouched
    with pytest.raises(ValueError, match="arrays"):
        set_toml_values("[unit]\nname = [1]\n", {("unit", "name"): "x"})
