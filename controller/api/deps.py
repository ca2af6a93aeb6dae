"""Dependencies the routes share, as ``Annotated`` aliases so routes stay short.

- ``StoreDep``, ``StateDep``: the app's store and running parts (built in the lifespan).
- ``CurrentUser``: the caller behind the bearer token (401 without a live token).
- ``Writer``: a caller allowed to change things (viewer: 403).
- ``AdminUser``: an admin (others: 403).
- ``LangDep``: the caller's language for messages, ``id`` or ``en`` (``Accept-Language``;
  ``id`` when absent).
- ``VisibleDevice``: the ``{device_id}`` of the path, 404 if it does not exist *or* belongs
  to another OPD than an operator's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from controller.auth import Principal, hash_token
from controller.checks import Lang, request_lang
from controller.ingest import Ingest
from controller.metrics import Metrics
from controller.publisher import Publisher
from controller.settings import Settings
from controller.store import Store
from protocol.topics import ID_PATTERN


@dataclass
class AppState:
    settings: Settings
    store: Store
    metrics: Metrics
    publisher: Publisher
    ingest: Ingest | None


def get_state(request: Request) -> AppState:
    return request.app.state.controller


StateDep = Annotated[AppState, Depends(get_state)]


def get_store(state: StateDep) -> Store:
    return state.store


StoreDep = Annotated[Store, Depends(get_store)]

bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer <token>`")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail,
                         headers={"WWW-Authenticate": "Bearer"})


def get_principal(store: StoreDep, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    if credentials is None:
        raise _unauthorized("missing bearer token")
    row = store.principal_for(hash_token(credentials.credentials))
    if row is None:
        raise _unauthorized("unknown or revoked token")
    return Principal(token_id=row["id"], user=row["user"], role=row["role"], opd=row["opd"])


CurrentUser = Annotated[Principal, Depends(get_principal)]


def require_writer(user: CurrentUser) -> Principal:
    if not user.can_change:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="viewers cannot change anything")
    return user


Writer = Annotated[Principal, Depends(require_writer)]


def require_admin(user: CurrentUser) -> Principal:
    if not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="only admins can do this")
    return user


AdminUser = Annotated[Principal, Depends(require_admin)]


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} not found")


def visible_device(store: StoreDep, user: CurrentUser,
                   device_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> dict:
    row = store.get_device(device_id)
    if row is None or not user.sees_opd(row["opd"]):
        raise not_found(f"device {device_id!r}")
    return row


VisibleDevice = Annotated[dict, Depends(visible_device)]


def get_lang(accept_language: Annotated[str | None, Header()] = None) -> Lang:
    return request_lang(accept_language)


LangDep = Annotated[Lang, Depends(get_lang)]
