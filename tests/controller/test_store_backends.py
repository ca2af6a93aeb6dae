"""The store on SQLite and on PostgreSQL: the same schema, versions in lockstep, a newer
database refused, and a PostgreSQL server killed and restarted under a running store."""

from __future__ import annotations

import pytest
from controller_support import T0, add_device, telemetry
from fastapi.testclient import TestClient

from controller.api.main import create_app
from controller.errors import StoreError
from controller.publisher import MemoryTransport
from controller.settings import parse_settings
from controller.store import MIGRATIONS, Store
from controller.store.dialect import is_postgres, redact, translate
from controller.store.pg_schema import PG_MIGRATIONS


def sqlite_schema(store: Store) -> dict:
    tables = [r[0] for r in store.db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {
        "columns": {t: [r[1] for r in store.db.execute(f"PRAGMA table_info({t})")]
                    for t in tables},
        "indexes": {r[1] for t in tables for r in store.db.execute(f"PRAGMA index_list({t})")
                    if not r[1].startswith("sqlite_autoindex_")},
        "triggers": {r[0] for r in store.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")},
    }


def pg_schema(store: Store) -> dict:
    columns: dict[str, list[str]] = {}
    for table, column in store.db.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"):
        columns.setdefault(table, []).append(column)
    # Primary keys and UNIQUE columns make indexes of their own (``*_pkey``, ``*_key``),
    # as SQLite's ``sqlite_autoindex_*``: only the named ones are compared.
    indexes = {r[0] for r in store.db.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
        if not r[0].endswith(("_pkey", "_key"))}
    triggers = {r[0] for r in store.db.execute(
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
    return {"columns": columns, "indexes": indexes, "triggers": triggers}


def test_the_two_schemas_agree(tmp_path, pg_url):
    """Same tables, same columns in the same order, same named indexes and the audit
    log's triggers: a migration added to one backend and not the other fails here."""
    with Store.open(tmp_path / "c.db") as lite, Store.open(pg_url) as pg:
        a, b = sqlite_schema(lite), pg_schema(pg)
        assert lite.schema_version == pg.schema_version == len(MIGRATIONS)
    assert a["columns"] == b["columns"]
    assert a["indexes"] == b["indexes"]
    assert a["triggers"] <= b["triggers"]  # PostgreSQL also refuses TRUNCATE


def test_postgres_migrations_are_numbered_in_lockstep():
    versions = [v for v, _ in PG_MIGRATIONS]
    assert versions == sorted(set(versions))
    assert versions[-1] == len(MIGRATIONS)


def test_postgres_migrates_once_and_refuses_a_newer_schema(pg_url):
    with Store.open(pg_url) as s:
        assert s.schema_version == len(MIGRATIONS)
    with Store.open(pg_url) as s:  # again: nothing to do
        assert [r[0] for r in s.db.execute("SELECT version FROM schema_version "
                                           "ORDER BY version")] == [v for v, _ in PG_MIGRATIONS]
        s.db.execute("INSERT INTO schema_version VALUES (99, 'x')")
    with pytest.raises(StoreError, match="newer than this build"):
        Store.open(pg_url)


def test_postgres_unreachable_is_a_clear_store_error():
    with pytest.raises(StoreError, match="cannot connect") as info:
        Store.open("postgresql://smartcity:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in str(info.value)


def test_placeholders_are_translated_outside_quotes():
    assert translate("SELECT '?', x::jsonb ->> 'a' FROM t WHERE a = ? AND b LIKE '5%'",
                     named=False) == (
        "SELECT '?', x::jsonb ->> 'a' FROM t WHERE a = %s AND b LIKE '5%%'")
    assert translate("UPDATE t SET a = :now WHERE substr(b, 1, 16) < substr(:now, 1, 16) "
                     "AND c = '12:30'", named=True) == (
        "UPDATE t SET a = %(now)s WHERE substr(b, 1, 16) < substr(%(now)s, 1, 16) "
        "AND c = '12:30'")
    assert is_postgres("postgres://h/db") and not is_postgres("/var/lib/c.db")
    assert redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_a_killed_and_restarted_postgres_leaves_the_store_working(tmp_path):
    """The server dies under a running store (and API): writes and reads fail with a
    store error (the API answers 503), nothing is half-written, and the first write after
    the server is back succeeds on a new connection."""
    from tests.support.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        url = server.create_database()
        settings = parse_settings({"database": {"path": str(tmp_path / "unused.db"),
                                                "url": url},
                                   "mqtt": {"enabled": False}}, environ={})
        with Store.open(settings.database.target) as store:
            from controller_support import make_token

            add_device(store, "taman-01", "dlh")
            token = make_token(store, "admin", "admin")
            assert store.commit_batch([telemetry("taman-01", 1)]).acks["taman-01"][1] == 1
            app = create_app(settings, store=store, mqtt=MemoryTransport())
            with TestClient(app) as client:
                client.headers["Authorization"] = f"Bearer {token}"
                assert client.get("/api/v1/devices/taman-01").status_code == 200

                server.kill()
                with pytest.raises(StoreError):
                    store.commit_batch([telemetry("taman-01", 2), telemetry("taman-01", 3)])
                with pytest.raises(StoreError):
                    store.get_device("taman-01")
                assert client.get("/api/v1/devices/taman-01").status_code == 503
                with pytest.raises(StoreError):
                    store.check_writable()

                server.start()
                result = store.commit_batch([telemetry("taman-01", 2)])
                assert result.acks["taman-01"][1] == 2
                assert client.get("/api/v1/devices/taman-01").json()["seq"]["acked"] == 2
            store.check_writable()
            assert [r["seq"] for r in store.telemetry("taman-01")] == [1, 2]
            row = store.get_device("taman-01")
            assert (row["acked_seq"], row["max_seq"], row["missing_seqs"]) == (2, 2, 0)
    finally:
        server.close()


def test_postgres_writes_wait_for_each_other(pg_url):
    """Two stores on one database: a write transaction holds the advisory lock, so the
    other store's write starts only after it commits (it sees the first one's rows)."""
    import threading

    with Store.open(pg_url) as one, Store.open(pg_url, migrate=False) as two:
        add_device(one, "taman-01", "dlh")
        started, done = threading.Event(), []

        def second() -> None:
            started.set()
            done.append(two.commit_batch([telemetry("taman-01", 2)]).acks["taman-01"][1])

        with one._write():
            one.db.execute("INSERT INTO seq_pending (device_id, seq) VALUES ('x', 1)")
            thread = threading.Thread(target=second)
            thread.start()
            started.wait(5)
            thread.join(0.5)
            assert thread.is_alive() and not done  # waiting for our lock
        thread.join(10)
        assert done == [0]  # seq 1 missing: acked stays at 0
        assert one.commit_batch([telemetry("taman-01", 1)]).acks["taman-01"][1] == 2


def test_timestamps_keep_their_text_on_postgres(pg_url):
    with Store.open(pg_url) as store:
        add_device(store, "taman-01", "dlh")
        store.commit_batch([telemetry("taman-01", 1)])
        row = store.telemetry("taman-01")[0]
        assert row["ts"].endswith("Z") and row["ts"] >= T0.strftime("%Y-%m-%d")
        assert isinstance(row["seq"], int) and isinstance(row["readings"], dict)


def test_controllers_starting_together_migrate_an_empty_postgres_once(pg_url):
    """Several controllers opening one new database at once: each migration is applied
    once (under the write lock), and every store works."""
    import threading

    stores, errors = [], []

    def open_one() -> None:
        try:
            stores.append(Store.open(pg_url))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [] and len(stores) == 4
        assert [r[0] for r in stores[0].db.execute(
            "SELECT version FROM schema_version ORDER BY version")] == [
            v for v, _ in PG_MIGRATIONS]
        add_device(stores[1], "taman-01", "dlh")
        assert stores[3].get_device("taman-01")["opd"] == "dlh"
    finally:
        for s in stores:
            s.close()


def test_postgres_refuses_nul_characters_as_invalid_and_stores_nothing(pg_url):
    """PostgreSQL text cannot hold U+0000 (SQLite's can): such a value is refused as
    invalid input (422 from the API), not a server error, and the write is undone."""
    from controller.errors import Invalid

    with Store.open(pg_url) as store:
        with pytest.raises(Invalid, match="NUL"):
            store.add_device("taman-01", "dlh", kind="irrigation", name="Taman\x00",
                             mqtt_password_hash="h", actor="test")
        assert store.get_device("taman-01") is None and store.list_opds() == []
        add_device(store, "taman-01", "dlh")  # the connection is fine afterwards


def test_postgres_connection_defaults_yield_to_the_url(pg_url):
    """The controller names itself and sets TCP keepalives, unless the URL says
    otherwise."""
    ask = "SELECT current_setting('application_name')"
    with Store.open(pg_url) as store:
        assert store.db.execute(ask).fetchone()[0] == "smartcity-controller"
    with Store.open(pg_url + "?application_name=ingest-2") as store:
        assert store.db.execute(ask).fetchone()[0] == "ingest-2"


def test_postgres_without_its_driver_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(StoreError, match=r"\[controller,postgres\]"):
        Store.open("postgresql://smartcity@127.0.0.1:1/none")
