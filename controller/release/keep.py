"""Adding a release to the controller: ``release add FILE`` and ``POST /api/v1/releases``.

``keep_bundle(store, settings, path, actor)`` checks the bundle whole
(`controller.release.verify`: signature against ``[releases] trusted_keys``, every
file's hash, the manifest), then keeps it as ``[releases] dir``/``smartcity-<version>.bundle``
and stores its row (version, SHA-256 and size of the whole file, platforms). A bundle
refused, or a version kept already, raises `ReleaseRefused` and leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from controller.errors import Conflict, ControllerError
from controller.release.verify import file_sha256, verify_bundle
from protocol.release import BundleError, bundle_name

if TYPE_CHECKING:
    from controller.settings import Settings
    from controller.store import Store

logger = logging.getLogger(__name__)


class ReleaseRefused(ControllerError, ValueError):
    """A bundle the controller does not keep; ``code`` says why (``not_verified``,
    ``exists``, ``too_large``), the message in words."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def bundle_path(settings: Settings, version: str) -> Path:
    return settings.releases.dir / bundle_name(version)


STALE_UPLOAD_S = 86_400
"""A temporary upload file this old was left by a controller that stopped mid-upload."""


def upload_file(settings: Settings) -> tuple[int, Path]:
    """A new temporary file in ``[releases] dir`` (same file system: kept by a link);
    uploads left by a controller that stopped in the middle of one are removed."""
    folder = settings.releases.dir
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(".upload-*.partial"):
        try:
            if time.time() - old.stat().st_mtime > STALE_UPLOAD_S:
                old.unlink()
        except OSError:
            pass  # another upload's, or gone already
    fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".partial", dir=folder)
    return fd, Path(name)


def keep_bundle(store: Store, settings: Settings, path: Path, actor: str, *,
                move: bool = False) -> dict:
    """Verify the bundle at ``path`` and keep it (see the module doc); the release's row.

    ``move``: ``path`` is a temporary file of ours in ``[releases] dir`` (an upload),
    renamed into place; otherwise it is copied there first, and the copy is checked."""
    if move:
        staged = path
    else:
        fd, staged = upload_file(settings)
        os.close(fd)
    try:
        if not move:
            shutil.copyfile(path, staged)
        size = staged.stat().st_size
        if size > settings.releases.max_bundle_bytes:
            raise ReleaseRefused("too_large", f"the bundle has {size} bytes, more than "
                                 f"[releases] max_bundle_mb "
                                 f"({settings.releases.max_bundle_mb} MB)")
        try:
            manifest, signer = verify_bundle(staged, settings.releases.trusted_keys)
        except BundleError as exc:
            raise ReleaseRefused("not_verified", str(exc)) from None
        if store.get_release(manifest.version) is not None:
            raise ReleaseRefused("exists", f"release {manifest.version} is kept already")
        digest = file_sha256(staged)
        with staged.open("rb") as handle:
            os.fsync(handle.fileno())
        target = bundle_path(settings, manifest.version)
        try:
            os.link(staged, target)  # never over a file kept already
        except FileExistsError:
            raise ReleaseRefused("exists", f"{target} exists already") from None
        try:
            row = store.add_release(
                version=manifest.version, sha256=digest, size=size,
                platforms=list(manifest.platforms), manifest_created_at=manifest.created_at,
                key_id=signer, actor=actor)
        except BaseException as exc:
            target.unlink(missing_ok=True)
            if isinstance(exc, Conflict):  # added by someone else meanwhile
                raise ReleaseRefused("exists", str(exc)) from None
            raise
    finally:
        staged.unlink(missing_ok=True)  # kept under its name by then, or refused
    logger.info("release %s kept: %s (%d bytes, sha256 %s, signed by key %s)",
                manifest.version, target, size, digest, signer)
    return row
