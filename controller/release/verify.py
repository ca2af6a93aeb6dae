"""Checking a release bundle before the controller keeps it and offers it to units.

``verify_bundle(path, trusted_keys)`` reads the tar the way a unit does before it
installs one (``edge.update`` checks it again on the unit): ``manifest.sig`` verifies
over ``manifest.json`` with one of ``[releases] trusted_keys``; every other member is a
plain file at a plain relative path, listed in the manifest with its size and SHA-256,
and nothing listed is missing. It returns the manifest and the signer's key id, or raises
``BundleError`` saying why not. ``file_sha256`` is the hash of the whole file, the one
the ``update`` command carries.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from protocol.release import (
    MANIFEST,
    MAX_BUNDLE_BYTES,
    MAX_BUNDLE_FILES,
    MAX_MANIFEST_BYTES,
    SIGNATURE,
    BundleError,
    Manifest,
    safe_member_path,
    verify_manifest,
)

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> bytes:
    if not member.isreg():
        raise BundleError(f"{name} is not a plain file")
    if member.size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{name} is larger than 1 MiB")
    handle = tar.extractfile(member)
    assert handle is not None  # a regular member
    return handle.read()


def verify_bundle(path: Path, trusted_keys: list[str]) -> tuple[Manifest, str]:
    """Check the bundle at ``path`` whole (see the module doc); ``(manifest, key id)``."""
    if not trusted_keys:
        raise BundleError("no trusted keys: list the release key in [releases] trusted_keys "
                          "of the controller's config")
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"not a bundle (a tar file): {exc}") from None
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BundleError(f"the tar file is damaged: {exc}") from None
        if len(members) > MAX_BUNDLE_FILES + 2:
            raise BundleError(f"more than {MAX_BUNDLE_FILES} files")
        by_name: dict[str, tarfile.TarInfo] = {}
        for member in members:
            if member.name in by_name:
                raise BundleError(f"{member.name} is in the bundle twice")
            by_name[member.name] = member
        if MANIFEST not in by_name or SIGNATURE not in by_name:
            raise BundleError(f"{MANIFEST} or {SIGNATURE} is missing: not a signed bundle")
        data = _read_small(tar, by_name.pop(MANIFEST), MANIFEST)
        signature = _read_small(tar, by_name.pop(SIGNATURE), SIGNATURE)
        manifest, signer = verify_manifest(data, signature, trusted_keys)
        listed = {f.path: f for f in manifest.files}
        extra = sorted(set(by_name) - set(listed))
        if extra:
            raise BundleError(f"{extra[0]} is in the bundle but not in the manifest")
        missing = sorted(set(listed) - set(by_name))
        if missing:
            raise BundleError(f"{missing[0]} is in the manifest but not in the bundle")
        total = 0
        for name, member in by_name.items():
            if not safe_member_path(name):
                raise BundleError(f"{name!r} is not a plain relative path inside the bundle")
            if not member.isreg():
                raise BundleError(f"{name} is not a plain file (a link or a device)")
            want = listed[name]
            total += member.size
            if member.size != want.size or total > MAX_BUNDLE_BYTES:
                raise BundleError(f"wrong size: {name} has {member.size} bytes, the manifest "
                                  f"says {want.size}")
            handle = tar.extractfile(member)
            assert handle is not None
            digest = hashlib.sha256()
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
            if digest.hexdigest() != want.sha256:
                raise BundleError(f"wrong hash: {name} does not match the manifest's SHA-256")
    return manifest, signer
