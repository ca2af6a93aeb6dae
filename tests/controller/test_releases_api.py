"""Releases through HTTP: added only when they verify, kept whole, downloaded in ranges;
the commands API refuses ``update`` (only rollouts send it); ``release add`` on the
command line."""

from __future__ import annotations

import hashlib

import pytest
from controller_support import auth
from release_support import make_bundle, new_key

from controller.cli import main as cli_main
from controller.settings import parse_settings
from controller.store import Store

RELEASES = "/api/v1/releases"


@pytest.fixture(scope="module")
def release_key():
    return new_key()


@pytest.fixture
def settings(tmp_path, release_key):  # the conftest's client uses this one
    return parse_settings({"database": {"path": str(tmp_path / "controller.db")},
                           "mqtt": {"enabled": False},
                           "releases": {"dir": str(tmp_path / "releases"),
                                        "trusted_keys": [release_key[1]],
                                        "max_bundle_mb": 1}}, environ={})


def _post(client, token, path):
    return client.post(RELEASES, headers=auth(token) | {
        "Content-Type": "application/octet-stream"}, content=path.read_bytes())


def test_release_add_good_kept_listed_and_audited(client, seeded, store, settings, tmp_path,
                                                  release_key):
    bundle = make_bundle(tmp_path / "in", release_key[0], "0.2.0")
    r = _post(client, seeded.admin, bundle)
    assert r.status_code == 201, r.text
    row = r.json()
    assert row["version"] == "0.2.0" and row["platforms"] == ["aarch64"]
    assert row["sha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert row["size"] == bundle.stat().st_size and row["added_by"].startswith("admin")
    kept = settings.releases.dir / "smartcity-0.2.0.bundle"
    assert kept.read_bytes() == bundle.read_bytes()
    assert [p.name for p in settings.releases.dir.iterdir()] == [kept.name]  # no leftovers
    listed = client.get(RELEASES, headers=auth(seeded.op_dlh)).json()
    assert [x["version"] for x in listed] == ["0.2.0"]
    assert client.get(RELEASES, headers=auth(seeded.viewer)).status_code == 403
    assert store.list_audit()[0]["action"] == "release.add"
    again = _post(client, seeded.admin, bundle)
    assert again.status_code == 409 and again.json()["detail"][0]["type"] == "exists"
    assert kept.read_bytes() == bundle.read_bytes()


@pytest.mark.parametrize(("how", "why"), [("tampered", "wrong hash"),
                                          ("wrong_key", "bad signature"),
                                          ("not_a_tar", "not a bundle")])
def test_release_add_refused_keeps_nothing(client, seeded, store, settings, tmp_path,
                                           release_key, how, why):
    if how == "tampered":
        bundle = make_bundle(tmp_path / "in", release_key[0], "0.2.0", tamper=True)
    elif how == "wrong_key":
        bundle = make_bundle(tmp_path / "in", new_key()[0], "0.2.0")
    else:
        bundle = tmp_path / "junk.bundle"
        bundle.write_bytes(b"this is no tar file" * 100)
    r = _post(client, seeded.admin, bundle)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["type"] == "not_verified"
    assert why in r.json()["detail"][0]["msg"]
    assert store.list_releases() == []
    assert list(settings.releases.dir.iterdir()) == []


def test_release_add_only_admin_and_size_capped(client, seeded, store, settings, tmp_path,
                                                release_key):
    bundle = make_bundle(tmp_path / "in", release_key[0], "0.2.0")
    assert _post(client, seeded.op_dlh, bundle).status_code == 403
    big = make_bundle(tmp_path / "big", release_key[0], "0.3.0", filler=1_200_000)
    r = _post(client, seeded.admin, big)
    assert r.status_code == 413 and r.json()["detail"][0]["type"] == "too_large"

    def chunks():  # no Content-Length: cut while streaming
        data = big.read_bytes()
        for i in range(0, len(data), 65536):
            yield data[i:i + 65536]

    r = client.post(RELEASES, headers=auth(seeded.admin), content=chunks())
    assert r.status_code == 413
    assert store.list_releases() == [] and list(settings.releases.dir.iterdir()) == []


def test_release_bundle_download_ranges(client, seeded, tmp_path, release_key):
    bundle = make_bundle(tmp_path / "in", release_key[0], "0.2.0")
    assert _post(client, seeded.admin, bundle).status_code == 201
    url = f"{RELEASES}/0.2.0/bundle"
    whole = client.get(url)  # no token: the bundle is signed
    data = bundle.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["etag"] == f'"{sha}"'
    size = len(data)
    cuts = [0, 1000, size // 2, size - 10, size]
    parts = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        r = client.get(url, headers={"Range": f"bytes={a}-{b - 1}"})
        assert r.status_code == 206, r.text
        assert r.headers["content-range"] == f"bytes {a}-{b - 1}/{size}"
        parts.append(r.content)
    assert b"".join(parts) == data
    resumed = client.get(url, headers={"Range": f"bytes={size // 3}-"})
    assert resumed.status_code == 206 and resumed.content == data[size // 3:]
    beyond = client.get(url, headers={"Range": f"bytes={size + 5}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    assert client.get(f"{RELEASES}/9.9.9/bundle").status_code == 404


def test_commands_api_refuses_update(client, seeded, transport):
    body = {"action": "update", "params": {"version": "0.2.0",
                                           "url": "http://x/y", "sha256": "0" * 64,
                                           "size": 10}}
    r = client.post("/api/v1/devices/taman-01/commands", headers=auth(seeded.admin),
                    json=body)
    assert r.status_code == 422
    item = r.json()["detail"][0]
    assert item["loc"] == ["body", "action"] and item["type"] == "update_by_rollout"
    assert item["msg"].startswith("pembaruan hanya dikirim oleh rollout")
    en = client.post("/api/v1/devices/taman-01/commands", json={"action": "update"},
                     headers=auth(seeded.admin) | {"Accept-Language": "en"})
    assert en.status_code == 422 and "only a rollout" in en.json()["detail"][0]["msg"]
    assert transport.published == []


def test_release_add_cli(tmp_path, release_key, capsys):
    config = tmp_path / "controller.toml"
    config.write_text(f"""
[database]
path = "{tmp_path / 'controller.db'}"
[mqtt]
enabled = false
[releases]
dir = "{tmp_path / 'releases'}"
trusted_keys = ["{release_key[1]}"]
""")
    good = make_bundle(tmp_path / "in", release_key[0], "0.2.0")
    bad = make_bundle(tmp_path / "bad", release_key[0], "0.3.0", tamper=True)
    assert cli_main(["release", "add", str(good), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "0.2.0" in out and hashlib.sha256(good.read_bytes()).hexdigest() in out
    assert cli_main(["release", "add", str(bad), "--config", str(config)]) == 1
    assert "wrong hash" in capsys.readouterr().err
    assert cli_main(["release", "add", str(good), "--config", str(config)]) == 1
    assert "kept already" in capsys.readouterr().err
    with Store.open(tmp_path / "controller.db") as store:
        assert [r["version"] for r in store.list_releases()] == ["0.2.0"]
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == [
        "smartcity-0.2.0.bundle"]


def test_release_settings_refuse_a_key_that_is_not_one(tmp_path):
    from controller.errors import SettingsError

    with pytest.raises(SettingsError) as err:
        parse_settings({"releases": {"trusted_keys": ["bm90IGEga2V5"]}}, environ={})
    assert "releases.trusted_keys" in str(err.value) and "32 bytes" in str(err.value)


def test_release_upload_left_by_a_stopped_controller_is_removed(settings, store, tmp_path,
                                                                release_key):
    import os

    from controller.release.keep import keep_bundle

    settings.releases.dir.mkdir(parents=True)
    old = settings.releases.dir / ".upload-abc.partial"
    old.write_bytes(b"half a bundle")
    os.utime(old, (1, 1))
    fresh = settings.releases.dir / ".upload-def.partial"  # an upload under way
    fresh.write_bytes(b"a quarter")
    keep_bundle(store, settings, make_bundle(tmp_path / "in", release_key[0], "0.2.0"), "t")
    assert sorted(p.name for p in settings.releases.dir.iterdir()) == [
        ".upload-def.partial", "smartcity-0.2.0.bundle"]
