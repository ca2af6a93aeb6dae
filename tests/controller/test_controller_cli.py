"""``smartcity-controller``: settings from TOML + environment, tokens, devices, exit codes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.auth import hash_token
from controller.cli import main
from controller.errors import SettingsError
from controller.settings import load_settings
from controller.store import Store


@pytest.fixture
def config(tmp_path, database):
    """The CLI's config file: SQLite at data/controller.db, or a PostgreSQL database."""
    path = tmp_path / "controller.toml"
    url = f'url = "{database["url"]}"\n' if "url" in database else ""
    path.write_text(f'[database]\npath = "data/controller.db"\n{url}[mqtt]\nenabled = false\n')
    return path


def target(config) -> str:
    """The database the CLI's config names."""
    return load_settings(config, environ={}).database.target


def test_settings_relative_paths_and_env_overrides(config, tmp_path):
    settings = load_settings(config, environ={"SMARTCITY_API__PORT": "9001",
                                              "SMARTCITY_MQTT__HOST": "broker.local",
                                              "SMARTCITY_MQTT__PASSWORD": "s3cret",
                                              "OTHER_THING": "x"})
    assert settings.database.path == tmp_path / "data" / "controller.db"
    assert (settings.api.port, settings.mqtt.host) == (9001, "broker.local")
    assert settings.mqtt.read_password() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_settings_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[api]\nport = 0\nbogus = 1\n")
    with pytest.raises(SettingsError) as info:
        load_settings(bad, environ={})
    text = str(info.value)
    assert str(bad) in text and "api.port" in text and "api.bogus" in text
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert load_settings(empty, environ={}).api.port == 8080
    with pytest.raises(SettingsError, match="mqtt.port"):
        load_settings(empty, environ={"SMARTCITY_MQTT__PORT": "not-a-port"})
    bad.write_text("[api\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(bad, environ={})


def test_settings_client_id_defaults_to_the_username_and_workers_are_listed(tmp_path):
    """The broker keys a session by the username (use_username_as_clientid), so the
    client id follows it; mqtt-acl writes the controller's and each worker's login."""
    path = tmp_path / "worker.toml"
    path.write_text('[mqtt]\nusername = "smartcity-ingest-2"\n'
                    '[broker_files]\nworker_usernames = ["smartcity-ingest-2", "ingest-3"]\n')
    settings = load_settings(path, environ={})
    assert settings.mqtt.client_id == "smartcity-ingest-2"
    assert settings.controller_usernames() == ["smartcity-ingest-2", "ingest-3"]
    path.write_text('[broker_files]\nworker_usernames = ["a b"]\n')
    with pytest.raises(SettingsError, match="broker_files.worker_usernames"):
        load_settings(path, environ={})


def test_cli_token_create_list_revoke(config, capsys):
    assert main(["token", "create", "--config", str(config), "--role", "operator",
                 "--opd", "dlh"]) == 1  # no such OPD yet
    assert "OPD 'dlh' does not exist" in capsys.readouterr().err
    assert main(["device", "add", "--config", str(config), "--opd", "dlh",
                 "--device-id", "taman-01"]) == 0
    out = capsys.readouterr().out
    assert "MQTT username: taman-01" in out and "shown once" in out
    assert main(["token", "create", "--config", str(config), "--role", "operator",
                 "--opd", "dlh", "--name", "ana"]) == 0
    token = capsys.readouterr().out.splitlines()[1]
    assert len(token) == 43
    assert main(["token", "list", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert "ana" in listing and "live" in listing and token not in listing
    assert main(["token", "revoke", "--config", str(config), "1"]) == 0
    assert main(["token", "revoke", "--config", str(config), "99"]) == 1
    assert main(["token", "create", "--config", str(config), "--role", "admin",
                 "--opd", "dlh"]) == 2
    with Store.open(target(config)) as store:
        assert [a["action"] for a in store.list_audit()] == ["token.revoke", "token.create",
                                                              "device.add"]
        assert store.list_audit()[0]["actor"].startswith("cli:")


def test_cli_refusals_exit_non_zero(config, tmp_path, capsys):
    args = ["device", "add", "--config", str(config), "--opd", "dlh", "--device-id"]
    assert main([*args, "taman-01"]) == 0
    assert main([*args, "taman-01"]) == 1
    assert "already registered" in capsys.readouterr().err
    assert main([*args, "Taman 01"]) == 2
    assert main(["mqtt-acl", "--config", str(config)]) == 2
    assert "MQTT password" in capsys.readouterr().err
    assert main(["serve", "--config", str(tmp_path / "nope.toml")]) == 2


def test_cli_device_add_refuses_a_controller_login_as_device_id(config, tmp_path, capsys):
    config.write_text(config.read_text() + '[broker_files]\nworker_usernames = ["ingest-2"]\n')
    for device_id in ("smartcity-controller", "ingest-2"):
        assert main(["device", "add", "--config", str(config), "--opd", "dlh",
                     "--device-id", device_id]) == 2
        assert "is the controller's MQTT login" in capsys.readouterr().err
    with Store.open(target(config)) as store:
        assert store.mqtt_accounts() == []



def test_cli_mqtt_acl_refuses_a_device_with_a_controller_login(config, tmp_path, capsys,
                                                               monkeypatch):
    """A device registered by another way (e.g. the API) under a controller's login name
    never reaches the broker files."""
    monkeypatch.setenv("SMARTCITY_MQTT__PASSWORD", "controller-secret")
    config.write_text(config.read_text() + f'[broker_files]\nacl_file = "{tmp_path / "acl"}"\n'
                      f'password_file = "{tmp_path / "passwd"}"\n')
    with Store.open(target(config)) as store:
        store.add_device("smartcity-controller", "dlh", kind="irrigation", name="",
                         mqtt_password_hash="$7$101$x$y", actor="test")
    assert main(["mqtt-acl", "--config", str(config)]) == 1
    assert "has the MQTT username of a controller login" in capsys.readouterr().err
    assert not (tmp_path / "passwd").exists() and not (tmp_path / "acl").exists()


def test_random_tokens_never_start_with_a_dash(monkeypatch):
    """A token typed after ``--token`` must not look like an option to argparse."""
    import secrets

    from controller.auth import new_token
    from controller.broker_files import new_password
    from controller.enrolment import new_enrolment_token

    for make in (new_token, new_password, new_enrolment_token):
        drawn = iter(["-starts-with-a-dash", "-again", "fine-token"])
        monkeypatch.setattr(secrets, "token_urlsafe", lambda n, drawn=drawn: next(drawn))
        assert make() == "fine-token"


def test_cli_token_expiry_and_rotate(config, capsys):
    config.write_text(config.read_text() + "[api]\ntoken_ttl_days = 30\n")
    db = target(config)
    assert main(["token", "create", "--config", str(config), "--role", "viewer",
                 "--name", "bappeda"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert "valid until" in first[0]
    assert main(["token", "create", "--config", str(config), "--role", "admin",
                 "--name", "monitor", "--expires-days", "365"]) == 0
    capsys.readouterr()
    with Store.open(db) as store:
        viewer, monitor = store.list_tokens()
        assert 29.99 < (_at(viewer["expires_at"]) - _now()).total_seconds() / 86400 <= 30
        assert 364.99 < (_at(monitor["expires_at"]) - _now()).total_seconds() / 86400 <= 365
    assert main(["token", "list", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert f"live until {viewer['expires_at']}" in listing and "last used never" in listing

    assert main(["token", "rotate", "--config", str(config), "--id", "1",
                 "--expires-days", "7"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("token 1 revoked; its replacement, token id 3 for bappeda "
                             "(viewer), valid until ")
    new_token = out[1]
    assert len(new_token) == 43 and "shown once" in out[2]
    with Store.open(db) as store:
        assert store.principal_for(hash_token(first[1])) is None  # the old secret
        row = store.principal_for(hash_token(new_token))
        assert (row["id"], row["user"], row["role"], row["opd"]) == (3, "bappeda", "viewer",
                                                                      None)
        entry = store.list_audit()[0]
        assert (entry["action"], entry["target"]) == ("token.rotate", "token:1")
        assert entry["actor"].startswith("cli:") and entry["after"]["token_id"] == 3
    assert main(["token", "rotate", "--config", str(config), "--id", "1"]) == 1
    assert "revoked" in capsys.readouterr().err
    assert main(["token", "rotate", "--config", str(config), "--id", "99"]) == 1
    for bad in ("0", "366", "never", "1.5"):
        with pytest.raises(SystemExit) as info:
            main(["token", "create", "--config", str(config), "--role", "viewer",
                  "--expires-days", bad])
        assert info.value.code == 2
        assert "--expires-days" in capsys.readouterr().err
    with Store.open(db) as store:
        assert len(store.list_tokens()) == 3


def test_settings_trusted_proxies_must_be_addresses(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[api]\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]\n')
    assert load_settings(path, environ={}).api.trusted_proxies[1] == "10.0.0.0/8"
    path.write_text('[api]\ntrusted_proxies = ["proxy.local"]\ntoken_ttl_days = 0\n')
    with pytest.raises(SettingsError) as info:
        load_settings(path, environ={})
    text = str(info.value)
    assert "api.trusted_proxies" in text and "'proxy.local' is not an IP" in text
    assert "api.token_ttl_days" in text


def _at(text: str):
    return datetime.fromisoformat(text)


def _now():
    return datetime.now(UTC)


def test_cli_mqtt_acl_twice_writes_the_same_bytes_until_the_password_changes(tmp_path):
    """A second run keeps the controller's hash (new salt each time would change the file,
    and the broker would be reloaded and restarted for nothing)."""
    secret = tmp_path / "secret"
    secret.write_text("first-password\n")
    path = tmp_path / "controller.toml"
    path.write_text(f'[database]\npath = "controller.db"\n'
                    f'[mqtt]\nenabled = false\npassword_file = "{secret}"\n'
                    f'[broker_files]\npassword_file = "{tmp_path / "passwd"}"\n'
                    f'acl_file = "{tmp_path / "acl"}"\n')
    assert main(["mqtt-acl", "--config", str(path)]) == 0
    first = (tmp_path / "passwd").read_bytes()
    assert main(["mqtt-acl", "--config", str(path)]) == 0
    assert (tmp_path / "passwd").read_bytes() == first
    secret.write_text("second-password\n")
    assert main(["mqtt-acl", "--config", str(path)]) == 0
    changed = (tmp_path / "passwd").read_text()
    assert changed.encode() != first and changed.startswith("smartcity-controller:$7$")


def test_settings_keep_an_in_memory_database_in_memory(tmp_path):
    """``:memory:`` is SQLite's name for a database in memory, not a file beside the
    config (a file of that name was left in the working directory)."""
    path = tmp_path / "controller.toml"
    path.write_text('[database]\npath = ":memory:"\n')
    assert str(load_settings(path, environ={}).database.path) == ":memory:"


def test_settings_database_url_must_name_a_postgresql_database(tmp_path, capsys):
    """A bad ``[database] url`` is refused naming the field; a good one is what the store
    opens (the SQLite path stays the default otherwise)."""
    path = tmp_path / "controller.toml"
    for bad, reason in (("mysql://db.local/city", "must be a PostgreSQL URL"),
                        ("db.local/city", "must be a PostgreSQL URL"),
                        ("postgresql://db.local", "names no database")):
        path.write_text(f'[database]\nurl = "{bad}"\n')
        with pytest.raises(SettingsError) as info:
            load_settings(path, environ={})
        assert "database.url" in str(info.value) and reason in str(info.value)
        assert main(["token", "list", "--config", str(path)]) == 2
        assert "database.url" in capsys.readouterr().err
    path.write_text('[database]\nurl = "postgresql://city@db.local:5433/smartcity"\n')
    assert load_settings(path, environ={}).database.target == \
        "postgresql://city@db.local:5433/smartcity"
    path.write_text('[database]\npath = "c.db"\n')
    assert load_settings(path, environ={}).database.target == str(tmp_path / "c.db")
