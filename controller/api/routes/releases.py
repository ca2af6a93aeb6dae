"""Releases: signed bundles the controller keeps and units download.

``POST /releases`` (admin) takes the bundle file as the request body, streamed to disk
and capped at ``[releases] max_bundle_mb``, and keeps it only once it verifies
(`controller.release.keep`). ``GET /releases/{version}/bundle`` needs no token (the
bundle is signed and the ``update`` command carries its SHA-256): the file, with HTTP
Range requests (206, 416), ``Accept-Ranges`` and an ``ETag`` (its SHA-256), so a unit
resumes a cut download.
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from controller.api.deps import AdminUser, StaffUser, StateDep, StoreDep, not_found
from controller.api.schemas import ReleaseOut, UnitVersionOut
from controller.release.keep import ReleaseRefused, bundle_path, keep_bundle, upload_file
from protocol.release import VERSION_PATTERN, bundle_name

router = APIRouter(prefix="/api/v1", tags=["releases"])

_STATUS = {"exists": status.HTTP_409_CONFLICT,
           "too_large": status.HTTP_413_CONTENT_TOO_LARGE,
           "not_verified": status.HTTP_422_UNPROCESSABLE_CONTENT}


def _refused(code: str, message: str) -> HTTPException:
    return HTTPException(_STATUS[code], detail=[{"loc": ["body"], "msg": message,
                                                 "type": code}])


@router.post("/releases", response_model=ReleaseOut, status_code=status.HTTP_201_CREATED,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string",
                                                         "format": "binary"}}}}},
             responses={413: {"description": "larger than [releases] max_bundle_mb"},
                        422: {"description": "not verified: bad signature, a wrong hash, "
                              "a file missing or extra, a bad manifest"}})
async def add_release(request: Request, state: StateDep, user: AdminUser) -> dict:
    """Add a release: the ``smartcity-<version>.bundle`` file as the body. It is kept
    only if its signature verifies with a key of ``[releases] trusted_keys`` and every
    file matches the manifest; otherwise 422 says why and nothing is kept."""
    settings = state.settings
    cap = settings.releases.max_bundle_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > cap:
        raise _refused("too_large", f"the bundle is larger than [releases] max_bundle_mb "
                       f"({settings.releases.max_bundle_mb} MB)")
    fd, path = await run_in_threadpool(upload_file, settings)
    try:
        size = 0
        with os.fdopen(fd, "wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise _refused("too_large", "the bundle is larger than [releases] "
                                   f"max_bundle_mb ({settings.releases.max_bundle_mb} MB)")
                await run_in_threadpool(handle.write, chunk)
        if size == 0:
            raise _refused("not_verified", "the body is empty: send the bundle file")
        return await run_in_threadpool(keep_bundle, state.store, settings, path, user.actor,
                                       move=True)
    except ReleaseRefused as exc:
        raise _refused(exc.code, str(exc)) from None
    finally:
        path.unlink(missing_ok=True)


@router.get("/releases", response_model=list[ReleaseOut])
def list_releases(store: StoreDep, user: StaffUser) -> list[dict]:
    """Releases kept, newest first."""
    return store.list_releases()


@router.get("/releases/{version}/bundle", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}},
                       206: {"description": "the range asked for"},
                       404: {"description": "no such release"},
                       416: {"description": "the range is outside the file"}})
def download_bundle(state: StateDep,
                    version: Annotated[str, PathParam(pattern=VERSION_PATTERN)]
                    ) -> FileResponse:
    """The bundle file (no token: it is signed, and the update command carries its
    SHA-256). ``Range: bytes=N-`` resumes a cut download."""
    row = state.store.get_release(version)
    path = bundle_path(state.settings, version)
    if row is None or not path.is_file():
        raise not_found(f"release {version!r}")
    return FileResponse(path, media_type="application/octet-stream",
                        filename=bundle_name(version), headers={"etag": f'"{row["sha256"]}"'})


@router.get("/unit-versions", response_model=list[UnitVersionOut])
def unit_versions(store: StoreDep, user: StaffUser) -> list[dict]:
    """Each unit's version running and the version last offered to it (an operator: its
    OPD's units)."""
    return store.device_versions(user.opd_scope)
