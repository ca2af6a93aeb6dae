"""Store: dedupe by (device, seq), acks over drops, status, rejects, retention."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from controller_support import T0, add_device, telemetry

from controller.store import MIGRATIONS, Inbound, Store
from protocol.models import CommandReply, Event, Status, Telemetry
from protocol.topics import Channel


def event(device_id: str, seq: int, type: str, opd: str = "dlh", **details) -> Inbound:
    return Inbound(opd, device_id, Channel.EVENT,
                   Event(seq=seq, ts=T0, type=type, details=details), T0)


def status(device_id: str, online: bool, opd: str = "dlh", config_version=None) -> Inbound:
    return Inbound(opd, device_id, Channel.STATUS,
                   Status(online=online, fw="1.0.0", clock_synced=True, ts=T0,
                          config_version=config_version,
                          outputs={"zone1": True} if online else {}), T0)


@pytest.fixture
def dev(store):
    add_device(store, "taman-01", "dlh")
    return "taman-01"


def test_store_migrates_once_and_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "c.db"
    with Store.open(path) as s:
        assert s.schema_version == len(MIGRATIONS)
    with Store.open(path) as s:  # again: nothing to do
        assert s.schema_version == len(MIGRATIONS)
        s.db.execute("INSERT INTO schema_version VALUES (99, 'x')")
    with pytest.raises(Exception, match="newer than this build"):
        Store.open(path)


def test_store_redelivery_is_a_no_op(store, dev):
    first = store.commit_batch([telemetry(dev, 1), telemetry(dev, 2)])
    again = store.commit_batch([telemetry(dev, 2), telemetry(dev, 1), telemetry(dev, 3)])
    assert first.acks[dev] == ("dlh", 2)
    assert again.acks[dev] == ("dlh", 3)
    assert again.duplicates == 2
    assert [r["seq"] for r in store.telemetry(dev)] == [1, 2, 3]


def test_store_ack_never_passes_an_unannounced_gap(store, dev):
    result = store.commit_batch([telemetry(dev, 1), telemetry(dev, 3)])
    assert result.acks[dev][1] == 1
    assert result.gaps_opened == 1
    row = store.get_device(dev)
    assert (row["acked_seq"], row["max_seq"], row["missing_seqs"]) == (1, 3, 1)
    # The tracker state survives a restart of the store (new connection).
    with Store.open(store.path) as again:
        assert again.commit_batch([telemetry(dev, 2)]).acks[dev][1] == 3


def test_store_announced_drops_move_the_ack(store, dev):
    store.commit_batch([telemetry(dev, 1)])
    dropped = event(dev, 7, "outbox_dropped", seqs=[2], ranges=[{"from": 4, "to": 6}],
                    reason="outbox full")
    result = store.commit_batch([dropped])
    assert result.acks[dev][1] == 2  # 2 announced; 3 is still missing
    assert result.dropped_announced == 4
    result = store.commit_batch([telemetry(dev, 3)])
    assert result.acks[dev][1] == 7
    assert store.get_device(dev)["dropped_total"] == 4
    # The announcement itself redelivered: not counted twice.
    assert store.commit_batch([dropped]).dropped_announced == 0


def test_store_rejects_unknown_device_and_wrong_opd(store, dev):
    result = store.commit_batch([telemetry("ghost", 1), telemetry(dev, 1, opd="dp3"),
                                 status(dev, True, opd="dp3")])
    assert [reason for _, reason, _ in result.rejected] == ["unknown_device", "wrong_opd",
                                                             "wrong_opd"]
    assert store.telemetry(dev) == [] and not store.get_device(dev)["online"]
    assert result.acks == {}


def test_store_status_online_then_last_will(store, dev):
    store.commit_batch([status(dev, True, config_version=3)])
    row = store.get_device(dev)
    assert row["online"] and row["outputs"] == {"zone1": True}
    assert row["reported_config_version"] == 3
    store.commit_batch([status(dev, False)])
    assert not store.get_device(dev)["online"]
    assert store.count_online() == 0


def test_store_command_lifecycle_and_sweeper(store, dev):
    from protocol.models import Command

    cmd = Command(id="c1", issued_at=T0, expires_at=T0 + timedelta(minutes=5),
                  action="run_zone", params={"zone": "zone1", "duration_s": 60})
    assert store.create_command(dev, cmd, actor="op", now=T0)["status"] == "pending"
    assert store.mark_command_sent("c1", now=T0)

    def reply(status, **kw):
        return Inbound("dlh", dev, Channel.CMD_REPLY,
                       CommandReply(id="c1", status=status, ts=T0, **kw), T0)

    store.commit_batch([reply("accepted")])  # an older unit: no code
    assert store.get_command("c1")["status"] == "accepted"
    assert store.get_command("c1")["reply_code"] is None
    store.commit_batch([reply("duplicate", code="duplicate")])
    assert store.get_command("c1")["status"] == "accepted"
    store.commit_batch([reply("done", clamped={"field": "duration_s", "asked": 60,
                                               "allowed": 30}, code="run_completed",
                              params={"zone": "zone1", "duration_s": 30, "litres": 12.5})])
    done = store.get_command("c1")
    assert (done["status"], done["duplicates"], done["clamped"]["allowed"]) == ("done", 1, 30)
    assert [(r["status"], r["code"]) for r in done["replies"]] == [
        ("accepted", None), ("duplicate", "duplicate"), ("done", "run_completed")]
    assert [r["params"] for r in done["replies"]] == [
        None, {}, {"zone": "zone1", "duration_s": 30, "litres": 12.5}]
    assert (done["reply_code"], done["reply_params"]) == (
        "run_completed", {"zone": "zone1", "duration_s": 30, "litres": 12.5})
    store.commit_batch([reply("accepted")])  # late: never goes backwards
    assert store.get_command("c1")["status"] == "done"
    assert store.expire_commands(now=T0 + timedelta(hours=1)) == []

    lost = Command(id="c2", issued_at=T0, expires_at=T0 + timedelta(minutes=5), action="stop_all")
    store.create_command(dev, lost, actor="op", now=T0)
    assert store.expire_commands(now=T0 + timedelta(minutes=4)) == []
    assert store.expire_commands(now=T0 + timedelta(minutes=5)) == ["c2"]
    assert store.get_command("c2")["status"] == "expired"


def test_store_reply_for_unknown_or_foreign_command_is_rejected(store, dev):
    add_device(store, "other-01", "dlh")
    from protocol.models import Command

    store.create_command(dev, Command(id="c1", issued_at=T0, expires_at=T0 + timedelta(1),
                                      action="resume"), actor="op")
    bad = [Inbound("dlh", dev, Channel.CMD_REPLY, CommandReply(id="nope", status="done", ts=T0),
                   T0),
           Inbound("dlh", "other-01", Channel.CMD_REPLY,
                   CommandReply(id="c1", status="done", ts=T0), T0)]
    assert [r for _, r, _ in store.commit_batch(bad).rejected] == ["unknown_command",
                                                                    "wrong_device"]
    assert store.get_command("c1")["status"] == "pending"


def test_store_audit_log_is_append_only(store, dev):
    rows = store.list_audit()
    assert rows[0]["action"] == "device.add" and rows[0]["after"]["device_id"] == dev
    assert "mqtt_password_hash" not in rows[0]["after"]
    refused = sqlite3.DatabaseError
    if store.postgres:
        import psycopg
        refused = psycopg.Error
    with pytest.raises(refused, match="append-only"):
        store.db.conn.execute("UPDATE audit SET actor = 'someone else'")
    with pytest.raises(refused, match="append-only"):
        store.db.conn.execute("DELETE FROM audit")
    if store.postgres:
        with pytest.raises(refused, match="append-only"):
            store.db.conn.execute("TRUNCATE audit")
    else:
        store.db.conn.rollback()
    assert len(store.list_audit()) == len(rows)


def test_store_retention_rolls_up_then_deletes(store, dev):
    old = [Inbound("dlh", dev, Channel.TELEMETRY,
                   Telemetry(seq=i, ts=T0 + timedelta(minutes=i),
                             readings={"moisture_pct.zone1": float(10 * i), "rain": True}),
                   T0) for i in (1, 2, 3)]
    new = Inbound("dlh", dev, Channel.TELEMETRY,
                  Telemetry(seq=4, ts=T0 + timedelta(days=30), readings={"moisture_pct.zone1": 1}),
                  T0)
    store.commit_batch([*old, new])
    deleted = store.rollup_and_prune(retention_days=10, now=T0 + timedelta(days=30))
    assert deleted == 3
    assert [r["seq"] for r in store.telemetry(dev)] == [4]
    daily = store.telemetry_daily(dev)
    assert daily == [{"day": "2025-03-14", "reading": "moisture_pct.zone1", "samples": 3,
                      "min": 10.0, "max": 30.0, "avg": 20.0}]
    # The ack state does not depend on the raw rows.
    assert store.acked_seq(dev) == 4


def test_store_token_hash_only_and_revocation(store, dev):
    from controller.auth import hash_token

    row = store.create_token(name="ana", role="operator", opd="dlh", token_hash=hash_token("t"),
                             actor="admin")
    assert store.principal_for(hash_token("t"))["role"] == "operator"
    assert "t" not in {v for r in store.db.query("SELECT token_hash FROM tokens")
                       for v in r.values()}
    store.revoke_token(row["id"], actor="admin")
    assert store.principal_for(hash_token("t")) is None
    actions = [a["action"] for a in store.list_audit()]
    assert actions[:2] == ["token.revoke", "token.create"]


def test_store_migration_gives_existing_tokens_an_expiry(tmp_path, monkeypatch, caplog):
    """Tokens made before expiry existed keep working for the default lifetime, with a
    warning; revoked ones stay refused."""
    from datetime import timedelta

    import controller.store.schema as store_module
    from controller.auth import DEFAULT_TOKEN_TTL_DAYS, hash_token
    from controller.store import iso, utcnow

    path = tmp_path / "old.db"
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS[:3])  # before token expiry
    with Store.open(path) as old:
        old.db.execute("INSERT INTO users (name, role, created_at) VALUES "
                       "('admin', 'admin', '2025-01-01T00:00:00.000000Z')")
        for n, revoked in ((1, None), (2, "2025-02-01T00:00:00.000000Z")):
            old.db.execute("INSERT INTO tokens (user_id, token_hash, created_at, created_by, "
                           "revoked_at) VALUES (1, ?, '2025-01-01T00:00:00.000000Z', 'cli', ?)",
                           [hash_token(f"t{n}"), revoked])
        old.db.conn.commit()
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS)
    before = iso(utcnow() + timedelta(days=DEFAULT_TOKEN_TTL_DAYS))
    with caplog.at_level("WARNING", logger="controller.store"), Store.open(path) as s:
        live, revoked = s.list_tokens()
        assert before <= live["expires_at"] <= iso(utcnow() + timedelta(days=DEFAULT_TOKEN_TTL_DAYS))
        assert live["last_used_at"] is None
        assert revoked["expires_at"] == revoked["revoked_at"]
        assert s.principal_for(hash_token("t1"))["id"] == live["id"]
        assert s.principal_for(hash_token("t2")) is None
    assert "1 API token(s) made before tokens expired now expire at" in caplog.text

def accepted_commands(store, dev: str, opd: str, ids, action: str, params: dict) -> None:
    """Commands to ``dev`` as far as 'accepted' (sent, and answered so by the unit)."""
    from protocol.models import Command

    for cid in ids:
        cmd = Command(id=cid, issued_at=T0, expires_at=T0 + timedelta(minutes=5),
                      action=action, params=params)
        store.create_command(dev, cmd, actor="op", now=T0)
        store.mark_command_sent(cid, now=T0)
        store.commit_batch([Inbound(opd, dev, Channel.CMD_REPLY,
                                    CommandReply(id=cid, status="accepted", ts=T0), T0)])


def test_store_command_closed_by_run_events_after_a_unit_restart(store, dev):
    """A unit killed mid-run loses the reply it owed; its run_interrupted (dropped) or the
    resumed run's run_finished closes the command, and nothing else's command moves."""
    accepted_commands(store, dev, "dlh", ("c-drop", "c-resume", "c-other"), "run_zone",
                      {"zone": "zone1", "duration_s": 60})
    store.commit_batch([
        event(dev, 1, "run_interrupted", cmd_id="c-drop", action="dropped"),
        event(dev, 2, "run_interrupted", cmd_id="c-resume", action="resumed"),
    ])
    assert store.get_command("c-drop")["status"] == "failed"
    assert "restarted" in store.get_command("c-drop")["detail"]
    assert store.get_command("c-resume")["status"] == "accepted"
    store.commit_batch([event(dev, 3, "run_finished", cmd_id="c-resume", ended="completed")])
    assert store.get_command("c-resume")["status"] == "done"
    # a late run_finished never reopens a final command, and others stay as they were
    store.commit_batch([event(dev, 4, "run_finished", cmd_id="c-drop", ended="completed")])
    assert store.get_command("c-drop")["status"] == "failed"
    assert store.get_command("c-other")["status"] == "accepted"
    store.commit_batch([event(dev, 5, "run_finished", cmd_id="c-other", ended="stopped",
                              stopped_by="c-stop", zone="zone1", duration_s=20.0)])
    other = store.get_command("c-other")
    assert other["status"] == "failed"
    # closed with the code the unit's own reply would have had
    assert (other["reply_code"], other["reply_params"]) == (
        "run_ended", {"zone": "zone1", "duration_s": 20.0, "ended": "stopped"})
    assert store.get_command("c-drop")["reply_code"] == "run_dropped"


def test_store_feed_now_closed_by_feeding_events_after_a_unit_restart(store, tmp_path):
    """A fish feeder restarted mid-feeding cannot send the reply it owed: the feeding's
    own events (dispensed, skipped, cut short) close the command instead."""
    dev = "tambak-01"
    add_device(store, dev, "dp3", kind="fish_feeder")
    accepted_commands(store, dev, "dp3", ("c-fed", "c-jam", "c-skip", "c-cut"), "feed_now",
                      {"feeder": "pakan-nila", "dose_g": 500.0})
    store.commit_batch([
        event(dev, 1, "feed_dispensed", opd="dp3", cmd_id="c-fed", measured_g=499.2,
              fault=None),
        event(dev, 2, "feed_dispensed", opd="dp3", cmd_id="c-jam", measured_g=90.0,
              fault="jam"),
        event(dev, 3, "feeding_skipped", opd="dp3", cmd_id="c-skip", reason="hopper_empty"),
        event(dev, 4, "run_interrupted", opd="dp3", cmd_id="c-cut", action="dropped",
              feeder="pakan-nila", reason="restart"),
    ])
    got = {cid: store.get_command(cid) for cid in ("c-fed", "c-jam", "c-skip", "c-cut")}
    assert {cid: c["status"] for cid, c in got.items()} == {
        "c-fed": "done", "c-jam": "failed", "c-skip": "failed", "c-cut": "failed"}
    assert "499.2" in got["c-fed"]["detail"] and "jam" in got["c-jam"]["detail"]
    assert "hopper_empty" in got["c-skip"]["detail"]
    assert {cid: c["reply_code"] for cid, c in got.items()} == {
        "c-fed": "feeding_done", "c-jam": "feeding_failed", "c-skip": "feeding_skipped",
        "c-cut": "run_dropped"}
    assert got["c-jam"]["reply_params"] == {"dispensed_g": 90.0, "fault": "jam"}
