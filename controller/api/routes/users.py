"""Users, tokens and the audit log.

Admins create and revoke tokens (a token is shown once). Everyone may read who they
are; admins and viewers see every user, token and audit entry, operators those of
their own OPD.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from controller.api.deps import AdminUser, CurrentUser, StoreDep
from controller.api.schemas import AuditOut, Me, TokenCreated, TokenIn, TokenOut, UserOut
from controller.auth import hash_token, new_token

router = APIRouter(prefix="/api/v1", tags=["users"])


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
def create_token(store: StoreDep, user: AdminUser, body: TokenIn) -> dict:
    """Create a token for a user (made on first use). The token is in this answer only."""
    token = new_token()
    row = store.create_token(name=body.name, role=body.role, opd=body.opd,
                             token_hash=hash_token(token), actor=user.actor)
    return {**row, "token": token}


@router.delete("/tokens/{token_id}", response_model=TokenOut)
def revoke_token(store: StoreDep, user: AdminUser,
                 token_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> dict:
    """Revoke a token; it answers 401 from now on."""
    return store.revoke_token(token_id, actor=user.actor)


@router.get("/audit", response_model=list[AuditOut])
def audit(store: StoreDep, user: CurrentUser,
          before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
          limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
    """Every change (who, what, when, before and after), newest first."""
    return store.list_audit(opd=user.opd_scope, before_id=before_id, limit=limit)
