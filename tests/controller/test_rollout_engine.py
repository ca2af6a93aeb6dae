"""The rollout engine with the store alone (no MQTT): stages, outcomes from the units'
replies and update events (through the ingest's commit), skips, the failure threshold,
timeouts; and planning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from controller_support import add_device

from controller.errors import Conflict
from controller.rollouts import RolloutEngine, plan_stages, select_units, spread_key
from controller.store import Inbound
from protocol.models import Command, CommandReply, Event, Status
from protocol.topics import Channel

T = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
UNITS = ["taman-a", "taman-b", "taman-c"]


class Sent(list):
    def __init__(self, store):
        super().__init__()
        self.store = store

    def __call__(self, opd: str, device_id: str, command: Command) -> None:
        self.store.create_command(device_id, command, actor="controller (rollout)")
        self.append((device_id, command))


@pytest.fixture
def fleet(store):
    for device in UNITS:
        add_device(store, device, "dlh")
    add_device(store, "tambak-x", "dp3", kind="fish_feeder")
    store.add_release(version="0.2.0", sha256="a" * 64, size=1234, platforms=["aarch64"],
                      manifest_created_at="2026-12-01T00:00:00Z", key_id="0" * 16,
                      actor="test")
    sent = Sent(store)
    return store, sent, RolloutEngine(store, sent, "https://kota.example")


def _start(store, **kw):
    units = select_units(store.list_devices(), kw.pop("target", {"opd": "dlh"}))
    args = {"canary": 1, "stage_percents": [100], "max_failure_share": 0.2,
            "stage_timeout_s": 3600.0} | kw
    stages = plan_stages(units, args["canary"], args["stage_percents"])
    return store.create_rollout(version="0.2.0", target={"opd": "dlh"}, stages=stages,
                                actor="admin", now=T, **args)


_seq: dict[str, int] = {}


def _unit_says(store, device, *messages):
    items = []
    for msg in messages:
        if isinstance(msg, Event):
            _seq[device] = _seq.get(device, 0) + 1
            msg = msg.model_copy(update={"seq": _seq[device]})
        channel = {Event: Channel.EVENT, CommandReply: Channel.CMD_REPLY,
                   Status: Channel.STATUS}[type(msg)]
        items.append(Inbound("dlh", device, channel, msg, T))
    result = store.commit_batch(items)
    assert not result.rejected, result.rejected


def _applied(cmd: Command) -> list:
    return [cmd.reply("accepted", T, code="update_accepted",
                      params={"version": "0.2.0", "window": "00:00-24:00"}),
            Event(seq=1, ts=T, type="update_applied",
                  details={"version": "0.2.0", "previous": "0.1.0", "update_id": cmd.id,
                           "duration_s": 40.0})]


def _failed(cmd: Command) -> list:
    return [Event(seq=1, ts=T, type="update_failed",
                  details={"version": "0.2.0", "running": "0.1.0", "update_id": cmd.id,
                           "step": "health", "reason": "the MQTT link is not up",
                           "rolled_back": True})]


def _states(store, rid):
    return {u["device_id"]: u["state"] for u in store.get_rollout(rid)["units"]}


def test_rollout_canary_then_rest_completes(fleet):
    store, sent, engine = fleet
    rid = _start(store)["id"]
    engine.step(T)
    assert len(sent) == 1
    canary, cmd = sent[0]
    assert cmd.action.value == "update" and cmd.params.sha256 == "a" * 64
    assert cmd.params.url == "https://kota.example/api/v1/releases/0.2.0/bundle"
    assert cmd.params.size == 1234 and cmd.expires_at - cmd.issued_at == timedelta(hours=1)
    assert _states(store, rid)[canary] == "offered"
    assert sorted(_states(store, rid).values()) == ["offered", "waiting", "waiting"]
    engine.step(T + timedelta(seconds=5))
    assert len(sent) == 1  # nothing more until the canary's outcome
    _unit_says(store, canary, *_applied(cmd))
    assert store.get_command(cmd.id)["status"] == "done"
    engine.step(T + timedelta(seconds=10))
    assert _states(store, rid)[canary] == "applied"
    assert store.get_rollout(rid)["stage"] == 1
    engine.step(T + timedelta(seconds=11))
    assert len(sent) == 3
    for device, cmd in sent[1:]:
        _unit_says(store, device, *_applied(cmd))
    engine.step(T + timedelta(seconds=20))
    engine.step(T + timedelta(seconds=21))
    done = store.get_rollout(rid)
    assert done["state"] == "completed" and done["counts"]["applied"] == 3
    assert {u["offered"] for u in done["units"]} == {"0.2.0"}
    actions = [a["action"] for a in store.list_audit()]
    assert actions[0] == "rollout.complete" and "rollout.start" in actions
    assert actions.count("command.create") == 3


def test_rollout_failed_canary_stops_it_and_nobody_else_is_offered(fleet):
    store, sent, engine = fleet
    rid = _start(store)["id"]
    engine.step(T)
    canary, cmd = sent[0]
    _unit_says(store, canary, *_failed(cmd))
    command = store.get_command(cmd.id)
    assert command["status"] == "failed" and command["reply_params"]["step"] == "health"
    engine.step(T + timedelta(seconds=3))
    engine.step(T + timedelta(seconds=6))
    rollout = store.get_rollout(rid)
    assert rollout["state"] == "stopped" and rollout["reason"] == "failure_threshold"
    unit = next(u for u in rollout["units"] if u["device_id"] == canary)
    assert (unit["state"], unit["result"], unit["step"]) == ("failed", "update_failed", "health")
    assert unit["reason"] == "the MQTT link is not up"
    assert len(sent) == 1 and rollout["counts"]["waiting"] == 2
    assert store.list_audit()[0]["action"] == "rollout.stop"
    assert store.list_audit()[0]["actor"] == "controller"


def test_rollout_refusal_timeout_and_skip(fleet):
    store, sent, engine = fleet
    # taman-? already runs 0.2.0: skipped, counted as applied
    units = sorted(UNITS, key=spread_key)
    _unit_says(store, units[0], Status(online=True, fw="0.2.0", clock_synced=True, ts=T))
    rid = _start(store, canary=1, max_failure_share=0.5)["id"]
    engine.step(T)
    assert sent == [] and _states(store, rid)[units[0]] == "skipped"
    engine.step(T + timedelta(seconds=1))  # stage 0 ended: the rest are offered
    assert [d for d, _ in sent] == units[1:]
    (b, cmd_b), (c, cmd_c) = sent
    _unit_says(store, b, cmd_b.reply("rejected", T, code="update_not_trusted",
                                     params={"version": "0.2.0"}))
    _unit_says(store, c, cmd_c.reply("accepted", T, code="update_accepted",
                                     params={"version": "0.2.0", "window": "02:00-04:00"}))
    engine.step(T + timedelta(seconds=2))
    rollout = store.get_rollout(rid)
    by = {u["device_id"]: u for u in rollout["units"]}
    assert (by[b]["state"], by[b]["result"]) == ("failed", "update_not_trusted")
    assert by[c]["state"] == "accepted" and rollout["state"] == "running"  # 1 of 2 = 0.5
    engine.step(T + timedelta(hours=2))  # past stage_timeout_s
    rollout = store.get_rollout(rid)
    assert rollout["state"] == "stopped" and rollout["reason"] == "failure_threshold"
    assert {u["device_id"]: u["result"] for u in rollout["units"]}[c] == "timeout"


def test_rollout_one_at_a_time_and_admin_stop(fleet):
    store, sent, engine = fleet
    rid = _start(store)["id"]
    with pytest.raises(Conflict):
        _start(store)
    stopped = store.stop_rollout(rid, reason="stopped_by_admin", note="wrong build",
                                 actor="admin")
    assert stopped["state"] == "stopped" and stopped["note"] == "wrong build"
    engine.step(T)
    assert sent == []
    with pytest.raises(Conflict):
        store.stop_rollout(rid, reason="stopped_by_admin", actor="admin")
    assert _start(store)["state"] == "running"


def test_rollout_plan_stages_and_targets(fleet):
    store = fleet[0]
    devices = store.list_devices()
    assert select_units(devices, {"opd": "dp3"}) == ["tambak-x"]
    assert sorted(select_units(devices, {"percent": 100})) == sorted([*UNITS, "tambak-x"])
    assert len(select_units(devices, {"percent": 50})) == 2
    assert len(select_units(devices, {"percent": 1, "opd": "dlh"})) == 1
    ids = [f"u{i:02d}" for i in range(20)]
    stages = plan_stages(ids, 1, [10, 50, 100])
    assert [len(s) for s in stages] == [1, 1, 8, 10]
    assert sorted(sum(stages, [])) == ids
    assert [len(s) for s in plan_stages(ids[:2], 5, [100])] == [2]


def test_rollout_units_offered_keep_reporting_after_a_stop(fleet):
    store, sent, engine = fleet
    rid = _start(store, canary=3)["id"]
    engine.step(T)
    assert len(sent) == 3
    (a, cmd_a), (b, cmd_b), _ = sent
    _unit_says(store, a, *_failed(cmd_a))
    engine.step(T + timedelta(seconds=1))
    assert store.get_rollout(rid)["state"] == "stopped"  # 1 of 3 > 0.2
    _unit_says(store, b, *_applied(cmd_b))
    engine.step(T + timedelta(seconds=2))
    states = _states(store, rid)
    assert states[a] == "failed" and states[b] == "applied"
    assert sorted(states.values()) == ["applied", "failed", "offered"]
    assert len(sent) == 3
    assert store.device_version(b) == {"running": None, "offered": "0.2.0",
                                       "offer_state": "applied", "update_window": None}


def test_rollout_two_controllers_offer_each_unit_once(fleet, settings):
    """Two controllers' periodic work on one database (several ingest workers): each
    unit is claimed once, a stage moves on once."""
    from controller.store import Store

    store, sent, engine = fleet
    with Store.open(settings.database.path) as other_store:
        other_sent = Sent(other_store)
        other = RolloutEngine(other_store, other_sent, "https://kota.example")
        rid = _start(store, canary=1)["id"]
        stale = store.rollout_unit_commands(rid)  # what one of them read before the other
        engine.step(T)
        other.step(T)
        assert len(sent) + len(other_sent) == 1
        rollout = store.get_rollout(rid)
        waiting = next(u for u in stale if u["stage"] == 0)
        assert store.claim_rollout_unit(rid, waiting["device_id"], "late", "0.2.0", T) is False
        device, cmd = (sent or other_sent)[0]
        _unit_says(store, device, *_applied(cmd))
        for t in range(1, 6):
            engine.step(T + timedelta(seconds=t))
            other.step(T + timedelta(seconds=t))
        offered = [d for d, _ in sent + other_sent]
        assert sorted(offered) == sorted(UNITS) and len(offered) == 3
        assert rollout["state"] == "running"
        assert store.get_rollout(rid)["stage"] == 1
        assert not store.advance_rollout(rid, 0, 1, T)  # moved on already
