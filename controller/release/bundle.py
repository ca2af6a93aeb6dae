"""Release bundles: ``smartcity-controller release keygen`` and ``release build``.

``keygen(out)`` writes an Ed25519 key pair: ``release.key`` (the private key, PEM,
mode 0600: keep it off the units and out of the repository) and ``release.pub`` (the
raw public key in base64, the line a unit lists in ``[update] trusted_keys``).

``build_bundle(key, out, ...)`` makes ``smartcity-<version>.bundle`` in ``out``: a tar
holding the project's wheel and the wheelhouse of its ``[edge]`` extra
(``wheels/``, built by ``controller.release.wheelhouse``), ``requirements.lock`` (pins
with hashes), the daemons' systemd units (``systemd/``), ``manifest.json`` (version,
platforms, size and SHA-256 of every file) and ``manifest.sig`` (Ed25519 over the
manifest's exact bytes). The format is ``protocol.release``'s; docs/updates.md tells
the whole story.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from protocol.kinds import KINDS
from protocol.release import (
    LOCK,
    MANIFEST,
    SIGNATURE,
    Manifest,
    ManifestFile,
    bundle_name,
    encode_key,
    key_id,
)

from .wheelhouse import REPO, WheelhouseError, build_wheelhouse, sha256

logger = logging.getLogger(__name__)

PRIVATE_KEY = "release.key"
PUBLIC_KEY = "release.pub"
UNIT_FILES = tuple(f"{spec.service}.service" for spec in KINDS.values())


class ReleaseError(RuntimeError):
    """A key or bundle cannot be made; the message says why."""


@dataclass
class Built:
    path: Path
    manifest: Manifest
    key_id: str


def keygen(out: Path) -> tuple[Path, Path, str]:
    """Write a new key pair into ``out``; returns ``(private, public, public key text)``.
    Refuses to overwrite a key already there."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out.mkdir(parents=True, exist_ok=True)
    private, public = out / PRIVATE_KEY, out / PUBLIC_KEY
    for path in (private, public):
        if path.exists():
            raise ReleaseError(f"{path} exists: a release key is made once (move it away "
                               "to make a new one; units must then trust the new one)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    text = encode_key(raw)
    public.write_text(text + "\n")
    return private, public, text


def load_private_key(path: Path):
    """An Ed25519 private key from a PEM file (``release keygen``'s ``release.key``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ReleaseError(f"--key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise ReleaseError(f"--key {path}: not an unencrypted PEM private key ({exc})"
                           ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"--key {path}: not an Ed25519 key")
    return key


def _wheel_version(wheel: Path) -> str:
    match = re.match(r"^[A-Za-z0-9_.]+-([^-]+)-", wheel.name)
    if match is None:
        raise ReleaseError(f"cannot read a version from {wheel.name}")
    return match.group(1)


def build_bundle(key_path: Path, out: Path, *, platforms: Sequence[str] = ("aarch64",),
                 source: Path = REPO, project_wheel: Path | None = None,
                 find_links: Sequence[Path] = (), no_index: bool = False) -> Built:
    """Build, sign and write ``out/smartcity-<version>.bundle`` (see the module doc)."""
    from cryptography.hazmat.primitives import serialization

    key = load_private_key(key_path)
    raw_public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    units = [source / "systemd" / name for name in UNIT_FILES]
    missing = [str(p) for p in units if not p.is_file()]
    if missing:
        raise ReleaseError(f"systemd units missing from {source}: {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smartcity-release-") as tmp:
        stage = Path(tmp) / "bundle"
        wheels = stage / "wheels"
        try:
            house = build_wheelhouse(wheels, platforms, source=source,
                                     project_wheel=project_wheel, controller=False,
                                     find_links=find_links, no_index=no_index, sums=False)
        except WheelhouseError as exc:
            raise ReleaseError(f"the wheelhouse could not be built: {exc}") from None
        house.edge_lock.replace(stage / LOCK)
        (stage / "systemd").mkdir()
        for unit in units:
            shutil.copyfile(unit, stage / "systemd" / unit.name)
        files = sorted(p for p in stage.rglob("*") if p.is_file())
        manifest = Manifest(
            version=_wheel_version(house.project_wheel), platforms=house.platforms,
            created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            wheel=f"wheels/{house.project_wheel.name}", lock=LOCK,
            units=[f"systemd/{u.name}" for u in units],
            files=[ManifestFile(path=p.relative_to(stage).as_posix(), size=p.stat().st_size,
                                sha256=sha256(p)) for p in files])
        data = manifest.to_bytes()
        signature = key.sign(data)
        target = out / bundle_name(manifest.version)
        partial = target.with_name(target.name + ".partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, MANIFEST, data)
            _add_bytes(tar, SIGNATURE, signature)
            for path in files:
                info = tar.gettarinfo(str(path), arcname=path.relative_to(stage).as_posix())
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
        os.replace(partial, target)
    logger.info("wrote %s (%s, %d files, %.1f MB, signed by key %s)", target,
                manifest.version, len(manifest.files), target.stat().st_size / 1e6,
                key_id(raw_public))
    return Built(path=target, manifest=manifest, key_id=key_id(raw_public))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))
