"""Users, tokens and the audit log.

Admins create, rotate and revoke tokens (a token's secret is shown once). Everyone may
read who they are; admins and viewers see every user, token and audit entry, operators
those of their own OPD.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from controller.api.deps import AdminUser, AppState, CurrentUser, StateDep, StoreDep
from controller.api.schemas import (
    AuditOut,
    Me,
    TokenCreated,
    TokenIn,
    TokenOut,
    TokenRotateIn,
    UserOut,
)
from controller.auth import hash_token, new_token
from controller.store import utcnow

router = APIRouter(prefix="/api/v1", tags=["users"])

TokenId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("/users/me", response_model=Me)
def me(user: CurrentUser) -> Me:
    """Who the token belongs to."""
    return Me(user=user.user, role=user.role, opd=user.opd, token_id=user.token_id)


@router.get("/users", response_model=list[UserOut])
def list_users(store: StoreDep, user: CurrentUser) -> list[dict]:
    return store.list_users(user.opd_scope)


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(store: StoreDep, user: CurrentUser) -> list[dict]:
    """Tokens (never their values)."""
    return store.list_tokens(user.opd_scope)


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(state: StateDep, user: AdminUser, body: TokenIn) -> dict:
    """Create a token for a user (made on first use). The token is in this answer only.
    It expires after ``expires_days`` (default ``[api] token_ttl_days``)."""
    token = new_token()
    row = state.store.create_token(name=body.name, role=body.role, opd=body.opd,
                                   token_hash=hash_token(token), actor=user.actor,
                                   expires_at=_expiry(state, body.expires_days))
    return {**row, "token": token}


@router.post("/tokens/{token_id}/rotate", response_model=TokenCreated,
             status_code=status.HTTP_201_CREATED)
def rotate_token(state: StateDep, user: AdminUser, token_id: TokenId,
                 body: TokenRotateIn | None = None) -> dict:
    """Replace a token by a new secret for the same user (role and OPD): the old secret
    is refused from now on, the new one (in this answer only) has a new id and expiry.
    A revoked token cannot be rotated (409); an expired one can."""
    token = new_token()
    row = state.store.rotate_token(token_id, token_hash=hash_token(token), actor=user.actor,
                                   expires_at=_expiry(state, body and body.expires_days))
    return {**row, "token": token}


def _expiry(state: AppState, days: int | None) -> datetime:
    """When a token made now expires: after ``days``, or ``[api] token_ttl_days``."""
    return utcnow() + timedelta(days=days or state.settings.api.token_ttl_days)


@router.delete("/tokens/{token_id}", response_model=TokenOut)
def revoke_token(store: StoreDep, user: AdminUser, token_id: TokenId) -> dict:
    """Revoke a token; it answers 401 from now on."""
    return store.revoke_token(token_id, actor=user.actor)


@router.get("/audit", response_model=list[AuditOut])
def audit(store: StoreDep, user: CurrentUser,
          before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
          limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
    """Every change (who, what, when, before and after), newest first."""
    return store.list_audit(opd=user.opd_scope, before_id=before_id, limit=limit)
