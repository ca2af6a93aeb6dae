"""Bearer tokens and the three roles.

A token is 32 random bytes, URL-safe base64 (43 characters), shown once when created.
Only its SHA-256 hash is stored, so a copy of the database does not hold usable tokens.

Roles:

- ``admin`` (Diskominfo): every OPD, every change, users and tokens.
- ``operator`` (one OPD): reads and changes its own OPD's devices only. Another OPD's
  device is answered with 404, exactly as a device that does not exist, so an operator
  cannot probe which device ids exist elsewhere.
- ``viewer`` (e.g. Bappeda): reads everything, changes nothing (403 on every change).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "operator", "viewer"]
TOKEN_BYTES = 32


def random_token(nbytes: int) -> str:
    """URL-safe random text of ``nbytes`` random bytes that never starts with ``-``, so it
    can follow an option on a command line (``--token TOKEN``) without being taken for
    one."""
    while True:
        token = secrets.token_urlsafe(nbytes)
        if not token.startswith("-"):
            return token


def new_token() -> str:
    """A fresh random bearer token (show it once; store only `hash_token` of it)."""
    return random_token(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token, as stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's user and role."""

    token_id: int
    user: str
    role: Role
    opd: str | None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"{self.user} ({self.role}{' ' + self.opd if self.opd else ''}, token {self.token_id})"

    @property
    def can_change(self) -> bool:
        return self.role in ("admin", "operator")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def sees_opd(self, opd: str) -> bool:
        """True if this caller may see (and, if it can change, change) OPD ``opd``."""
        return self.role != "operator" or self.opd == opd

    @property
    def opd_scope(self) -> str | None:
        """The OPD a listing is restricted to (None: all)."""
        return self.opd if self.role == "operator" else None
