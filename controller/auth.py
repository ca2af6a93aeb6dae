"""Bearer tokens and the three roles.

A token is 32 random bytes, URL-safe base64 (43 characters), shown once when created.
Only its SHA-256 hash is stored, so a copy of the database does not hold usable tokens.

Roles:

- ``admin`` (Diskominfo): every OPD, every change, users and tokens.
- ``operator`` (one OPD): reads and changes its own OPD's devices only. Another OPD's
  device is answered with 404, exactly as a device that does not exist, so an operator
  cannot probe which device ids exist elsewhere.
- ``viewer`` (e.g. Bappeda): reads everything, changes nothing (403 on every change).

A token expires (``DEFAULT_TOKEN_TTL_DAYS`` unless its creator says otherwise, at most a
year); ``token rotate`` gives it a new secret and a new expiry. Failed logins are counted
per client address by `FailedLogins`, which the API uses to answer 429 to an address that
keeps guessing.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "operator", "viewer"]
TOKEN_BYTES = 32
DEFAULT_TOKEN_TTL_DAYS = 90
"""An API token's lifetime when neither its creator nor ``[api] token_ttl_days`` says."""
MAX_TOKEN_TTL_DAYS = 365
"""The longest an API token may live; one needed longer is rotated (``token rotate``)."""


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


class FailedLogins:
    """Failed logins per client address over a sliding window, in memory (per process).

    After ``limit`` failures within ``window_s`` an address is locked: `retry_after` says
    how many seconds remain until the oldest of those failures leaves the window. While
    locked, the caller refuses every login from that address, a correct token too, so
    a guesser learns nothing from trying; refused attempts are not counted again, so the
    lock ends when the window has passed. A success does not clear the count (one valid
    token must not reset another's guessing).

    Bounded: at most ``limit`` times per address and ``max_addresses`` addresses; when
    full, the address whose last failure is oldest is forgotten first. Thread-safe.
    ``clock`` is a monotonic clock in seconds (tests pass their own).
    """

    def __init__(self, limit: int = 10, window_s: float = 60.0, *,
                 max_addresses: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int:
        """0 if ``address`` may try now, else the whole seconds it must wait (>= 1)."""
        with self._lock:
            times = self._failures.get(address)
            if times is None or len(times) < self.limit:
                return 0
            wait = times[0] + self.window_s - self._clock()
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def failed(self, address: str) -> None:
        """Count one failed login from ``address``."""
        with self._lock:
            times = self._failures.pop(address, None)
            if times is None:
                times = deque(maxlen=self.limit)
            times.append(self._clock())
            self._failures[address] = times  # the most recent failure last
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)

    @property
    def tracked(self) -> int:
        """Addresses with failures remembered now."""
        return len(self._failures)
