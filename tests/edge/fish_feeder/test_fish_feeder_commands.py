"""Operator commands and the controller's remote config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support.offers import update_paths

from edge.errors import ConfigError
from protocol.models import ReplyCode


def fed(h, feeder):
    return h.events("feed_dispensed", feeder=feeder)


@pytest.fixture
def unit(unit_config, harness):
    config = unit_config(ponds={"kolam-nila": {"plan": {"times": ["12:00", "15:00"],
                                                        "doses_g": [800, 800]}}})
    h = harness(config, start_local="09:55")
    h.run_until_local("10:00")
    return h


def test_feed_now_clamped_to_max_dose_reported_in_reply_and_event(unit):
    replies = unit.command("feed_now", feeder="pakan-nila", dose_g=5000)
    status, detail, clamped = replies[0]
    assert status == "accepted"
    assert clamped == {"field": "dose_g", "asked": 5000.0, "allowed": 3500.0,
                       "limit": "max_dose_g"}
    ev = unit.events("limit_clamped", feeder="pakan-nila")
    assert len(ev) == 1 and ev[0].data["limit"] == "max_dose_g" and ev[0].data["cmd_id"] == "c1"
    unit.run(240)
    assert replies[-1][0] == "done"
    assert fed(unit, "pakan-nila")[-1].data["planned_g"] == 3500
    assert fed(unit, "pakan-nila")[-1].data["source"] == "command"


@pytest.mark.parametrize("params", [{"feeder": "ghost", "dose_g": 10},
                                    {"feeder": "pakan-nila", "dose_g": -1},
                                    {"feeder": "pakan-nila", "dose_g": "lots"},
                                    {"feeder": "pakan-nila"}])
def test_feed_now_bad_params_rejected(unit, params):
    assert unit.command("feed_now", **params)[0][0] == "rejected"
    assert not unit.app.outputs["auger-nila"].is_active


def test_feed_now_on_busy_feeder_rejected(unit):
    assert unit.command("feed_now", "a", feeder="pakan-nila", dose_g=500)[0][0] == "accepted"
    second = unit.command("feed_now", "b", feeder="pakan-nila", dose_g=500)
    assert second[0][0] == "rejected" and "busy" in second[0][1]


def test_unknown_action_rejected(unit):
    assert unit.command("run_zone", zone="x", duration_s=5)[0][0] == "rejected"


def test_skip_next_for_one_feeder(unit):
    assert unit.command("skip_next", feeder="pakan-nila")[0][0] == "done"
    unit.run_until_local("15:30")
    skipped = unit.events("feeding_skipped", feeder="pakan-nila")
    assert [(e.data["slot"], e.data["reason"]) for e in skipped] == [("12:00", "skip_next")]
    assert [e.data["slot"] for e in fed(unit, "pakan-nila")] == ["15:00"]
    assert unit.events("feed_dispensed", feeder="pakan-vaname", slot="14:00")


def test_skip_next_without_feeder_skips_each_feeders_next(unit):
    unit.command("skip_next")
    unit.run_until_local("15:30")
    assert unit.events("feeding_skipped", feeder="pakan-nila", slot="12:00")
    assert unit.events("feeding_skipped", feeder="pakan-vaname", slot="14:00")
    assert unit.events("feed_dispensed", feeder="pakan-nila", slot="15:00")
    assert unit.command("skip_next", "z", zone="lawn")[0][0] == "rejected"


def test_pause_until_survives_restart_then_resumes_by_itself(unit):
    replies = unit.command("pause", until="2026-03-02T06:30:00+00:00")  # 14:30 WITA
    assert replies[0][0] == "done"
    assert unit.events("paused")
    unit.restart()
    unit.run_until_local("15:30")
    assert unit.events("feeding_skipped", feeder="pakan-nila", slot="12:00",
                       reason="paused")
    assert unit.events("resumed")
    assert unit.events("feed_dispensed", feeder="pakan-nila", slot="15:00")
    # feed_now is an explicit override and works during a pause
    unit.command("pause", "p2", until="2026-03-03T00:00:00+00:00")
    assert unit.command("feed_now", "f", feeder="pakan-nila", dose_g=100)[0][0] == "accepted"


def test_pause_in_the_past_rejected_and_resume_clears(unit):
    assert unit.command("pause", until="2026-03-01T00:00:00+00:00")[0][0] == "rejected"
    assert unit.command("pause", "p0", until="not a time")[0][0] == "rejected"
    unit.command("pause", "p1", until="2026-03-03T00:00:00+00:00")
    assert unit.command("resume", "r1")[0] == ("done", "cleared: pause", None)
    assert unit.codes[-1][2:] == (ReplyCode.RESUMED, {"cleared": "pause"})
    unit.run_until_local("12:30")
    assert unit.events("feed_dispensed", feeder="pakan-nila", slot="12:00")


def test_pause_has_the_same_limit_as_on_an_irrigation_unit(unit):
    """At most 31 days (protocol.holds.MAX_PAUSE); a refused pause changes nothing."""
    status, detail, _ = unit.command("pause", "p1", until="2026-04-03T00:00:00+00:00")[0]
    assert (status, detail) == ("rejected", "pause refused: too_long (max_days 31)")
    assert unit.codes[-1][2:] == (ReplyCode.PAUSE_REFUSED, {"reason": "too_long", "max_days": 31})
    assert unit.events("paused") == [] and not unit.app.readings()["paused"]
    assert unit.command("pause", "p2", until="2026-04-01T00:00:00+00:00")[0][0] == "done"


def test_stop_all_turns_a_running_feeder_off(unit):
    feed = unit.command("feed_now", "f", feeder="pakan-nila", dose_g=2000)
    unit.run(20)
    assert unit.app.outputs["auger-nila"].is_active
    stop = unit.command("stop_all", "s")
    assert stop[0][0] == "done"  # pakan-nila, and pakan-vaname feeding its pond at 10:00
    assert unit.codes[-1][1:] == ("done", ReplyCode.STOPPED_ALL, {"runs": 2})
    assert not unit.app.outputs["auger-nila"].is_active
    assert feed[-1][0] == "failed"
    ((_, _, code, params),) = [c for c in unit.codes if c[0] == "f" and c[1] == "failed"]
    assert (code, params["feeder"], params["fault"]) == (
        ReplyCode.FEEDING_FAILED, "pakan-nila", "stopped")
    ev = fed(unit, "pakan-nila")[-1]
    assert ev.data["fault"] == "stopped" and 300 < ev.data["measured_g"] < 420
    assert unit.app._fed_today("pakan-nila") == pytest.approx(ev.data["commanded_g"])


# -- remote config ---------------------------------------------------------------------
NEW_PLAN = {"ponds": {"kolam-nila": {"plan": {"times": ["13:00"], "doses_g": [600]},
                                     "thresholds": {"do_min_mg_l": 3.5}}}}


def test_remote_config_replaces_plan_and_survives_restart(unit):
    unit.app.apply_remote_config(3, NEW_PLAN)
    assert unit.app.current_config_version == 3
    assert unit.app.thresholds("kolam-nila").do_min_mg_l == 3.5
    unit.restart()
    assert unit.app.current_config_version == 3
    unit.run_until_local("16:00")
    assert [(e.data["slot"], e.data["plan_g"]) for e in fed(unit, "pakan-nila")] == [
        ("13:00", 600)]
    # the other pond kept its local plan
    assert unit.events("feed_dispensed", feeder="pakan-vaname", slot="14:00")


@pytest.mark.parametrize(("body", "field"), [
    ({"ponds": {"kolam-nila": {"plan": {"times": ["25:00"], "doses_g": [1]}}}},
     "ponds.kolam-nila"),
    ({"ponds": {"ghost": {"plan": {"times": ["10:00"], "doses_g": [1]}}}}, "ponds.ghost"),
    ({"feeders": {"pakan-nila": {"max_daily_g": 99999}}}, "feeders"),
    ({"ponds": {"kolam-nila": {"max_dose_g": 9999}}}, "max_dose_g"),
    ({"ponds": {"kolam-nila": {"thresholds": {"temp_min_c": 40}}}}, "ponds.kolam-nila"),
    ("not an object", "(body)"),
])
def test_remote_config_invalid_raises_and_keeps_the_old_one(unit, body, field):
    unit.app.apply_remote_config(2, NEW_PLAN)
    with pytest.raises(ConfigError) as info:
        unit.app.apply_remote_config(4, body)
    assert any(field in f for f, _ in info.value.problems), info.value.problems
    assert unit.app.current_config_version == 2
    assert unit.app.pond_doses("kolam-nila") == [("13:00", 600.0)]
    assert unit.state.get("ff.remote_config")["version"] == 2


def test_remote_config_older_version_refused(unit):
    unit.app.apply_remote_config(5, NEW_PLAN)
    with pytest.raises(ConfigError, match="older"):
        unit.app.apply_remote_config(4, {"ponds": {}})
    unit.app.apply_remote_config(5, NEW_PLAN)  # the same version again is fine


def test_remote_plan_still_clamped_by_local_hard_limits(unit):
    unit.app.apply_remote_config(6, {"ponds": {"kolam-nila": {
        "plan": {"times": ["13:00"], "doses_g": [9000]}}}})
    unit.run_until_local("13:30")
    clamp = unit.events("limit_clamped", feeder="pakan-nila")
    assert clamp and clamp[0].data["allowed"] == 3500 and clamp[0].data["source"] == "schedule"
    assert fed(unit, "pakan-nila")[-1].data["planned_g"] == 3500


def test_remote_biomass_plan_and_species_change(unit):
    unit.app.apply_remote_config(7, {"ponds": {"kolam-nila": {
        "species": "lele", "plan": {"times": ["13:00", "20:00"], "fish_count": 2000,
                                    "avg_weight_g": 100}}}})
    # lele table: 3 % for fish up to 200 g -> 6000 g/day over two times
    assert unit.app.pond_doses("kolam-nila") == [("13:00", 3000.0), ("20:00", 3000.0)]


def test_stop_all_drops_a_feeding_waiting_for_oxygen(unit_config, harness):
    config = unit_config(ponds={"kolam-nila": {"plan": {"times": ["06:00"],
                                                        "doses_g": [800]}}})
    h = harness(config, start_local="05:55")
    h.run_until_local("06:05")
    assert h.events("feeding_postponed", feeder="pakan-nila")
    assert h.command("stop_all", "s1")[0][0] == "done"
    skipped = h.events("feeding_skipped", feeder="pakan-nila")
    assert [(e.data["reason"], e.data["stopped_by"]) for e in skipped] == [("stopped", "s1")]
    h.run_until_local("09:00")
    assert not h.events("feed_dispensed", feeder="pakan-nila")
    assert h.state.get("ff.pending") == []


def test_pause_same_range_and_format_as_irrigation(unit):
    # one pause model for both kinds: an offset is required, at most 31 days ahead
    now = unit.clock.now()
    too_long = unit.command("pause", "p1", until=(now + timedelta(days=32)).isoformat())
    assert too_long[0][0] == "rejected" and "max_days 31" in too_long[0][1]
    naive = unit.command("pause", "p2", until=(now + timedelta(days=1)).replace(
        tzinfo=None).isoformat())
    assert naive[0][0] == "rejected" and "until" in naive[0][1]
    assert unit.codes[-1][2:] == (ReplyCode.BAD_PARAMS,
                                  {"field": "until", "reason_code": "value_error"})
    ok = unit.command("pause", "p3", until=(now + timedelta(days=31)).isoformat())
    assert ok[0][0] == "done"


def test_skip_next_naming_a_zone_rejected(unit):
    assert unit.command("skip_next", zone="zona-1")[0][0] == "rejected"
    assert unit.state.get("ff.skip_next") in (None, [])


def test_every_command_path_replies_with_a_code(unit, tmp_path):
    until = (unit.clock.now() + timedelta(days=1)).isoformat()
    paths = [
        (("feed_now", {"feeder": "pakan-nila", "dose_g": 500}), "accepted",
         ReplyCode.FEEDING_ACCEPTED, {"feeder": "pakan-nila", "dose_g": 500.0}),
        (("feed_now", {"feeder": "pakan-nila", "dose_g": 500}), "rejected",
         ReplyCode.FEEDER_BUSY, {"feeder": "pakan-nila"}),
        (("feed_now", {"feeder": "ghost", "dose_g": 10}), "rejected",
         ReplyCode.UNKNOWN_FEEDER, {"feeder": "ghost"}),
        (("feed_now", {"feeder": "pakan-nila"}), "rejected", ReplyCode.BAD_PARAMS,
         {"field": "dose_g", "reason_code": "missing"}),
        (("run_zone", {"zone": "z1", "duration_s": 60}), "rejected",
         ReplyCode.UNKNOWN_ACTION, {"action": "run_zone"}),
        (("stop_zone", {"zone": "z1"}), "rejected", ReplyCode.UNKNOWN_ACTION,
         {"action": "stop_zone"}),
        (("skip_next", {"zone": "z1"}), "rejected", ReplyCode.NO_ZONES, {}),
        (("skip_next", {"feeder": "pakan-nila"}), "done", ReplyCode.SKIP_SET,
         {"target": "pakan-nila"}),
        (("skip_next", {}), "done", ReplyCode.SKIP_SET_ALL, {}),
        (("pause", {"until": "2026-03-01T00:00:00+00:00"}), "rejected",
         ReplyCode.PAUSE_REFUSED, {"reason": "in_past"}),
        (("pause", {"until": until}), "done", ReplyCode.PAUSED,
         {"until": datetime.fromisoformat(until).astimezone(UTC).isoformat()}),
        (("resume", {}), "done", ReplyCode.RESUMED, {"cleared": "pause"}),
        (("resume", {}), "done", ReplyCode.NOTHING_TO_RESUME, {}),
        (("clear_fault", {"feeder": "pakan-nila"}), "done", ReplyCode.NOT_LOCKED,
         {"feeder": "pakan-nila"}),
    ]
    for (action, params), status, code, want in paths:
        got = unit.command(action, **params)
        assert (got[0][0], unit.codes[-len(got)][2:]) == (status, (code, want)), action
    # ``update`` is answered by the link for every kind (edge.offer), with a code too
    for got, want in update_paths(unit.config, tmp_path, unit.clock):
        assert got == want
    unit.run(240)
    (done,) = [c for c in unit.codes if c[1] == "done" and c[2] is ReplyCode.FEEDING_DONE]
    assert done[3]["feeder"] == "pakan-nila" and done[3]["planned_g"] == 500.0
