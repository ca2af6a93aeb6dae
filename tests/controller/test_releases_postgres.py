"""``POSTGRES_DDL_10``, the PostgreSQL twin of migration 10, on a real PostgreSQL: it
applies after the tables it references, and the store's rollout statements run on it
as written (``?`` placeholders as ``%s``)."""

from __future__ import annotations

import pytest

from controller.store.releases import POSTGRES_DDL_10

psycopg = pytest.importorskip("psycopg")

PREREQUISITES = """
CREATE TABLE opds (code TEXT PRIMARY KEY);
CREATE TABLE devices (device_id TEXT PRIMARY KEY, opd TEXT NOT NULL REFERENCES opds(code));
CREATE TABLE device_state (device_id TEXT PRIMARY KEY, fw TEXT);
CREATE TABLE commands (id TEXT PRIMARY KEY, status TEXT, reply_code TEXT,
                       reply_params TEXT, detail TEXT);
"""


def test_releases_postgres_ddl_applies_and_rollout_queries_run(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(PREREQUISITES)
        conn.execute(POSTGRES_DDL_10)
        conn.execute("INSERT INTO opds VALUES ('dlh')")
        conn.execute("INSERT INTO devices VALUES ('taman-01', 'dlh')")
        conn.execute("INSERT INTO releases VALUES ('0.2.0', %s, 31000000, '[\"aarch64\"]', "
                     "'2026-12-01T00:00:00Z', %s, '2026-12-01T00:00:00Z', 'admin')",
                     ["a" * 64, "0" * 16])
        rollout_id = conn.execute(
            "INSERT INTO rollouts (version, target, canary, stage_percents, "
            "max_failure_share, stage_timeout_s, stages, stage, state, created_at, "
            "created_by, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, 0, 'running', "
            "%s, %s, %s) RETURNING id",
            ["0.2.0", '{"opd":"dlh"}', 1, "[100]", 0.2, 86400.0, 1, "t", "admin", "t"]
        ).fetchone()[0]
        conn.execute("INSERT INTO rollout_units (rollout_id, device_id, opd, stage, state, "
                     "updated_at) VALUES (%s, 'taman-01', 'dlh', 0, 'waiting', 't')",
                     [rollout_id])
        row = conn.execute(
            "SELECT u.device_id, s.fw AS running, c.status FROM rollout_units u "
            "LEFT JOIN device_state s ON s.device_id = u.device_id "
            "LEFT JOIN commands c ON c.id = u.command_id WHERE u.rollout_id = %s",
            [rollout_id]).fetchone()
        assert row == ("taman-01", None, None)
        ended = conn.execute(
            "SELECT DISTINCT u.rollout_id FROM rollout_units u JOIN rollouts r "
            "ON r.id = u.rollout_id WHERE r.state <> 'running' "
            "AND u.state IN ('offered', 'accepted') ORDER BY u.rollout_id").fetchall()
        assert ended == []
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE rollout_units SET state = 'lost'")
