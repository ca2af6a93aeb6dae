"""Small durable state that must survive a reboot: pauses, daily totals, the run in
progress, the last accepted remote config, recently seen command ids.

One SQLite file per daemon (WAL, synchronous=FULL), key -> JSON document. Every ``set``
is its own committed transaction, so a power cut loses at most the write in progress.
``set_many`` writes several keys in one transaction: after a power cut the file holds
all of them or none, for documents that must agree (a daily total and the feeding it
counts).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_UPSERT = ("INSERT INTO state (key, value) VALUES (?, ?) "
           "ON CONFLICT(key) DO UPDATE SET value = excluded.value")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class StateStore:
    def __init__(self, path):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set(self, key: str, value: Any) -> None:
        doc = _dumps(value)
        with self._lock:
            self._db.execute(_UPSERT, (key, doc))

    def set_many(self, docs: Mapping[str, Any]) -> None:
        """Write every ``key: value`` of ``docs`` in one transaction (all or none)."""
        rows = [(key, _dumps(value)) for key, value in docs.items()]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_UPSERT, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def delete(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM state WHERE key = ?", (key,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
