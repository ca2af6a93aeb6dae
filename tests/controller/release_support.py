"""Small signed bundles for the controller's release tests (imported as
``release_support``): the real format (``protocol.release``), made in a moment, with a
few bytes standing in for the wheels. ``tests/update`` builds real ones."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.release import MANIFEST, SIGNATURE, Manifest, ManifestFile, encode_key


def new_key() -> tuple[Ed25519PrivateKey, str]:
    """A private key and its public key as ``trusted_keys`` lists it."""
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return key, encode_key(raw)


def make_bundle(out: Path, key: Ed25519PrivateKey, version: str, *, tamper: bool = False,
                filler: int = 200_000) -> Path:
    """``out/smartcity-<version>.bundle`` signed with ``key``; ``tamper``: one file's bytes
    changed after signing (its hash no longer matches)."""
    wheel = f"wheels/smartcity_balikpapan-{version}-py3-none-any.whl"
    files = {wheel: (b"wheel of " + version.encode()) * (filler // 16 + 1),
             "requirements.lock": b"paho-mqtt==2.1.0 --hash=sha256:00\n",
             "systemd/smartcity-irrigation.service": b"[Service]\nExecStart=/bin/true\n"}
    manifest = Manifest(
        version=version, platforms=["aarch64"], created_at="2026-12-01T00:00:00Z",
        wheel=wheel, units=["systemd/smartcity-irrigation.service"],
        files=[ManifestFile(path=p, size=len(b), sha256=hashlib.sha256(b).hexdigest())
               for p, b in files.items()])
    data = manifest.to_bytes()
    if tamper:
        files["requirements.lock"] = b"paho-mqtt==6.6.6 --hash=sha256:00\n"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"smartcity-{version}.bundle"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, blob in [(MANIFEST, data), (SIGNATURE, key.sign(data)), *files.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path
