"""Backups of the controller's database, and restoring one.

`make_backup(database, out_dir)` writes one backup file into ``out_dir``, atomically
(a hidden temporary file, fsync, rename, fsync of the directory), so a backup that is
there is whole:

- SQLite (``database`` a path): an online copy with `sqlite3.Connection.backup`, which
  is consistent while the controller keeps writing (it restarts its copy when a write
  lands in between); the copy is switched out of WAL mode (one self-contained file) and
  must pass ``PRAGMA integrity_check``; then gzip-compressed unless ``compress=False``.
  Named ``controller-<UTC timestamp>.db.gz`` (or ``.db``).
- PostgreSQL (``database`` a ``postgresql://`` URL): ``pg_dump --format=custom`` (already
  compressed), checked by ``pg_restore --list``. Named ``controller-<UTC timestamp>.dump``.

`prune(out_dir, keep)` keeps the newest ``keep`` backups and deletes the older ones; it
touches only files named as above.

`restore(database, backup_file, force=False)` puts a backup back, into an empty database
only (``force`` replaces what is there), and never while another process has the
database open (SQLite: a process holding the WAL's shared-memory lock; PostgreSQL:
another session on the database). The backup is checked first (SQLite: integrity and
schema version; both: a backup of a schema newer than this build is refused), so a bad
file changes nothing. SQLite: the checked copy is renamed into place; PostgreSQL:
``pg_restore --no-owner --exit-on-error --single-transaction``. Then the store is opened,
which migrates an older schema up.

Every refusal is a `BackupError` whose message names the file, directory or server and
the reason.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import logging
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from controller.errors import ControllerError
from controller.store.dialect import is_postgres, redact

logger = logging.getLogger(__name__)

NAME = re.compile(r"^controller-(\d{8}T\d{6}Z)\.(db|db\.gz|dump)$")
TIMESTAMP = "%Y%m%dT%H%M%SZ"
# Tables that hold rows in a database nobody has used yet (written by the migrations).
SEEDED_TABLES = frozenset({"schema_version", "notify_policy"})
PG_TIMEOUT_S = 10  # connecting to PostgreSQL (PGCONNECT_TIMEOUT)


class BackupError(ControllerError, RuntimeError):
    """A backup or a restore refused or failed; the message says what and why."""


@dataclass(frozen=True)
class BackupFile:
    path: Path
    size_bytes: int
    seconds: float


@dataclass(frozen=True)
class Restored:
    database: str
    schema_version: int  # of the backup, before the store migrated it
    migrated_to: int
    seconds: float


def backup_name(now: datetime, suffix: str) -> str:
    return f"controller-{now.astimezone(UTC).strftime(TIMESTAMP)}.{suffix}"


# ---------------------------------------------------------------------------- backup
def make_backup(database: str | os.PathLike, out_dir: Path, *, compress: bool = True,
                now: datetime | None = None) -> BackupFile:
    """Write one backup of ``database`` (a SQLite path or a PostgreSQL URL) into
    ``out_dir``; raise `BackupError` if it cannot."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    out_dir = Path(out_dir)
    _writable_dir(out_dir)
    if is_postgres(database):
        final = out_dir / backup_name(now, "dump")
    else:
        final = out_dir / backup_name(now, "db.gz" if compress else "db")
    if final.exists():
        raise BackupError(f"{final} exists already (one backup per second at most)")
    tmp = out_dir / f".{final.name}.tmp"
    try:
        if is_postgres(database):
            _pg_dump(str(database), tmp)
        else:
            _sqlite_copy(Path(database), tmp, compress=compress)
        _fsync_file(tmp)
        os.rename(tmp, final)
        _fsync_dir(out_dir)
    finally:
        for leftover in (tmp, Path(f"{tmp}-journal")):
            leftover.unlink(missing_ok=True)
    size = final.stat().st_size
    logger.info("backup written: %s (%d bytes)", final, size)
    return BackupFile(final, size, time.monotonic() - started)


