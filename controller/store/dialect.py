"""The two backends of the store: SQLite (embedded, the default) and PostgreSQL.

The store's SQL is written once, in SQLite's spelling with ``?`` (or ``:name``)
placeholders, using only what both servers understand (``INSERT ... ON CONFLICT DO
NOTHING``, ``ON CONFLICT (...) DO UPDATE``, ``coalesce``, ``substr``). The few functions
that differ go through the store's `Dialect` (``store.dialect``): JSON field extraction,
the larger of two values, a test that a JSON value is a number; the two queries that walk
JSON objects row by row (roll-ups, chart buckets) and the device list built as JSON are
written once per backend.

On SQLite ``store.db`` is a ``sqlite_utils.Database``, as it always was (no layer in the
ingest's hot path). On PostgreSQL it is a `PgDatabase`: the same few methods
(``execute``, ``executescript``, ``query``, ``db[table].insert(row).last_pk``,
``db[table].exists()``, ``db.conn.executemany``, ``db.conn.in_transaction``) over one
psycopg connection, translating each statement's placeholders once (cached).

`PgDatabase` outside a transaction runs in autocommit (each read sees what is
committed); `controller.store.base.StoreBase._write` opens the transaction and takes
`WRITE_LOCK_KEY` with ``pg_advisory_xact_lock``, so one writer at a time writes, across
every controller process on the database, as with SQLite's ``BEGIN IMMEDIATE``. A lost
connection raises `controller.errors.StoreError`; the next statement outside a
transaction connects again.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from controller.errors import Invalid, StoreError

SCHEMES = ("postgresql://", "postgres://")
WRITE_LOCK_KEY = 0x5C17_B4_1C
"""The advisory lock every write transaction on PostgreSQL takes first."""


def is_postgres(target: object) -> bool:
    """Whether ``target`` (a path or URL) names a PostgreSQL database."""
    return isinstance(target, str) and target.startswith(SCHEMES)


def redact(target: str) -> str:
    """``target`` without a password, for logs and error messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", target)


class Dialect:
    """SQLite's spelling of the functions that differ."""

    name = "sqlite"
    integrity_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)

    @staticmethod
    def json_text(column: str, key: str) -> str:
        """A JSON object's field, as SQL text/number (NULL when absent)."""
        return f"json_extract({column}, '$.{key}')"

    @staticmethod
    def json_number(column: str, key: str) -> str:
        """A JSON object's field when it is a number (else NULL), as an SQL number."""
        return (f"CASE WHEN json_type({column}, '$.{key}') IN ('integer', 'real') "
                f"THEN json_extract({column}, '$.{key}') END")

    @staticmethod
    def greatest(a: str, b: str) -> str:
        return f"max({a}, {b})"


class PgDialect(Dialect):
    """PostgreSQL's spelling."""

    name = "postgresql"

    def __init__(self) -> None:
        import psycopg
        self.integrity_errors = (psycopg.errors.IntegrityError,)

    @staticmethod
    def json_text(column: str, key: str) -> str:
        return f"({column}::jsonb ->> '{key}')"

    @staticmethod
    def json_number(column: str, key: str) -> str:
        return (f"CASE WHEN jsonb_typeof({column}::jsonb -> '{key}') = 'number' "
                f"THEN ({column}::jsonb ->> '{key}')::numeric END")

    @staticmethod
    def greatest(a: str, b: str) -> str:
        return f"greatest({a}, {b})"


SQLITE = Dialect()

# --------------------------------------------------------------------------- PostgreSQL

_TOKENS = re.compile(r"""('(?:[^']|'')*')|(\?)|(?<![:\w]):([A-Za-z_]\w*)|(%)""")


def translate(sql: str, named: bool) -> str:
    """``?`` -> ``%s``, ``:name`` -> ``%(name)s``, ``%`` -> ``%%`` (outside quotes)."""
    def sub(m: re.Match) -> str:
        if m.group(1) is not None:
            return m.group(1).replace("%", "%%")
        if m.group(2) is not None:
            return "%s"
        if m.group(3) is not None:
            return f"%({m.group(3)})s" if named else m.group(0)
        return "%%"
    return _TOKENS.sub(sub, sql)


class _Cursor:
    """What the store reads off a cursor: rows (tuples), ``rowcount``, ``lastrowid``."""

    __slots__ = ("_cur", "rowcount", "lastrowid")

    def __init__(self, cur: Any, lastrowid: int | None = None):
        self._cur = cur
        self.rowcount = cur.rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> tuple | None:
        return self._cur.fetchone() if self._cur.description else None

    def fetchall(self) -> list[tuple]:
        return self._cur.fetchall() if self._cur.description else []

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.fetchall())


class _InsertResult:
    __slots__ = ("last_pk",)

    def __init__(self, last_pk: Any):
        self.last_pk = last_pk


