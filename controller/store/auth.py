"""Users, API tokens (SHA-256 hashes only; each expires and keeps when it was last used)
and the audit log (append-only)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from controller.auth import DEFAULT_TOKEN_TTL_DAYS
from controller.errors import Conflict, Invalid, NotFound
from controller.store.base import StoreBase, _loads, iso, utcnow

ROLES = ("admin", "operator", "viewer")


class AuthMixin(StoreBase):
    """Users, tokens and the audit log."""

    def create_token(self, *, name: str, role: str, opd: str | None, token_hash: str,
                     actor: str, expires_at: datetime | None = None,
                     now: datetime | None = None) -> dict:
        """Add a token for user ``name`` (created on first use). Audited.

        It expires at ``expires_at`` (default: ``DEFAULT_TOKEN_TTL_DAYS`` from now). A user
        keeps one role and OPD: asking for another one for an existing name is a
        `Conflict`.
        """
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}", field="role")
        if (role == "operator") != (opd is not None):
            raise Invalid("an operator needs an OPD; admins and viewers have none",
                          field="opd")
        now = now or utcnow()
        expires_at = self._token_expiry(expires_at, now)
        with self._write():
            if opd is not None and not self.db.execute(
                    "SELECT 1 FROM opds WHERE code = ?", [opd]).fetchone():
                raise NotFound(f"OPD {opd!r} does not exist (add a device under it first)")
            user = self.db.execute("SELECT id, role, opd FROM users WHERE name = ?",
                                   [name]).fetchone()
            if user is None:
                user_id = self.db["users"].insert(
                    {"name": name, "role": role, "opd": opd, "created_at": iso(now)}).last_pk
            elif (user[1], user[2]) != (role, opd):
                raise Conflict(f"user {name!r} exists as {user[1]}"
                               + (f" of {user[2]}" if user[2] else ""))
            else:
                user_id = user[0]
            token_id = self._insert_token(user_id, token_hash, actor, expires_at, now)
            after = {"token_id": token_id, "user": name, "role": role, "opd": opd,
                     "expires_at": expires_at}
            self._audit(actor, "token.create", f"token:{token_id}", opd, None, after, now)
        return self.get_token(token_id)

    @staticmethod
    def _token_expiry(expires_at: datetime | None, now: datetime) -> str:
        if expires_at is None:
            return iso(now + timedelta(days=DEFAULT_TOKEN_TTL_DAYS))
        if iso(expires_at) <= iso(now):
            raise Invalid("a token must expire in the future", field="expires_at")
        return iso(expires_at)

    def _insert_token(self, user_id: int, token_hash: str, actor: str, expires_at: str,
                      now: datetime) -> int:
        return self.db["tokens"].insert(
            {"user_id": user_id, "token_hash": token_hash, "created_at": iso(now),
             "created_by": actor, "expires_at": expires_at}).last_pk

    _TOKEN_SQL = """
        SELECT t.id, t.user_id, u.name AS user, u.role, u.opd, t.created_at, t.created_by,
               t.expires_at, t.last_used_at, t.revoked_at, t.revoked_by
        FROM tokens t JOIN users u ON u.id = t.user_id
    """

    def get_token(self, token_id: int) -> dict | None:
        return self._one(self._TOKEN_SQL + " WHERE t.id = ?", [token_id])

    def list_tokens(self, opd: str | None = None) -> list[dict]:
        if opd is None:
            return self._rows(self._TOKEN_SQL + " ORDER BY t.id")
        return self._rows(self._TOKEN_SQL + " WHERE u.opd = ? ORDER BY t.id", [opd])

    def principal_for(self, token_hash: str) -> dict | None:
        """The not revoked token with this hash and its user, or None. The caller checks
        ``expires_at`` (an expired token is told apart from an unknown one)."""
        return self._one(self._TOKEN_SQL + " WHERE t.token_hash = ? AND t.revoked_at IS NULL",
                         [token_hash])

    def touch_token(self, token_id: int, now: datetime) -> bool:
        """Set a token's ``last_used_at`` to ``now`` unless it is already within the same
        minute (so a busy token is written at most once a minute, whichever process
        serves it). Not audited. True if it wrote."""
        with self._write():
            return self.db.execute(
                "UPDATE tokens SET last_used_at = :now WHERE id = :id AND "
                "(last_used_at IS NULL OR substr(last_used_at, 1, 16) < substr(:now, 1, 16))",
                {"now": iso(now), "id": token_id}).rowcount > 0

    def rotate_token(self, token_id: int, *, token_hash: str, actor: str,
                     expires_at: datetime | None = None, now: datetime | None = None) -> dict:
        """Replace a token by a new one of the same user (so the same role and OPD) in one
        transaction: the old one is revoked at once, the new one (``token_hash``) expires
        at ``expires_at`` (default as `create_token`). Audited. A revoked token cannot be
        rotated (`Conflict`); an expired one can. Returns the new token."""
        now = now or utcnow()
        expires_at = self._token_expiry(expires_at, now)
        with self._write():
            row = self.db.execute(
                "SELECT t.user_id, t.revoked_at, t.expires_at, u.opd FROM tokens t "
                "JOIN users u ON u.id = t.user_id WHERE t.id = ?", [token_id]).fetchone()
            if row is None:
                raise NotFound(f"no token with id {token_id}")
            user_id, revoked_at, old_expiry, opd = row
            if revoked_at is not None:
                raise Conflict(f"token {token_id} was revoked at {revoked_at}; create a new one")
            self.db.execute("UPDATE tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?",
                            (iso(now), actor, token_id))
            new_id = self._insert_token(user_id, token_hash, actor, expires_at, now)
            self._audit(actor, "token.rotate", f"token:{token_id}", opd,
                        {"token_id": token_id, "expires_at": old_expiry},
                        {"token_id": new_id, "expires_at": expires_at}, now)
        return self.get_token(new_id)

    def revoke_token(self, token_id: int, *, actor: str, now: datetime | None = None) -> dict:
        """Revoke a token (idempotent). Audited when it changes anything."""
        now = now or utcnow()
        with self._write():
            row = self.db.execute(
                "SELECT t.revoked_at, u.opd FROM tokens t JOIN users u ON u.id = t.user_id "
                "WHERE t.id = ?", [token_id]).fetchone()
            if row is None:
                raise NotFound(f"no token with id {token_id}")
            if row[0] is None:
                self.db.execute("UPDATE tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?",
                                (iso(now), actor, token_id))
                self._audit(actor, "token.revoke", f"token:{token_id}", row[1],
                            {"revoked_at": None}, {"revoked_at": iso(now)}, now)
        return self.get_token(token_id)

    def list_users(self, opd: str | None = None, now: datetime | None = None) -> list[dict]:
        """Users with their count of live tokens (neither revoked nor expired)."""
        sql = ("SELECT u.id, u.name, u.role, u.opd, u.created_at, "
               "(SELECT count(*) FROM tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL"
               " AND t.expires_at > :now) AS live_tokens FROM users u")
        params: dict[str, Any] = {"now": iso(now or utcnow())}
        if opd is None:
            return self._rows(sql + " ORDER BY u.id", params)
        return self._rows(sql + " WHERE u.opd = :opd ORDER BY u.id", params | {"opd": opd})

    # ------------------------------------------------------------------ audit
    def list_audit(self, *, opd: str | None = None, before_id: int | None = None,
                   limit: int = 100) -> list[dict]:
        """Audit entries, newest first; ``before_id`` pages backwards."""
        where, params = ["1 = 1"], []
        if opd is not None:
            where.append("opd = ?")
            params.append(opd)
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        rows = self._rows(f"SELECT * FROM audit WHERE {' AND '.join(where)} "
                          "ORDER BY id DESC LIMIT ?", [*params, limit])
        for row in rows:
            row["before"], row["after"] = _loads(row["before"]), _loads(row["after"])
        return rows
