"""Store rows -> API bodies (shared by the device and schedule routes)."""

from __future__ import annotations

from controller.api.schemas import DeviceOut, ScheduleOut, SeqInfo
from controller.store import Store


def config_state(store: Store, device_id: str, desired: int | None, reported: int | None
                 ) -> tuple[str, dict | None]:
    """(state, rejection) of a device's desired config against what it reports."""
    if desired is None:
        return "none", None
    if reported == desired:
        return "in_sync", None
    rejection = store.config_rejection(device_id, desired)
    return ("rejected", rejection) if rejection else ("pending", None)


def device_out(store: Store, row: dict) -> DeviceOut:
    state, _ = config_state(store, row["device_id"], row["desired_config_version"],
                            row["reported_config_version"])
    return DeviceOut(
        **{k: row[k] for k in ("device_id", "opd", "kind", "name", "created_at", "online",
                               "last_seen", "status_ts", "fw", "app", "clock_synced", "outputs",
                               "backlog", "dropped", "update_window",
                               "reported_config_version", "desired_config_version")},
        **{k: row["outlook"].get(k) for k in ("paused_until", "rain_delay_until",
                                              "next_start", "next_start_reason")},
        skip_next=row["outlook"].get("skip_next") or [],
        config_state=state,
        seq=SeqInfo(acked=row["acked_seq"], max_seen=row["max_seq"],
                    missing=row["missing_seqs"], gaps_opened=row["gaps_opened"],
                    duplicates=row["duplicates"], dropped_announced=row["dropped_total"]),
    )


def schedule_out(store: Store, device: dict) -> ScheduleOut:
    desired = store.desired_config(device["device_id"])
    reported = device["reported_config_version"]
    state, rejection = config_state(store, device["device_id"],
                                    desired["version"] if desired else None, reported)
    return ScheduleOut(device_id=device["device_id"], desired=desired,
                       reported_version=reported, state=state, rejection=rejection)
