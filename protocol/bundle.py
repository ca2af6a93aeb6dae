"""Reading a release bundle whole, before anything is written: the one check both sides
run. The controller runs it before it keeps a bundle (``controller.release.keep``), the
unit before it installs one (``edge.update``), so the controller refuses what a unit
would refuse. It reads a tar file, so (like ``protocol.mqtt``) it is not one of the
rule modules; the format itself is ``protocol.release``.

``read_bundle(path, trusted_keys)`` streams the tar once: every member a plain file at a
safe path, no name twice, the files within their bounds, ``manifest.sig`` verifying over
``manifest.json`` with a trusted key, every file listed with its size and SHA-256 and
nothing else. It returns ``(manifest, signer key id, sha256 of manifest.json)`` or raises
``BundleError`` saying why not.
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
_MAX_FILE_BYTES = MAX_BUNDLE_BYTES + (16 << 20)
"""The files' bound and room for the tar's own headers (and a gzip that did not shrink)."""


def _hash_stream(handle, limit: int) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for block in iter(lambda: handle.read(_CHUNK), b""):
        size += len(block)
        if size > limit:
            raise BundleError("a file in the bundle is larger than its bound")
        digest.update(block)
    return digest.hexdigest(), size


def read_bundle(path: Path, trusted_keys: list[str]) -> tuple[Manifest, str, str]:
    """Check the bundle at ``path`` (see the module doc); ``(manifest, signer, sha256 of
    the manifest)``."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BundleError(f"{path}: {exc.strerror or exc}") from None
    if size > _MAX_FILE_BYTES:
        raise BundleError(f"{path} is larger than a bundle may be ({size} bytes)")
    seen: dict[str, tuple[str, int]] = {}
    small: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = member.name
                if not member.isreg():
                    raise BundleError(f"{name!r} is a link, a directory or a device, not a "
                                      "plain file")
                if name not in (MANIFEST, SIGNATURE) and not safe_member_path(name):
                    raise BundleError(f"{name!r} is not a plain relative path inside the "
                                      "bundle")
                if name in seen or name in small:
                    raise BundleError(f"{name!r} is in the bundle twice")
                if len(seen) > MAX_BUNDLE_FILES:
                    raise BundleError("the bundle holds too many files")
                total += member.size
                if total > MAX_BUNDLE_BYTES:
                    raise BundleError("the bundle's files are larger than its bound")
                handle = tar.extractfile(member)
                if name in (MANIFEST, SIGNATURE):
                    if member.size > MAX_MANIFEST_BYTES:
                        raise BundleError(f"{name} is too large")
                    small[name] = handle.read()
                else:
                    seen[name] = _hash_stream(handle, MAX_BUNDLE_BYTES)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleError(f"{path} is not a readable bundle (not a bundle tar file: "
                          f"{exc})") from None
    for name in (MANIFEST, SIGNATURE):
        if name not in small:
            raise BundleError(f"the bundle has no {name}: not a signed bundle")
    manifest, signer = verify_manifest(small[MANIFEST], small[SIGNATURE], trusted_keys)
    listed = {f.path: f for f in manifest.files}
    missing = sorted(set(listed) - set(seen))
    extra = sorted(set(seen) - set(listed))
    if missing or extra:
        raise BundleError("the bundle's files differ from its manifest: " + "; ".join(
            filter(None, [missing and f"missing {', '.join(missing[:5])}",
                          extra and f"not listed {', '.join(extra[:5])}"])))
    for name, (digest, size) in seen.items():
        want = listed[name]
        if digest != want.sha256 or size != want.size:
            raise BundleError(f"wrong hash: {name} does not match its manifest entry "
                              f"(sha256 {digest[:16]}..., expected {want.sha256[:16]}...)")
    return manifest, signer, hashlib.sha256(small[MANIFEST]).hexdigest()
