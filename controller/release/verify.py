"""Checking a release bundle before the controller keeps it and offers it to units.

``verify_bundle(path, trusted_keys)`` reads the tar with the very check a unit runs
before it installs one (`protocol.bundle.read_bundle`; ``edge.update`` runs it again on
the unit): ``manifest.sig`` verifies over ``manifest.json`` with one of ``[releases]
trusted_keys``; every other member is a plain file at a plain relative path, listed in
the manifest with its size and SHA-256, and nothing listed is missing. It returns the
manifest and the signer's key id, or raises ``BundleError`` saying why not. ``file_sha256`` is the hash of the whole file, the one
the ``update`` command carries.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from protocol.bundle import read_bundle
from protocol.release import BundleError, Manifest

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_bundle(path: Path, trusted_keys: list[str]) -> tuple[Manifest, str]:
    """Check the bundle at ``path`` whole, as a unit does (`protocol.bundle.read_bundle`);
    ``(manifest, key id)``."""
    if not trusted_keys:
        raise BundleError("no trusted keys: list the release key in [releases] trusted_keys "
                          "of the controller's config")
    manifest, signer, _ = read_bundle(path, trusted_keys)
    return manifest, signer
