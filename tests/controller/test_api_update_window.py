"""The maintenance window each unit reports (``Status.update_window``): stored by the
ingest, served by the device list and detail, the unit versions, a rollout's units and
the dashboard's unit; null when the unit reports none."""

from __future__ import annotations

from controller_support import T0, add_device, auth

from controller.store import MIGRATIONS, Inbound, Store
from protocol.models import Status
from protocol.topics import Channel


def status(device_id: str, opd: str, *, online: bool = True,
           update_window: str | None = None) -> Inbound:
    return Inbound(opd, device_id, Channel.STATUS,
                   Status(online=online, fw="0.1.0", clock_synced=True, ts=T0,
                          update_window=update_window), T0)


def _rollout(store) -> int:
    store.add_release(version="0.2.0", sha256="00" * 32, size=1, platforms=["aarch64"],
                      manifest_created_at="2026-12-01T00:00:00Z", key_id="k", actor="admin")
    return store.create_rollout(version="0.2.0", target={}, canary=1, stage_percents=[100],
                                max_failure_share=0.2, stage_timeout_s=3600.0,
                                stages=[["taman-01"], ["tambak-01"]], actor="admin")["id"]


def _windows(client, token, rollout_id: int) -> dict[str, dict[str, str | None]]:
    """Each place that carries the window, by device."""
    h = auth(token)
    listed = {d["device_id"]: d["update_window"]
              for d in client.get("/api/v1/devices", headers=h).json()}
    one = {d: client.get(f"/api/v1/devices/{d}", headers=h).json()["update_window"]
           for d in listed}
    versions = {v["device_id"]: v["update_window"]
                for v in client.get("/api/v1/unit-versions", headers=h).json()}
    rollout = {u["device_id"]: u["update_window"] for u in
               client.get(f"/api/v1/rollouts/{rollout_id}", headers=h).json()["units"]}
    unit = {d: client.get(f"/api/v1/dashboard/units/{d}", headers=h).json()["version"]
            ["update_window"] for d in listed}
    return {"list": listed, "detail": one, "versions": versions, "rollout": rollout,
            "unit": unit}


def test_update_window_stored_from_the_status_and_served_everywhere(client, seeded, store):
    rollout_id = _rollout(store)
    before = _windows(client, seeded.admin, rollout_id)
    assert all(w == {"taman-01": None, "tambak-01": None} for w in before.values()), before

    result = store.commit_batch([status("taman-01", "dlh", update_window="01:00-05:00"),
                                 status("tambak-01", "dp3")])
    assert result.rejected == []
    after = _windows(client, seeded.admin, rollout_id)
    assert after == {k: {"taman-01": "01:00-05:00", "tambak-01": None} for k in after}, after


def test_update_window_follows_the_unit_and_outlives_its_last_will(client, seeded, store):
    rollout_id = _rollout(store)
    store.commit_batch([status("taman-01", "dlh", update_window="22:00-05:00")])
    # The Last Will carries no window: the last one reported stays.
    store.commit_batch([status("taman-01", "dlh", online=False)])
    assert store.get_device("taman-01")["update_window"] == "22:00-05:00"
    assert not store.get_device("taman-01")["online"]
    # Online again with another window, then with none (the unit takes no offers now).
    store.commit_batch([status("taman-01", "dlh", update_window="00:00-24:00")])
    assert _windows(client, seeded.admin, rollout_id)["list"]["taman-01"] == "00:00-24:00"
    store.commit_batch([status("taman-01", "dlh")])
    windows = _windows(client, seeded.admin, rollout_id)
    assert {k: w["taman-01"] for k, w in windows.items()} == dict.fromkeys(windows)


def test_update_window_scoped_like_the_rest(client, seeded, store):
    rollout_id = _rollout(store)
    store.commit_batch([status("taman-01", "dlh", update_window="01:00-05:00"),
                        status("tambak-01", "dp3", update_window="02:00-04:00")])
    versions = client.get("/api/v1/unit-versions", headers=auth(seeded.op_dp3)).json()
    assert [(v["device_id"], v["update_window"]) for v in versions] == [
        ("tambak-01", "02:00-04:00")]
    units = client.get(f"/api/v1/rollouts/{rollout_id}", headers=auth(seeded.op_dp3)).json()
    assert [(u["device_id"], u["update_window"]) for u in units["units"]] == [
        ("tambak-01", "02:00-04:00")]


def test_update_window_migration_keeps_the_units_state(settings):
    """A database of schema version 10 (before the column) gets it, null, on open; the
    unit's state stays and its next status fills it."""
    target = settings.database.target
    with Store.open(target) as store:
        add_device(store, "taman-01", "dlh")
        store.commit_batch([status("taman-01", "dlh", update_window="01:00-05:00")])
        with store._write():  # back to version 10: as a controller of the last release left it
            store.db.execute("ALTER TABLE device_state DROP COLUMN update_window")
            store.db.execute("DELETE FROM schema_version WHERE version = 11")
    with Store.open(target) as store:
        assert store.schema_version == len(MIGRATIONS) == 11
        row = store.get_device("taman-01")
        assert (row["online"], row["fw"], row["update_window"]) == (True, "0.1.0", None)
        store.commit_batch([status("taman-01", "dlh", update_window="22:00-05:00")])
        assert store.get_device("taman-01")["update_window"] == "22:00-05:00"
