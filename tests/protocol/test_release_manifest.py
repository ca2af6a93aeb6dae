"""protocol.release: the manifest's model refuses unsafe or inconsistent bundles, and the
signature check takes only a trusted key's signature over the manifest's exact bytes."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from protocol.release import (
    BundleError,
    Manifest,
    decode_key,
    encode_key,
    key_id,
    safe_member_path,
    verify_manifest,
)

SHA = "0" * 64


def _manifest(**changes) -> Manifest:
    doc = {"version": "0.2.0", "platforms": ["aarch64"], "created_at": "2026-12-07T00:00:00Z",
           "wheel": "wheels/p.whl", "files": [
               {"path": "wheels/p.whl", "size": 1, "sha256": SHA},
               {"path": "requirements.lock", "size": 1, "sha256": SHA}]}
    doc.update(changes)
    return Manifest.model_validate(doc)


def _key() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return key, encode_key(raw)


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../b", "a//b", "./a", "a/.",
                                  "", "a\\b", "manifest.json"])
def test_release_manifest_refuses_unsafe_paths(path):
    with pytest.raises(ValidationError):
        _manifest(files=[{"path": "wheels/p.whl", "size": 1, "sha256": SHA},
                         {"path": "requirements.lock", "size": 1, "sha256": SHA},
                         {"path": path, "size": 1, "sha256": SHA}])


def test_release_manifest_refuses_twice_listed_and_unlisted_parts():
    with pytest.raises(ValidationError, match="twice"):
        _manifest(files=[{"path": "wheels/p.whl", "size": 1, "sha256": SHA}] * 2
                  + [{"path": "requirements.lock", "size": 1, "sha256": SHA}])
    with pytest.raises(ValidationError, match="not among the files"):
        _manifest(wheel="wheels/other.whl")
    assert safe_member_path("wheels/smartcity_balikpapan-0.2.0-py3-none-any.whl")


def test_release_signature_only_from_a_trusted_key_over_the_exact_bytes():
    key, public = _key()
    other, other_public = _key()
    data = _manifest().to_bytes()
    manifest, signer = verify_manifest(data, key.sign(data), [other_public, public])
    assert manifest.version == "0.2.0" and signer == key_id(decode_key(public))
    with pytest.raises(BundleError, match="bad signature"):
        verify_manifest(data, other.sign(data), [public])
    with pytest.raises(BundleError, match="bad signature"):
        verify_manifest(data + b" ", key.sign(data), [public])  # one byte more
    with pytest.raises(BundleError, match="no trusted keys"):
        verify_manifest(data, key.sign(data), [])


@pytest.mark.parametrize("text", ["not base64!", encode_key(b"short"), ""])
def test_release_decode_key_refuses_what_is_not_a_raw_key(text):
    with pytest.raises(BundleError):
        decode_key(text)