def _writable_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"backup directory {out_dir}: cannot create it: "
                          f"{exc.strerror or exc}") from None
    if not out_dir.is_dir():
        raise BackupError(f"backup directory {out_dir}: not a directory")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise BackupError(f"backup directory {out_dir}: not writable by this user "
                          f"(uid {os.getuid()})")


def _sqlite_copy(db_path: Path, tmp: Path, *, compress: bool) -> None:
    if not db_path.is_file():
        raise BackupError(f"database {db_path}: no such file")
    plain = tmp.with_name(tmp.name + ".db") if compress else tmp
    try:
        try:
            # Read-write (it only reads): a read-only connection cannot open a WAL database
            # whose -shm file is missing, i.e. one nobody has open.
            source = sqlite3.connect(db_path, timeout=30.0)
        except sqlite3.Error as exc:
            raise BackupError(f"database {db_path}: cannot open it: {exc}") from None
        try:
            dest = sqlite3.connect(plain)
            try:
                source.execute("PRAGMA busy_timeout = 30000")
                # All pages in one step: a write by the controller in between restarts the
                # copy of a step-wise backup; one step holds a read transaction instead and
                # copies one consistent snapshot (WAL: the writer is not held up).
                source.backup(dest)
                dest.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
                problems = [row[0] for row in dest.execute("PRAGMA integrity_check")]
            finally:
                dest.close()
        except sqlite3.Error as exc:
            raise BackupError(f"database {db_path}: backup failed: {exc}") from None
        finally:
            source.close()
        if problems != ["ok"]:
            raise BackupError(f"database {db_path}: the copy fails its integrity check: "
                              + "; ".join(problems[:5]))
        if compress:
            with plain.open("rb") as src, gzip.open(tmp, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except OSError as exc:
        raise BackupError(f"backup of {db_path}: {exc.strerror or exc}: "
                          f"{exc.filename or tmp}") from None
    finally:
        if compress:
            plain.unlink(missing_ok=True)
            Path(f"{plain}-journal").unlink(missing_ok=True)


# -------------------------------------------------------------------------- retention
def list_backups(out_dir: Path) -> list[Path]:
    """This directory's backups (our names only), oldest first."""
    try:
        names = [p for p in Path(out_dir).iterdir() if NAME.match(p.name) and p.is_file()]
    except FileNotFoundError:
        return []
    return sorted(names, key=lambda p: (NAME.match(p.name).group(1), p.name))


def prune(out_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups in ``out_dir``, and temporary files of
    backups cut short more than a day ago; return what was deleted."""
    if keep < 1:
        raise BackupError(f"keep must be at least 1, not {keep}")
    backups = list_backups(out_dir)
    old = backups[:-keep] if len(backups) > keep else []
    day_ago = time.time() - 86_400
    with contextlib.suppress(FileNotFoundError):
        old += [p for p in Path(out_dir).iterdir() if p.name.startswith(".controller-")
                and ".tmp" in p.name and p.is_file() and p.stat().st_mtime < day_ago]
    for path in old:
        path.unlink(missing_ok=True)
        logger.info("old backup deleted: %s", path)
    if old:
        _fsync_dir(Path(out_dir))
    return old


# ---------------------------------------------------------------------------- restore
def restore(database: str | os.PathLike, backup: Path, *, force: bool = False) -> Restored:
    """Put ``backup`` back into ``database``; raise `BackupError` (nothing changed) if it
    is not a sound backup of a schema this build knows, or the target is in use or not
    empty (unless ``force``)."""
    from controller.store import Store

    started = time.monotonic()
    backup = Path(backup)
    if not backup.is_file():
        raise BackupError(f"backup {backup}: no such file")
    if is_postgres(database):
        version = _pg_restore(str(database), backup, force=force)
    else:
        version = _sqlite_restore(Path(database), backup, force=force)
    try:
        with Store.open(database) as store:
            migrated_to = store.schema_version
    except ControllerError as exc:
        raise BackupError(f"restored, but the store does not open: {exc}") from None
    logger.info("restored %s into %s (schema %d, now %d)", backup, redact(str(database)),
                version, migrated_to)
    return Restored(redact(str(database)), version, migrated_to, time.monotonic() - started)


def _check_version(backup: Path, version: int | None) -> int:
    from controller.store import MIGRATIONS

    if version is None:
        raise BackupError(f"backup {backup}: not a controller database (no schema_version)")
    if version > len(MIGRATIONS):
        raise BackupError(f"backup {backup}: schema version {version} is newer than this "
                          f"build ({len(MIGRATIONS)}); restore it with a newer controller")
    return version


def _sqlite_restore(db_path: Path, backup: Path, *, force: bool) -> int:
    directory = db_path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{db_path.name}.restore-", dir=directory)
    except OSError as exc:
        raise BackupError(f"database directory {directory}: {exc.strerror or exc}") from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            _unpack(backup, out)
        version = _check_version(backup, _sqlite_checked_version(tmp, backup))
        holder = sqlite_open_by(db_path)
        if holder is not None:
            raise BackupError(f"database {db_path} is open in process {holder} (is the "
                              "controller running? stop it first: systemctl stop "
                              "smartcity-controller)")
        if not force:
            tables = _sqlite_tables_with_rows(db_path)
            if tables:
                raise BackupError(f"database {db_path} is not empty (rows in "
                                  f"{', '.join(tables[:5])}); restore into an empty one, "
                                  "or pass --force to replace it")
        _fsync_file(tmp)
        # A WAL left beside the old file would be replayed onto the new one: away first.
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        os.rename(tmp, db_path)
        _fsync_dir(directory)
        return version
    finally:
        tmp.unlink(missing_ok=True)


def _unpack(backup: Path, out) -> None:
    """Copy ``backup`` (gzip or plain SQLite) into the open file ``out``."""
    with backup.open("rb") as f:
        magic = f.read(2)
    try:
        if magic == b"\x1f\x8b":
            with gzip.open(backup, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
        else:
            with backup.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BackupError(f"backup {backup}: cannot be read: {exc}") from None


def _sqlite_checked_version(copy: Path, backup: Path) -> int | None:
    try:
        conn = sqlite3.connect(copy)  # our own temporary copy
        try:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise BackupError(f"backup {backup} fails its integrity check: "
                                  + "; ".join(problems[:5]))
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                "name = 'schema_version'").fetchone():
                return None
            return conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"backup {backup} is not a sound SQLite database: {exc}") from None


def _sqlite_tables_with_rows(db_path: Path) -> list[str]:
    if not db_path.exists() or db_path.stat().st_size == 0:
        return []
    try:
        conn = sqlite3.connect(db_path)
        try:
            names = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
            return [n for n in names if n not in SEEDED_TABLES and conn.execute(
                f'SELECT 1 FROM "{n}" LIMIT 1').fetchone()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"database {db_path} cannot be read ({exc}); pass --force to "
                          "replace it") from None


# SQLite's unix VFS: every connection to a WAL database holds a shared POSIX lock on this
# byte of the -shm file while it has the database open (the "DMS" lock of os_unix.c).
_SHM_DMS_BYTE = 128


def sqlite_open_by(db_path: Path) -> int | None:
    """The id of another process that has the WAL database ``db_path`` open, or None.

    Asks the kernel (F_GETLK) who holds SQLite's shared-memory lock; takes no lock."""
    shm = f"{db_path}-shm"
    try:
        fd = os.open(shm, os.O_RDONLY)
    except FileNotFoundError:
        return None  # no connection has it open (the last one removes the file)
    except OSError as exc:
        raise BackupError(f"cannot tell whether another process has {db_path} open: "
                          f"{shm}: {exc.strerror or exc}") from None
    try:
        # struct flock on Linux (x86_64, aarch64): short type, short whence, off_t start,
        # off_t len, pid_t pid.
        query = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, _SHM_DMS_BYTE, 1, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        kind, _, _, _, pid = struct.unpack("hhqqi4x", answer)
        return None if kind == fcntl.F_UNLCK else pid
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- PostgreSQL
def _pg_args(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and an environment that carries the password
    (PGPASSWORD), so it never shows in the process list."""
    parts = urlsplit(url)
    env = dict(os.environ, PGCONNECT_TIMEOUT=str(PG_TIMEOUT_S))
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        host = parts.netloc.rpartition("@")
        user = host[0].partition(":")[0]
        url = urlunsplit(parts._replace(netloc=f"{user}@{host[2]}"))
    return url, env


def _run(argv: list[str], env: dict[str, str], what: str, *,
         text: bool = True) -> subprocess.CompletedProcess:
    program = shutil.which(argv[0])
    if program is None:
        raise BackupError(f"{argv[0]} is not installed (Debian: apt install "
                          "postgresql-client)")
    try:
        result = subprocess.run([program, *argv[1:]], env=env, capture_output=True,
                                text=text, timeout=24 * 3600, check=False)
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what}: {argv[0]} did not finish within a day") from None
    if result.returncode != 0:
        err = result.stderr if text else result.stderr.decode(errors="replace")
        lines = [line.strip() for line in err.splitlines() if line.strip()]
        raise BackupError(f"{what}: {argv[0]} failed: " + (" / ".join(lines[-3:])
                                                          or f"exit {result.returncode}"))
    return result


def _pg_dump(url: str, tmp: Path) -> None:
    plain, env = _pg_args(url)
    _run(["pg_dump", "--format=custom", "--no-password", f"--file={tmp}",
          f"--dbname={plain}"], env, f"backup of {redact(url)}")
    _run(["pg_restore", "--list", str(tmp)], env, f"check of the dump {tmp}")


def _pg_dump_version(backup: Path, env: dict[str, str]) -> int | None:
    _run(["pg_restore", "--list", str(backup)], env,
         f"backup {backup} is not a pg_dump archive")
    result = _run(["pg_restore", "--data-only", "--table=schema_version", "--file=-",
                   str(backup)], env, f"backup {backup}")
    versions: list[int] = []
    inside = False
    for line in result.stdout.splitlines():
        if line.startswith("COPY ") and "schema_version" in line:
            inside = True
        elif inside and line == "\\.":
            inside = False
        elif inside and line:
            with contextlib.suppress(ValueError):
                versions.append(int(line.split("\t", 1)[0]))
    return max(versions) if versions else None


@contextlib.contextmanager
def _pg_connect(url: str) -> Iterator:
    try:
        import psycopg
    except ImportError:
        raise BackupError("psycopg is not installed (the [postgres] extra)") from None
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=PG_TIMEOUT_S)
    except psycopg.Error as exc:
        raise BackupError(f"database {redact(url)}: cannot connect: "
                          f"{str(exc).strip().splitlines()[-1]}") from None
    try:
        yield conn
    finally:
        conn.close()


def _pg_restore(url: str, backup: Path, *, force: bool) -> int:
    plain, env = _pg_args(url)
    version = _check_version(backup, _pg_dump_version(backup, env))
    with _pg_connect(url) as conn:
        others = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()").fetchone()[0]
        if others:
            raise BackupError(f"database {redact(url)} has {others} other session(s) (is the "
                              "controller running? stop it first: systemctl stop "
                              "smartcity-controller)")
        tables = [r[0] for r in conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
            "AND table_type = 'BASE TABLE' ORDER BY 1")]
        filled = [t for t in tables if t.rpartition(".")[2] not in SEEDED_TABLES
                  and conn.execute(f'SELECT 1 FROM {_quote_qualified(t)} LIMIT 1').fetchone()]
    if filled and not force:
        raise BackupError(f"database {redact(url)} is not empty (rows in "
                          f"{', '.join(filled[:5])}); restore into an empty one, or pass "
                          "--force to replace it")
    argv = ["pg_restore", "--no-owner", "--exit-on-error", "--single-transaction",
            "--no-password", f"--dbname={plain}"]
    if tables:  # --force, or only the tables of an unused schema: replace them
        argv += ["--clean", "--if-exists"]
    _run([*argv, str(backup)], env, f"restore of {backup} into {redact(url)}")
    return version


def _quote_qualified(name: str) -> str:
    schema, _, table = name.partition(".")
    return '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'


# ---------------------------------------------------------------------------- files
def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:  # pragma: no cover - a directory we just wrote into
        if exc.errno != errno.EACCES:
            raise
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