class _Table:
    def __init__(self, db: PgDatabase, name: str):
        self.db, self.name = db, name

    def exists(self) -> bool:
        row = self.db.execute("SELECT to_regclass(?) IS NOT NULL", [self.name]).fetchone()
        return bool(row and row[0])

    def insert(self, row: dict[str, Any]) -> _InsertResult:
        """Insert one row; ``last_pk`` is its ``id`` when the table has one, else None."""
        cols = list(row)
        returning = " RETURNING id" if self.db.has_id(self.name) else ""
        cur = self.db.execute(
            f"INSERT INTO {self.name} ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' * len(cols))}){returning}", [row[c] for c in cols])
        got = cur.fetchone() if returning else None
        return _InsertResult(got[0] if got else None)

    def insert_all(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self.insert(row)


class _Conn:
    """``db.conn``: the few connection methods the store calls directly."""

    def __init__(self, db: PgDatabase):
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> _Cursor:
        return self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def commit(self) -> None:
        if self._db.in_transaction:
            self._db.commit()

    def rollback(self) -> None:
        self._db.rollback_quietly()


class PgDatabase:
    """One psycopg connection with the methods of ``sqlite_utils.Database`` the store
    uses. Not thread-safe by itself: the store's lock guards it."""

    def __init__(self, url: str):
        self.url = url
        self.conn = _Conn(self)
        self._pg: Any = None
        self._sql: dict[tuple[str, bool], str] = {}
        self._ids: dict[str, bool] = {}
        self._tx = False
        self._connect()

    # ------------------------------------------------------------------ connection
    def _connect(self) -> None:
        import psycopg
        from psycopg.adapt import Dumper
        from psycopg.pq import Format

        class _BoolAsInt(Dumper):  # booleans are INTEGER 0/1 columns, as on SQLite
            format = Format.TEXT
            oid = psycopg.adapters.types["int4"].oid

            def dump(self, obj: bool) -> bytes:
                return b"1" if obj else b"0"

        try:
            self._pg = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"{redact(self.url)}: cannot connect: {exc}".strip()) from exc
        self._pg.adapters.register_dumper(bool, _BoolAsInt)

    def _live(self) -> Any:
        """The connection, connecting again if the last one was lost (never inside a
        transaction: that one is gone with its connection)."""
        if self._pg is None or self._pg.closed or self._pg.broken:
            self._close_quietly()
            self._connect()
        return self._pg

    def _close_quietly(self) -> None:
        if self._pg is not None:
            with contextlib.suppress(Exception):  # already broken
                self._pg.close()
        self._pg = None

    def close(self) -> None:
        self._close_quietly()

    @property
    def in_transaction(self) -> bool:
        """Inside `begin` .. `commit` / `rollback_quietly`: every statement runs on the
        transaction's connection (never on a new one, even when that one is lost)."""
        return self._tx

    def begin(self) -> None:
        self.execute("BEGIN")
        self._tx = True

    def commit(self) -> None:
        try:
            self._run(lambda: self._pg.execute("COMMIT"))
        finally:
            self._tx = False

    def lost(self) -> bool:
        return self._pg is None or self._pg.closed or self._pg.broken

    def rollback_quietly(self) -> None:
        self._tx = False
        if self._pg is None or self._pg.closed:
            return
        try:
            self._pg.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the connection is gone: nothing to undo
            self._close_quietly()

    # ------------------------------------------------------------------ statements
    def _prepare(self, sql: str, params: Any) -> tuple[str, Any]:
        if not params:
            return sql, None
        named = isinstance(params, dict)
        key = (sql, named)
        text = self._sql.get(key)
        if text is None:
            text = self._sql[key] = translate(sql, named)
        return text, (params if named else list(params))

    def _run(self, fn: Any, *, retry: bool = False) -> Any:
        """``fn()``; a lost connection raises `StoreError`. ``retry``: a statement outside
        a transaction whose connection turns out to have been lost (the server restarted
        since the last one) runs once more on a new connection: it had done nothing."""
        import psycopg
        try:
            return fn()
        except psycopg.DataError as exc:
            if "(0x00)" in str(exc) or "\\u0000" in str(exc):
                raise Invalid("text may not contain NUL characters (U+0000)") from exc
            raise
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if not self.lost() and not isinstance(exc, psycopg.InterfaceError):
                raise
            if retry:
                self._close_quietly()
                try:
                    return fn()
                except (psycopg.OperationalError, psycopg.InterfaceError) as again:
                    if not self.lost():
                        raise
                    exc = again
            raise StoreError(f"{redact(self.url)}: connection lost: {exc}") from exc

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> _Cursor:
        text, args = self._prepare(sql, params)
        if self.in_transaction:
            return self._run(lambda: _Cursor(self._pg.execute(text, args)))
        return self._run(lambda: _Cursor(self._live().execute(text, args)), retry=True)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        rows = [list(r) for r in rows]
        if not rows:
            return
        text, _ = self._prepare(sql, rows[0])

        def run() -> None:
            with (self._pg if self._tx else self._live()).cursor() as cur:
                cur.executemany(text, rows)
        self._run(run, retry=not self._tx)

    def executescript(self, script: str) -> None:
        self._run(lambda: (self._pg if self._tx else self._live()).execute(script))

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
              ) -> Iterator[dict[str, Any]]:
        from psycopg.rows import dict_row
        text, args = self._prepare(sql, params)

        def run() -> list[dict[str, Any]]:
            pg = self._pg if inside else self._live()
            with pg.cursor(row_factory=dict_row) as cur:
                cur.execute(text, args)
                return cur.fetchall() if cur.description else []
        inside = self.in_transaction
        return iter(self._run(run, retry=not inside))

    def __getitem__(self, table: str) -> _Table:
        return _Table(self, table)

    def has_id(self, table: str) -> bool:
        found = self._ids.get(table)
        if found is None:
            found = self._ids[table] = bool(self.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = "
                "current_schema() AND table_name = ? AND column_name = 'id'",
                [table]).fetchone())
        return found
