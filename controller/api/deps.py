"""Dependencies the routes share, as ``Annotated`` aliases so routes stay short.

- ``StoreDep``, ``StateDep``: the app's store and running parts (built in the lifespan).
- ``CurrentUser``: the caller behind the bearer token: 401 without a live token (an
  expired one is told so), 429 with ``Retry-After`` while the caller's address is locked
  for failing too many logins (`controller.auth.FailedLogins`). Error texts are in the
  caller's language (`request_lang`).
- ``Writer``: a caller allowed to change things (viewer: 403).
- ``AdminUser``: an admin (others: 403).
- ``StaffUser``: an admin or an operator (viewers: 403).
- ``LangDep``: the caller's language for messages, ``id`` or ``en`` (``Accept-Language``;
  ``id`` when absent).
- ``VisibleDevice``: the ``{device_id}`` of the path, 404 if it does not exist *or* belongs
  to another OPD than an operator's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from controller.auth import FailedLogins, Principal, hash_token
from controller.checks import Lang, request_lang
from controller.ingest import Ingest
from controller.leader import Leader
from controller.live import LiveHub, Tickets
from controller.metrics import Metrics
from controller.publisher import Publisher
from controller.settings import Settings
from controller.store import Store, iso, utcnow
from protocol.topics import ID_PATTERN


@dataclass
class AppState:
    settings: Settings
    store: Store
    metrics: Metrics
    publisher: Publisher
    ingest: Ingest | None
    logins: FailedLogins = field(default_factory=FailedLogins)
    loop: asyncio.AbstractEventLoop | None = None  # the server's event loop (liveness)
    live: LiveHub | None = None  # changes pushed to open pages (controller.live)
    tickets: Tickets = field(default_factory=Tickets)  # to open the stream with
    leader: Leader | None = None  # None: this instance takes no part in leading


def get_state(request: Request) -> AppState:
    return request.app.state.controller


StateDep = Annotated[AppState, Depends(get_state)]


def get_store(state: StateDep) -> Store:
    return state.store


StoreDep = Annotated[Store, Depends(get_store)]

bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer <token>`")

MINUTE = len("YYYY-MM-DDTHH:MM")
"""A token's ``last_used_at`` is kept to the minute: written on its first accepted request
in each minute, not on every request."""

_AUTH_TEXT: dict[str, dict[Lang, str]] = {
    "missing": {"id": "token bearer tidak ada (Authorization: Bearer <token>)",
                "en": "missing bearer token (Authorization: Bearer <token>)"},
    "unknown": {"id": "token tidak dikenal atau sudah dicabut",
                "en": "unknown or revoked token"},
    "expired": {"id": "token kedaluwarsa pada {at}; minta admin memperbaruinya "
                      "(token rotate)",
                "en": "token expired at {at}; ask an admin to rotate it (token rotate)"},
    "locked": {"id": "terlalu banyak login gagal dari alamat ini; coba lagi dalam {s} detik",
               "en": "too many failed logins from this address; try again in {s} s"},
}


def _lang(request: Request) -> Lang:
    return request_lang(request.headers.get("accept-language"))


def client_address(request: Request) -> str:
    """The caller's address: the peer, or the ``X-Forwarded-For`` client when the peer is
    one of ``[api] trusted_proxies`` (uvicorn's proxy-headers middleware, see main)."""
    return request.client.host if request.client else "unknown"


def _unauthorized(detail: str, error: str = "") -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail,
                         headers={"WWW-Authenticate": "Bearer" + error})


def get_principal(request: Request, state: StateDep, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    if credentials is None:
        raise _unauthorized(_AUTH_TEXT["missing"][_lang(request)])
    address = client_address(request)
    wait_s = state.logins.retry_after(address)
    if wait_s:
        state.metrics.logins_throttled.inc()
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            detail=_AUTH_TEXT["locked"][_lang(request)].format(s=wait_s),
                            headers={"Retry-After": str(wait_s)})
    row = state.store.principal_for(hash_token(credentials.credentials))
    now = utcnow()
    now_text = iso(now)
    if row is None or row["expires_at"] <= now_text:
        reason = "unknown" if row is None else "expired"
        state.logins.failed(address)
        state.metrics.login_failures.labels(reason).inc()
        text = _AUTH_TEXT[reason][_lang(request)]
        if row is None:
            raise _unauthorized(text)
        raise _unauthorized(text.format(at=row["expires_at"]),
                            ' error="invalid_token", error_description="token expired"')
    if (row["last_used_at"] or "")[:MINUTE] != now_text[:MINUTE]:  # its first use this minute
        state.store.touch_token(row["id"], now)
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


def require_staff(user: CurrentUser) -> Principal:
    if not user.can_change:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail="only admins and operators can do this")
    return user


StaffUser = Annotated[Principal, Depends(require_staff)]
"""An admin or an operator (an operator sees its OPD's units only)."""


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
