"""Bundles a unit must refuse, and the bundle as built: keygen, build, verify.

Each refusal goes through ``smartcity-edge update`` on a unit tree that runs 9.0.1: it
exits non-zero with the reason, and the releases folder and the ``current`` symlink are
byte for byte as they were."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.update import UpdateError, verify_bundle
from protocol.release import MANIFEST, SIGNATURE, Manifest


def _members(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}


def _write(path: Path, members: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return path


def _signer(kit):
    return serialization.load_pem_private_key(kit.key.read_bytes(), password=None)


def _resigned(kit, members: dict[str, bytes], key=None, **changes) -> dict[str, bytes]:
    """The bundle's members with the manifest changed and signed again."""
    doc = json.loads(members[MANIFEST])
    doc.update(changes)
    data = Manifest.model_validate(doc).to_bytes()
    return {**members, MANIFEST: data, SIGNATURE: (key or _signer(kit)).sign(data)}


def test_release_keygen_build_and_verify(kit):
    bundle = kit.bundle("9.0.1")
    assert bundle.name == "smartcity-9.0.1.bundle"
    members = _members(bundle)
    manifest, signer, _ = verify_bundle(bundle, [kit.public])
    raw = base64.b64decode(kit.public)
    assert signer == hashlib.sha256(raw).hexdigest()[:16]
    assert manifest.version == "9.0.1" and manifest.python == "3.11"
    assert manifest.wheel == "wheels/smartcity_balikpapan-9.0.1-py3-none-any.whl"
    assert {"requirements.lock", "systemd/smartcity-irrigation.service",
            "systemd/smartcity-fish-feeder.service"} <= set(members)
    for entry in manifest.files:
        assert hashlib.sha256(members[entry.path]).hexdigest() == entry.sha256
    lock = members["requirements.lock"].decode()
    assert "smartcity-balikpapan==9.0.1" in lock and "--hash=sha256:" in lock
    assert "fastapi" not in lock  # the units' [edge] extra only
    # the key file is private
    assert kit.key.stat().st_mode & 0o077 == 0


def test_release_bundle_gzipped_verifies_the_same(kit, tmp_path):
    members = _members(kit.bundle("9.0.1"))
    gz = tmp_path / "smartcity-9.0.1.bundle"
    with tarfile.open(gz, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    manifest, _, _ = verify_bundle(gz, [kit.public])
    assert manifest.version == "9.0.1"


def test_release_keygen_refuses_to_overwrite_a_key(kit):
    from support.release import cli

    result = cli("controller.cli", "release", "keygen", "--out", str(kit.key.parent))
    assert result.returncode == 1 and "exists" in result.stderr


@pytest.fixture(scope="module")
def tree_on_901(tmp_path_factory, kit, request):
    """A unit tree running 9.0.1, shared by the refusals."""
    from support.broker import MosquittoBroker
    from support.release import make_tree

    broker = MosquittoBroker(workdir=tmp_path_factory.mktemp("mosquitto")).start()
    tree = make_tree(tmp_path_factory.mktemp("unit"), kit, broker)
    result = tree.update("--bundle", str(kit.bundle("9.0.1")))
    assert result.returncode == 0, result.stdout + result.stderr
    yield tree
    tree.stop()
    broker.close()


def _bad_bundles(kit, tmp: Path) -> dict[str, tuple[Path, str]]:
    good = _members(kit.bundle("9.0.2"))
    wheel = next(n for n in good if n.startswith("wheels/smartcity_balikpapan"))
    other = Ed25519PrivateKey.generate()
    bad_sig = {**good, SIGNATURE: bytes(64)}
    tampered = {**good, "requirements.lock": good["requirements.lock"] + b"# extra\n"}
    traversal = tarfile.TarInfo("../../etc/cron.d/evil")
    link = tarfile.TarInfo("wheels/link.whl")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    return {
        "bad signature": (_write(tmp / "badsig.bundle", bad_sig), "bad signature"),
        "unknown key": (_write(tmp / "otherkey.bundle", _resigned(kit, good, key=other)),
                        "bad signature"),
        "wrong hash": (_write(tmp / "tampered.bundle", tampered), "wrong hash"),
        "other platform": (_write(tmp / "aarch64.bundle",
                                  _resigned(kit, good, platforms=["aarch64", "armv7l"])),
                           "other platform"),
        "path outside": (_write(tmp / "traversal.bundle", good, [traversal]),
                         "not a plain relative path"),
        "link": (_write(tmp / "link.bundle", good, [link]), "is a link"),
        "missing file": (_write(tmp / "missing.bundle",
                                {k: v for k, v in good.items() if k != wheel}),
                         "differ from its manifest"),
        "not a tar": (_write_bytes(tmp / "garbage.bundle", b"not a tar at all" * 100),
                      "not a readable bundle"),
    }


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _break_config(src: Path) -> None:
    """A version that asks for a key the unit's config does not have."""
    path = src / "edge" / "config.py"
    text = path.read_text()
    marker = '    name: str = Field("", max_length=80, description="human name of the site")\n'
    assert marker in text
    path.write_text(text.replace(marker, marker + "    site_code: str\n", 1))


def test_update_refusals_change_nothing(tree_on_901, kit, tmp_path):
    tree = tree_on_901
    cases = _bad_bundles(kit, tmp_path)
    cases["config not valid for the new version"] = (
        kit.bundle("9.0.5", patch=_break_config), "config not valid for 9.0.5")
    before = tree.snapshot()
    assert before["(current)"] == "releases/9.0.1"
    for case, (bundle, reason) in cases.items():
        result = tree.update("--bundle", str(bundle))
        said = result.stdout + result.stderr
        assert result.returncode == 1, f"{case}: {said}"
        assert reason in said, f"{case}: {said}"
        assert tree.snapshot() == before, case
        journal = tree.journal()
        assert (journal["step"], journal["outcome"]) == ("done", "refused"), case
        print(f"{case}: {result.stdout.strip().splitlines()[-1][:120]}")
    assert tree.running_version() == "9.0.1"


def test_update_verify_refuses_without_trusted_keys(kit):
    with pytest.raises(UpdateError, match="no trusted keys"):
        verify_bundle(kit.bundle("9.0.1"), [])


def test_update_config_names_a_trusted_key_that_is_not_one(tmp_path):
    from edge.config import load_config
    from edge.errors import ConfigError

    path = tmp_path / "unit.toml"
    path.write_text('kind = "irrigation"\n[unit]\ndevice_id = "u1"\nopd = "dlh"\n'
                    '[update]\ntrusted_keys = ["c2hvcnQ="]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "update.trusted_keys[#1]: an Ed25519 public key is 32 bytes" in str(caught.value)
