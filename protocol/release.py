"""Release bundles: what the controller signs and a unit checks before it installs one.

A bundle is a tar file (plain or gzip) holding ``manifest.json``, ``manifest.sig`` and
the files the manifest lists, each with its size and SHA-256::

    manifest.json       {"format": 1, "project": ..., "version": "0.2.0", "python": "3.11",
                         "platforms": ["aarch64", "armv7l"], "files": [...], ...}
    manifest.sig        Ed25519 signature over manifest.json's exact bytes (64 bytes)
    wheels/*.whl        the project's wheel and the wheelhouse of its [edge] extra
    requirements.lock   pins with hashes (pip install --require-hashes)
    systemd/*.service   the daemons' units

Keys are raw 32-byte Ed25519 keys written in base64 (``[update] trusted_keys`` of a
unit's config). The signature covers the manifest; the manifest covers every file; so
a unit that checked the signature with a key it trusts and every file's hash knows the
whole bundle is what the release's builder made. docs/updates.md tells the whole story.

This module is the contract only (names, the manifest's model, the key and signature
checks); reading the tar is ``protocol.bundle`` (the same check on both sides), writing
it the controller's (``controller.release``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from protocol.errors import ProtocolError
from protocol.validation import StrictModel

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
LOCK = "requirements.lock"
PROJECT = "smartcity-balikpapan"
PYTHON_VERSION = "3.11"
"""The units' Python (Raspberry Pi OS Bookworm, Debian 12)."""

PI_PLATFORMS = ("aarch64", "armv7l")
"""The units' platforms (``platform.machine()`` of a Pi on 64- and 32-bit Raspberry Pi OS)."""

MAX_MANIFEST_BYTES = 1 << 20
MAX_BUNDLE_FILES = 2000
MAX_BUNDLE_BYTES = 512 << 20
"""Size bound of a bundle's unpacked files (a real one is about 30 MB)."""

VERSION_PATTERN = r"^[0-9][0-9A-Za-z.+_-]{0,63}$"
_PATH_RE = re.compile(r"^[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*$")


class BundleError(ProtocolError):
    """A bundle that must not be installed: unsigned, signed by an unknown key, a file
    that does not match its hash, a path that leaves the bundle, another platform."""


def safe_member_path(path: str) -> bool:
    """Whether ``path`` is a plain relative path inside the bundle (no ``/`` at the
    start, no ``..`` or ``.`` part, no empty part, no odd characters)."""
    return (bool(_PATH_RE.match(path)) and len(path) <= 255
            and all(part not in (".", "..") for part in path.split("/")))


class ManifestFile(StrictModel):
    path: str = Field(description="Relative path inside the bundle.")
    size: int = Field(ge=0, le=MAX_BUNDLE_BYTES)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("path")
    @classmethod
    def _safe(cls, v: str) -> str:
        if not safe_member_path(v) or v in (MANIFEST, SIGNATURE):
            raise ValueError(f"{v!r} is not a plain relative path inside the bundle")
        return v


class Manifest(StrictModel):
    """``manifest.json``: what the bundle is and the hash of every file in it."""

    format: Literal[1] = BUNDLE_FORMAT
    project: Literal["smartcity-balikpapan"] = PROJECT
    version: str = Field(pattern=VERSION_PATTERN, description="The project's version.")
    python: str = Field(PYTHON_VERSION, pattern=r"^3\.[0-9]+$")
    platforms: list[str] = Field(min_length=1, description="Machines the wheelhouse "
                                 "installs on (platform.machine() names).")
    created_at: str = Field(description="UTC, RFC 3339.")
    wheel: str = Field(description="The project's wheel (a path in files).")
    lock: str = Field(LOCK, description="The lock file with hashes (a path in files).")
    units: list[str] = Field(default_factory=list, description="systemd units (paths in "
                             "files).")
    files: list[ManifestFile] = Field(min_length=1, max_length=MAX_BUNDLE_FILES)

    @model_validator(mode="after")
    def _consistent(self):
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("a path is listed twice")
        for name in (self.wheel, self.lock, *self.units):
            if name not in paths:
                raise ValueError(f"{name} is not among the files")
        if sum(f.size for f in self.files) > MAX_BUNDLE_BYTES:
            raise ValueError(f"the files add up to more than {MAX_BUNDLE_BYTES} bytes")
        return self

    def file(self, path: str) -> ManifestFile:
        return next(f for f in self.files if f.path == path)

    def to_bytes(self) -> bytes:
        """The manifest as signed: sorted keys, two-space indent, a final newline."""
        return (json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
                ).encode("utf-8")


def bundle_name(version: str) -> str:
    return f"smartcity-{version}.bundle"


def encode_key(raw: bytes) -> str:
    """A raw 32-byte public key as the base64 text a unit's config lists."""
    return base64.b64encode(raw).decode("ascii")


def decode_key(text: str) -> bytes:
    """The raw 32 bytes of a base64 public key; ``BundleError`` if it is not one."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BundleError(f"{text[:60]!r} is not base64") from None
    if len(raw) != 32:
        raise BundleError(f"an Ed25519 public key is 32 bytes, this one {len(raw)}")
    return raw


def key_id(raw: bytes) -> str:
    """A short name of a public key for logs and reports (its SHA-256, 16 hex digits)."""
    return hashlib.sha256(raw).hexdigest()[:16]


def verify_manifest(data: bytes, signature: bytes, trusted_keys: list[str]
                    ) -> tuple[Manifest, str]:
    """Check ``signature`` over the manifest's exact bytes ``data`` against each trusted
    key, then read the manifest. Returns ``(manifest, id of the key that signed it)``;
    raises ``BundleError`` saying why not."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not trusted_keys:
        raise BundleError("no trusted keys: list the release key in [update] trusted_keys")
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError("manifest.json is larger than 1 MiB")
    signer = None
    for text in trusted_keys:
        raw = decode_key(text)
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, data)
        except InvalidSignature:
            continue
        signer = key_id(raw)
        break
    if signer is None:
        raise BundleError("bad signature: manifest.sig does not verify with any trusted key "
                          f"({', '.join(key_id(decode_key(k)) for k in trusted_keys)})")
    try:
        manifest = Manifest.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(manifest)"
        raise BundleError(f"manifest.json: {where}: {first['msg']}") from None
    return manifest, signer
