"""Backups that restore (controller.backup and the ``backup``/``restore`` commands).

A controller database with everything in it (devices, commands in every state, telemetry,
events, roll-ups, alarms, audit, users and tokens) is backed up while a writer keeps
inserting, restored into an empty database, and read back through the store's own reads.
Bad cases: a corrupt or foreign backup, a newer schema, a non-empty or open target, an
unwritable directory; each refused with the reason, the target unchanged.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from controller_support import T0, seed

from controller import alarms
from controller.backup import (
    BackupError,
    list_backups,
    make_backup,
    prune,
    restore,
    sqlite_open_by,
)
from controller.cli import main
from controller.store import MIGRATIONS, Inbound, Store
from protocol.models import Command, CommandReply, Event, Status, Telemetry
from protocol.topics import Channel

REPO = Path(__file__).resolve().parents[2]
DEVICES = ("taman-01", "tambak-01")


def _commit(store: Store, opd: str, device: str, channel: Channel, message, at) -> None:
    result = store.commit_batch([Inbound(opd, device, channel, message, at)])
    assert not result.rejected, result.rejected


def fill(store: Store) -> None:
    """Every kind of row the controller keeps."""
    seed(store)  # two devices, users and tokens of every role, one revoked
    day_ago = T0 - timedelta(days=20)
    for seq in range(1, 41):  # 20 days old: rolled up below
        _commit(store, "dlh", "taman-01", Channel.TELEMETRY,
                Telemetry(seq=seq, ts=day_ago + timedelta(minutes=seq),
                          readings={"moisture_pct.zone1": 20.0 + seq}, outputs={}), day_ago)
    for seq in range(41, 61):
        _commit(store, "dlh", "taman-01", Channel.TELEMETRY,
                Telemetry(seq=seq, ts=T0 + timedelta(minutes=seq),
                          readings={"moisture_pct.zone1": 30.0}, outputs={"zone1": False}),
                T0)
    _commit(store, "dlh", "taman-01", Channel.STATUS,
            Status(online=True, fw="1.2.0", ts=T0, clock_synced=True, app="irrigation",
                   outputs={"zone1": False}), T0)
    _commit(store, "dlh", "taman-01", Channel.EVENT,
            Event(seq=61, ts=T0, type="run_started", details={"zone": "zone1"}), T0)
    _commit(store, "dlh", "taman-01", Channel.EVENT,
            Event(seq=62, ts=T0, type="alarm",
                  details={"code": "leak", "message": "12 L/min", "flow_lpm": 12.0}), T0)
    _commit(store, "dp3", "tambak-01", Channel.EVENT,
            Event(seq=1, ts=T0, type="alarm",
                  details={"code": "hopper_low", "message": "hopper low"}), T0)
    alarm = alarms.list_alarms(store, state="all", device_id="tambak-01")[0]
    alarms.acknowledge(store, alarm["id"], user="admin", actor="token:1", note="on my way",
                       now=T0)
    assert store.rollup_and_prune(retention_days=10, now=T0) == 40

    def command(cid: str, action: str = "stop_all", **params) -> None:
        store.create_command("taman-01", Command(
            id=cid, issued_at=T0, expires_at=T0 + timedelta(minutes=5), action=action,
            params=params), actor="op", now=T0)

    command("c-expired")
    assert store.expire_commands(now=T0 + timedelta(minutes=6)) == ["c-expired"]
    command("c-pending")
    command("c-sent")
    store.mark_command_sent("c-sent", now=T0)
    for cid, replies in (("c-done", ["accepted", "done"]), ("c-rejected", ["rejected"])):
        command(cid, "run_zone", zone="zone1", duration_s=60)
        store.mark_command_sent(cid, now=T0)
        for status in replies:
            _commit(store, "dlh", "taman-01", Channel.CMD_REPLY,
                    CommandReply(id=cid, status=status, ts=T0), T0)


def snapshot(store: Store) -> dict:
    """What the store says it holds, read the way the API reads it."""
    per_device = {d: {"device": store.get_device(d), "commands": store.list_commands(d),
                      "telemetry": store.telemetry(d), "events": store.events(d),
                      "daily": store.telemetry_daily(d), "acked": store.acked_seq(d)}
                  for d in DEVICES}
    return {"devices": store.list_devices(), "per_device": per_device,
            "alarms": alarms.list_alarms(store, state="all", limit=1000),
            "audit": store.list_audit(limit=10_000), "users": store.list_users(now=T0),
            "tokens": store.list_tokens(), "opds": store.list_opds(),
            "schema": store.schema_version}


@pytest.fixture(params=["sqlite", "postgres"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def new_db(kind, tmp_path, request):
    """Makes a new empty database of this test's kind: a SQLite path (no file yet) or the
    URL of a new PostgreSQL database (no tables)."""
    def make(name: str) -> str:
        if kind == "sqlite":
            return str(tmp_path / name / "controller.db")
        from tests.support.postgres import create_database, external_url

        server = request.getfixturevalue("postgres_server")
        return create_database(external_url() or server.url())
    return make


def _filled(target: str) -> str:
    with Store.open(target) as store:
        fill(store)
    return target


@pytest.fixture
def filled(new_db) -> str:
    """A controller database holding every kind of row (SQLite or PostgreSQL)."""
    return _filled(new_db("live"))


@pytest.fixture
def sqlite_filled(tmp_path) -> Path:
    return Path(_filled(str(tmp_path / "live" / "controller.db")))


def test_backup_snapshot_holds_every_kind_of_row(filled):
    """The fixture holds every kind of row (else the comparisons below prove little)."""
    with Store.open(filled) as store:
        snap = snapshot(store)
    park = snap["per_device"]["taman-01"]
    assert {c["status"] for c in park["commands"]} == {"pending", "sent", "expired", "done",
                                                      "rejected"}
    assert len(park["telemetry"]) == 20 and park["daily"] and len(park["events"]) >= 2
    assert {a["code"] for a in snap["alarms"]} == {"leak", "hopper_low"}
    assert {a["state"] for a in snap["alarms"]} == {"open", "acknowledged"}
    assert len(snap["users"]) >= 4 and len(snap["tokens"]) >= 5 and len(snap["audit"]) > 5


def test_backup_restores_everything_into_an_empty_database(kind, filled, new_db, tmp_path):
    with Store.open(filled) as store:
        before = snapshot(store)
    made = make_backup(filled, tmp_path / "backups")
    assert made.path.name.endswith(".db.gz" if kind == "sqlite" else ".dump")
    magic = b"\x1f\x8b" if kind == "sqlite" else b"PGDMP"  # gzip; pg_dump's custom format
    assert made.path.read_bytes()[:len(magic)] == magic
    assert made.size_bytes == made.path.stat().st_size > 0
    assert list_backups(tmp_path / "backups") == [made.path]
    assert not [p for p in made.path.parent.iterdir() if p.name.startswith(".")]

    target = new_db("new")
    done = restore(target, made.path)
    assert (done.schema_version, done.migrated_to) == (len(MIGRATIONS), len(MIGRATIONS))
    with Store.open(target) as store:
        assert snapshot(store) == before
        # and it is a working database: the next message of a unit goes on from its seq
        _commit(store, "dlh", "taman-01", Channel.TELEMETRY,
                Telemetry(seq=63, ts=T0, readings={"x": 1.0}, outputs={}), T0)
        assert store.acked_seq("taman-01") == 63


def test_backup_while_a_writer_inserts_is_consistent(filled, new_db, tmp_path):
    """Rows a writer commits one by one while the backup runs: the copy holds a prefix of
    them (seq 1..n, none missing) and the ack state that goes with exactly that prefix."""
    with Store.open(filled) as store:
        store.add_device("busy-01", "dlh", kind="irrigation", name="busy",
                         mqtt_password_hash="x", actor="test")
        # some bulk, so that the copy takes a while
        store.commit_batch([Inbound("dlh", "busy-01", Channel.TELEMETRY,
                                    Telemetry(seq=s, ts=T0, readings={f"r{i}": i + 0.5 for i in range(40)},
                                              outputs={}), T0) for s in range(1, 5001)])
    stop = threading.Event()
    written = [5000]

    def writer() -> None:
        with Store.open(filled) as store:
            while not stop.is_set():
                seq = written[0] + 1
                _commit(store, "dlh", "busy-01", Channel.TELEMETRY,
                        Telemetry(seq=seq, ts=T0, readings={"n": float(seq)}, outputs={}), T0)
                written[0] = seq

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        # Until one backup ran with the writer committing during it (nearly always the first).
        for attempt in range(20):
            start = written[0]
            made = make_backup(filled, tmp_path / "backups",
                               now=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=attempt))
            if written[0] > start + 1:
                break
    finally:
        stop.set()
        thread.join(timeout=30)
    assert written[0] > start + 1, "the writer never committed during a backup"

    target = new_db("restored")
    restore(target, made.path)
    with Store.open(target) as store:
        seqs = [r["seq"] for r in store.telemetry("busy-01", limit=1_000_000)]
        assert seqs == list(range(1, len(seqs) + 1))
        assert start <= len(seqs) <= written[0]
        assert store.acked_seq("busy-01") == len(seqs)


def test_backup_refuses_a_corrupt_file_and_changes_nothing(sqlite_filled, tmp_path):
    filled = sqlite_filled
    made = make_backup(filled, tmp_path / "b", compress=False)
    target = tmp_path / "t" / "controller.db"
    target.parent.mkdir()
    shutil.copy(made.path, target)  # a database there already (restored with --force)
    original = target.read_bytes()

    broken = tmp_path / "controller-20260101T000000Z.db"
    data = bytearray(made.path.read_bytes())
    page = 4096
    data[3 * page:3 * page + 200] = b"\xff" * 200  # garbage in a b-tree page
    broken.write_bytes(bytes(data))
    truncated = tmp_path / "truncated.db.gz"
    truncated.write_bytes(gzip.compress(made.path.read_bytes())[:5000])
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("hello, not a database\n" * 100)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()

    for bad, reason in ((broken, "integrity|not a sound"), (truncated, "cannot be read"),
                        (not_sqlite, "not a sound SQLite database"),
                        (foreign, "not a controller database")):
        with pytest.raises(BackupError, match=reason):
            restore(target, bad, force=True)
        assert target.read_bytes() == original
        assert sorted(p.name for p in target.parent.iterdir()) == ["controller.db"]


def test_backup_refuses_a_newer_schema(sqlite_filled, tmp_path):
    filled = sqlite_filled
    newer = tmp_path / "newer.db"
    shutil.copy(filled, newer)
    with sqlite3.connect(newer) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 'later')", (len(MIGRATIONS) + 1,))
    conn.close()
    target = tmp_path / "t.db"
    with pytest.raises(BackupError, match="newer than this build"):
        restore(target, newer)
    assert not target.exists()


def test_backup_restore_of_an_older_schema_migrates_it(tmp_path):
    old = tmp_path / "old.db"
    with Store.open(old, migrate=False) as store:
        with store._lock:
            store.db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                             "applied_at TEXT NOT NULL)")
            for version in (1, 2, 3):
                MIGRATIONS[version - 1](store.db)
                store.db.execute("INSERT INTO schema_version VALUES (?, 'then')", (version,))
            store.db.conn.commit()
    made = make_backup(old, tmp_path / "b")
    done = restore(tmp_path / "t.db", made.path)
    assert (done.schema_version, done.migrated_to) == (3, len(MIGRATIONS))


def test_backup_refuses_a_database_that_is_not_empty(filled, new_db, tmp_path):
    made = make_backup(filled, tmp_path / "b")
    target = new_db("t")
    with Store.open(target):  # a database the controller only created (schema, no data)
        pass
    restore(target, made.path)
    with Store.open(target) as store:
        store.add_device("new-01", "dlh", kind="irrigation", name="", mqtt_password_hash="x",
                         actor="test")
        before = snapshot(store)
    with pytest.raises(BackupError, match=r"not empty \(rows in (public\.)?alarms, .*--force"):
        restore(target, made.path)
    with Store.open(target) as store:
        assert snapshot(store) == before
    restore(target, made.path, force=True)
    with Store.open(target) as store:
        assert store.get_device("new-01") is None and store.get_device("taman-01")


def test_backup_restore_refuses_while_another_process_has_the_database_open(sqlite_filled,
                                                                            tmp_path):
    filled = sqlite_filled
    made = make_backup(filled, tmp_path / "b")
    target = tmp_path / "t.db"
    restore(target, made.path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
         "c.execute('SELECT count(*) FROM devices').fetchone(); print('open', flush=True); "
         "sys.stdin.read()", str(target)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        assert sqlite_open_by(target) == holder.pid
        with pytest.raises(BackupError, match=rf"open in process {holder.pid}.*controller"):
            restore(target, made.path, force=True)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert sqlite_open_by(target) is None
    restore(target, made.path, force=True)


def test_backup_prune_keeps_the_newest_and_only_ours(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    names = [f"controller-202601{d:02d}T020000Z.{ext}"
             for d, ext in zip(range(1, 8), ["db", "db.gz", "dump"] * 3, strict=False)]
    for name in names:
        (out / name).write_bytes(b"x")
    others = ["controller.db", "controller-latest.db", "notes.txt",
              "controller-20250101T000000Z.db.bak"]
    for name in others:
        (out / name).write_bytes(b"y")
    stale, fresh = out / ".controller-20260101T020000Z.db.gz.tmp", out / ".controller-x.tmp"
    for temp in (stale, fresh):
        temp.write_bytes(b"cut short")
    two_days_ago = time.time() - 2 * 86_400
    os.utime(stale, (two_days_ago, two_days_ago))
    deleted = prune(out, 3)
    assert [p.name for p in deleted] == [*names[:4], stale.name]
    assert sorted(p.name for p in out.iterdir()) == sorted(names[4:] + others + [fresh.name])
    assert prune(out, 3) == []


def test_backup_refuses_an_unwritable_directory_and_a_missing_database(sqlite_filled, tmp_path):
    filled = sqlite_filled
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BackupError, match=r"backup directory .*file/sub: cannot create"):
        make_backup(filled, blocker / "sub")
    with pytest.raises(BackupError, match=r"database .*nothing.db: no such file"):
        make_backup(tmp_path / "nothing.db", tmp_path / "b")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(BackupError, match="not writable"):
            make_backup(filled, locked)


# ------------------------------------------------------------------------- the commands
def _config(tmp_path: Path, db: str | Path, backups: Path, keep: int = 2) -> Path:
    config = tmp_path / "controller.toml"
    where = f'url = "{db}"' if str(db).startswith("postgresql://") else f'path = "{db}"'
    config.write_text(f'[database]\n{where}\n[mqtt]\nenabled = false\n'
                      f'[backup]\ndir = "{backups}"\nkeep = {keep}\n')
    return config


def test_backup_commands_write_prune_and_restore(kind, filled, new_db, tmp_path, capsys):
    backups = tmp_path / "backups"
    for day in (1, 2):  # older backups of ours, to be pruned
        (backups / f"controller-2026010{day}T020000Z.db.gz").parent.mkdir(exist_ok=True)
        (backups / f"controller-2026010{day}T020000Z.db.gz").write_bytes(b"old")
    config = _config(tmp_path, filled, backups)
    assert main(["backup", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    made = list_backups(backups)
    assert len(made) == 2 and made[0].name == "controller-20260102T020000Z.db.gz"
    assert made[1].suffix == (".gz" if kind == "sqlite" else ".dump")
    assert f"wrote {made[1]}: " in out and " in " in out
    assert "deleted " + str(backups / "controller-20260101T020000Z.db.gz") in out

    with Store.open(filled) as store:
        before = snapshot(store)
    target = new_db("fresh")
    config = _config(tmp_path, target, backups)
    assert main(["restore", "--config", str(config), str(made[1])]) == 0
    assert "restored" in capsys.readouterr().out
    with Store.open(target) as store:
        assert snapshot(store) == before
    assert main(["restore", "--config", str(config), str(made[1])]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert main(["restore", "--config", str(config), str(made[0])]) == 1  # b"old"
    assert ("not a sound SQLite database" if kind == "sqlite" else
            "is not a pg_dump archive") in capsys.readouterr().err


def test_backup_command_exits_non_zero_naming_the_problem(sqlite_filled, tmp_path):
    filled = sqlite_filled
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = _config(tmp_path, filled, blocker / "backups")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "controller.cli", "backup", "--config",
                             str(config)], capture_output=True, text=True, env=env,
                            timeout=60, check=False)
    assert result.returncode == 1
    assert f"error: backup directory {blocker / 'backups'}: cannot create it" in result.stderr
    result = subprocess.run([sys.executable, "-m", "controller.cli", "backup", "--config",
                             str(config), "--keep", "0"], capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    assert result.returncode == 2 and "--keep" in result.stderr


# ------------------------------------------------------------------------- PostgreSQL
@pytest.fixture
def pg_live(pg_url) -> str:
    return _filled(pg_url)


def _tables(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                           "WHERE table_schema = 'public'")]


def test_backup_postgres_refusals_change_nothing(pg_live, postgres_server, tmp_path):
    import psycopg

    from tests.support.postgres import create_database, external_url

    target = create_database(external_url() or postgres_server.url())
    good = make_backup(pg_live, tmp_path / "b", now=datetime(2026, 1, 1, tzinfo=UTC))
    with psycopg.connect(pg_live, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version VALUES (%s, 'later')", (len(MIGRATIONS) + 1,))
    newer = make_backup(pg_live, tmp_path / "b", now=datetime(2026, 1, 2, tzinfo=UTC))
    with pytest.raises(BackupError, match="newer than this build"):
        restore(target, newer.path)
    corrupt = tmp_path / "controller-20260101T000000Z.dump"
    data = bytearray(good.path.read_bytes())
    data[len(data) // 2:] = b"\0" * (len(data) - len(data) // 2)
    corrupt.write_bytes(bytes(data))
    not_a_dump = tmp_path / "notes.dump"
    not_a_dump.write_text("hello\n")
    for bad, reason in ((corrupt, "pg_restore failed"), (not_a_dump, "not a pg_dump archive"),
                        (tmp_path / "nothing.dump", "no such file")):
        with pytest.raises(BackupError, match=reason):
            restore(target, bad, force=True)
        assert _tables(target) == []
    # another session on the target: the controller may be running
    with psycopg.connect(target):
        with pytest.raises(BackupError, match="1 other session.*controller running"):
            restore(target, good.path, force=True)
    assert _tables(target) == []
    restore(target, good.path)
    with Store.open(target) as store:
        assert [d["device_id"] for d in store.list_devices()] == list(DEVICES)


def test_backup_postgres_server_down_is_named(tmp_path):
    from tests.support.broker import free_port

    url = f"postgresql://smartcity@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(BackupError, match=rf"backup of {url}: pg_dump failed: .*refused"):
        make_backup(url, tmp_path / "b")
    assert list((tmp_path / "b").iterdir()) == []


def test_backup_restore_of_an_older_backup_then_settle_lost_moves_acks_on(
        kind, filled, new_db, tmp_path, capsys):
    """What a unit sent between the backup and the restore was acknowledged and deleted on
    the unit: the restored controller waits for it until `device settle-lost`."""
    made = make_backup(filled, tmp_path / "b")

    def send(store: Store, seqs) -> int:
        result = store.commit_batch([Inbound("dlh", "taman-01", Channel.TELEMETRY, Telemetry(
            seq=s, ts=T0, readings={"x": float(s)}, outputs={}), T0) for s in seqs])
        return result.acks["taman-01"][1]

    with Store.open(filled) as store:  # after the backup: acknowledged, so the unit deletes them
        assert send(store, range(63, 71)) == 70
    target = new_db("restored")
    restore(target, made.path)
    config = _config(tmp_path, target, tmp_path / "b")
    with Store.open(target) as store:
        assert send(store, [71, 72]) == 62  # the unit's oldest rows: stuck below 63..70
        assert send(store, [73]) == 62
    assert main(["device", "settle-lost", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["taman-01: seq 63..70 taken as lost (8 message(s)); its "
                                "acknowledgement moves on at its next message"]
    with Store.open(target) as store:
        assert send(store, [74]) == 74
        entry = store.list_audit(limit=1)[0]
        assert (entry["action"], entry["target"]) == ("device.seqs_settled", "device:taman-01")
        assert entry["after"] == {"acked_seq": 73, "lost": [63, 70]}
        assert send(store, [65]) == 74  # one that turns up after all is stored all the same
        assert 65 in [r["seq"] for r in store.telemetry("taman-01", limit=1000)]
    assert main(["device", "settle-lost", "--config", str(config)]) == 0
    assert "nothing to settle" in capsys.readouterr().out


def test_backup_restore_refuses_while_the_controller_serves(sqlite_filled, tmp_path, capsys):
    import httpx

    from tests.support.broker import free_port

    made = make_backup(sqlite_filled, tmp_path / "b")
    port = free_port()
    config = tmp_path / "serve.toml"
    config.write_text(f'[database]\npath = "{sqlite_filled}"\n[mqtt]\nenabled = false\n'
                      f"[api]\nport = {port}\n")
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "serve", "--config",
                             str(config)], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=log, stderr=log)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        else:
            pytest.fail("the controller did not answer /healthz within 30 s")
        assert main(["restore", "--config", str(config), "--force", str(made.path)]) == 1
        err = capsys.readouterr().err
        assert f"is open in process {proc.pid} (is the controller running?" in err
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert main(["restore", "--config", str(config), "--force", str(made.path)]) == 0
