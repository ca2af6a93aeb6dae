"""Simulated days on a virtual clock: oxygen interlock, daily cap across a restart,
temperature rules, the untrusted clock. The app is the real one; the pond, the feeders
and the probes are the field simulator."""

from __future__ import annotations

from datetime import datetime

import pytest


def _dispensed(h, feeder, slot=None):
    return [e for e in h.events("feed_dispensed", feeder=feeder)
            if slot is None or e.data.get("slot") == slot]


def test_feeding_low_oxygen_at_dawn_postponed_until_it_recovers(unit_config, harness):
    config = unit_config(ponds={"kolam-nila": {"plan": {
        "times": ["06:00", "12:00", "17:00"], "fish_count": 3000, "avg_weight_g": 80}}})
    h = harness(config, start_local="05:00")
    h.run_until_local("05:55")
    assert h.sim.ponds["kolam-nila"].do_mg_l < 3.0, "the simulated night must leave DO low"
    h.run_until_local("06:01")
    postponed = h.events("feeding_postponed", feeder="pakan-nila", slot="06:00")
    assert len(postponed) == 1
    assert postponed[0].data["reason"] == "do_low"
    assert postponed[0].data["do_mg_l"] < 3.0
    assert not _dispensed(h, "pakan-nila")
    assert not h.app.outputs["auger-nila"].is_active

    h.run_until_local("10:00")
    fed = _dispensed(h, "pakan-nila", "06:00")
    assert len(fed) == 1, "fed once, after the oxygen came back"
    fed_at_h = h.local(fed[0].ts)
    assert 6.1 < fed_at_h < 8.0
    # It went ahead at the first poll that saw DO at or above the preset's 3.0 mg/L.
    assert len(h.events("feeding_postponed", feeder="pakan-nila")) == 1
    assert not h.events("feeding_skipped", feeder="pakan-nila")
    assert fed[0].data["measured_g"] == pytest.approx(fed[0].data["planned_g"], rel=0.05)


def test_feeding_low_oxygen_never_recovers_skipped_after_window(unit_config, harness):
    config = unit_config(ponds={"kolam-nila": {"plan": {
        "times": ["06:00", "12:00", "17:00"], "fish_count": 3000, "avg_weight_g": 80}}})
    # A heavily overcast day after an algae crash: no oxygen from photosynthesis.
    h = harness(config, start_local="05:00",
                sim_ponds={"kolam-nila": {"photosynthesis": 0.0}})
    h.run_until_local("09:00")
    skipped = h.events("feeding_skipped", feeder="pakan-nila", slot="06:00")
    assert len(skipped) == 1
    assert skipped[0].data["reason"] == "do_low"
    assert skipped[0].data["waited_s"] >= 7200
    assert 8.0 <= h.local(skipped[0].ts) < 8.2
    assert len(h.events("feeding_postponed", feeder="pakan-nila", slot="06:00")) == 1
    assert not _dispensed(h, "pakan-nila")
    assert h.app.outputs["auger-nila"].total_on_s == 0


def test_daily_cap_holds_across_restart(unit_config, harness):
    config = unit_config(
        feeders={"pakan-nila": {"max_dose_g": 2500, "max_daily_g": 5000}},
        ponds={"kolam-nila": {"plan": {"times": ["09:00", "12:00", "16:00"],
                                       "doses_g": [2000, 2000, 2000]}}})
    h = harness(config, start_local="08:50")
    h.run_until_local("13:00")
    assert len(_dispensed(h, "pakan-nila")) == 2
    before = h.app._fed_today("pakan-nila")
    assert before == pytest.approx(4000, abs=1)

    h.restart()  # a new app instance on the same state file, mid-day
    assert h.app._fed_today("pakan-nila") == pytest.approx(before)
    h.run_until_local("17:00")
    third = _dispensed(h, "pakan-nila", "16:00")
    assert len(third) == 1
    assert third[0].data["planned_g"] == pytest.approx(1000, abs=1)
    clamp = h.events("limit_clamped", feeder="pakan-nila")
    assert clamp and clamp[-1].data["limit"] == "max_daily_g"
    assert clamp[-1].data["asked"] == 2000

    # No command can pass the cap either.
    replies = h.command("feed_now", feeder="pakan-nila", dose_g=300)
    assert replies[0][0] == "rejected"
    assert "daily cap" in replies[0][1]
    assert replies[0][2]["allowed"] == 0 and replies[0][2]["limit"] == "max_daily_g"
    h.run(600)
    total = sum(e.data["commanded_g"] for e in _dispensed(h, "pakan-nila"))
    assert total <= 5000 + 0.5

    # A new local day starts a new cap.
    h.run_until_local("09:05", day=1)
    assert len(_dispensed(h, "pakan-nila")) == 4
    assert h.app._fed_today("pakan-nila") == pytest.approx(2000, abs=1)


def test_restart_mid_feeding_records_interrupted_run_and_counts_it(unit_config, harness):
    config = unit_config(ponds={"kolam-nila": {"plan": {"times": ["09:00"],
                                                        "doses_g": [2000]}}})
    h = harness(config, start_local="08:50")
    h.run_until_local("09:00")
    h.run(30)  # motor running now
    assert h.app.outputs["auger-nila"].is_active
    # Simulate a crash: the daemon dies without its clean stop (state keeps the run).
    runs = h.state.get("ff.in_progress")
    assert "pakan-nila" in runs
    h.app.feeders["pakan-nila"]._run = None  # the process is gone: no result callback
    h.restart()
    interrupted = h.events("run_interrupted", feeder="pakan-nila")
    assert len(interrupted) == 1 and interrupted[0].data["counted_g"] == 2000
    assert not h.app.outputs["auger-nila"].is_active
    assert h.app._fed_today("pakan-nila") == pytest.approx(2000)  # counted conservatively


@pytest.mark.parametrize(("temp_mean_c", "expect"), [
    (23.0, "reduce"),  # nila: 20-25 degC is the reduce band (x0.5)
    (18.0, "skip"),    # below temp_stop_below_c = 20: no feeding
])
def test_temperature_out_of_range_reduces_or_skips_per_preset(unit_config, harness,
                                                                temp_mean_c, expect):
    config = unit_config(ponds={"kolam-nila": {"plan": {"times": ["12:00"],
                                                        "doses_g": [1000]}}})
    h = harness(config, start_local="11:50",
                sim_ponds={"kolam-nila": {"temp_mean_c": temp_mean_c, "temp_amp_c": 0.5}})
    h.run_until_local("12:30")
    if expect == "reduce":
        fed = _dispensed(h, "pakan-nila")
        assert len(fed) == 1
        assert fed[0].data["planned_g"] == pytest.approx(500, abs=1)
        assert fed[0].data["plan_g"] == 1000
        assert fed[0].data["reduced_by"] == "temp_low"
    else:
        skipped = h.events("feeding_skipped", feeder="pakan-nila")
        assert len(skipped) == 1 and skipped[0].data["reason"] == "temp_low"
        assert skipped[0].data["temp_c"] < 20
        assert h.app.outputs["auger-nila"].total_on_s == 0


def test_temperature_rule_skip_override_skips_in_reduce_band(unit_config, harness):
    config = unit_config(ponds={"kolam-nila": {
        "plan": {"times": ["12:00"], "doses_g": [1000]},
        "thresholds": {"temp_rule": "skip"}}})
    h = harness(config, start_local="11:50",
                sim_ponds={"kolam-nila": {"temp_mean_c": 23.0, "temp_amp_c": 0.5}})
    h.run_until_local("12:30")
    skipped = h.events("feeding_skipped", feeder="pakan-nila")
    assert [e.data["reason"] for e in skipped] == ["temp_low"]
    assert not _dispensed(h, "pakan-nila")


def test_clock_not_synced_no_time_of_day_feeding_but_limits_hold(unit_config, harness):
    config = unit_config(feeders={"pakan-nila": {"max_dose_g": 1500, "max_daily_g": 2000}},
                         ponds={"kolam-nila": {"plan": {"times": ["12:00"],
                                                        "doses_g": [1000]}}})
    h = harness(config, start_local="11:00")
    h.synced = False
    h.run_until_local("12:30")
    skipped = h.events("feeding_skipped", feeder="pakan-nila")
    assert skipped and skipped[0].data["reason"] == "clock_not_synced"
    assert not _dispensed(h, "pakan-nila")
    # A feed_now that reaches the app is still clamped by the local hard limit. (In the
    # daemon the edge link in front refuses commands on an untrusted clock, except
    # stop_all, because it cannot check their expiry.)
    replies = h.command("feed_now", feeder="pakan-nila", dose_g=2000)
    assert replies[0][0] == "accepted"
    assert replies[0][2] == {"field": "dose_g", "asked": 2000.0, "allowed": 1500.0,
                             "limit": "max_dose_g"}
    h.run(200)
    assert replies[-1][0] == "done"
    assert _dispensed(h, "pakan-nila")[0].data["planned_g"] == 1500
    # pause, a time-bounded command, is refused on an untrusted clock
    assert h.command("pause", "p", until="2026-03-03T00:00:00+00:00")[0][0] == "rejected"
    # An untrusted clock that says a new day has begun does not reset the daily cap.
    h.run_until_local("09:00", day=1)
    assert h.app._fed_today("pakan-nila") == pytest.approx(1500)
    replies = h.command("feed_now", "c2", feeder="pakan-nila", dose_g=1000)
    assert replies[0][2]["allowed"] == 500 and replies[0][2]["limit"] == "max_daily_g"
    # Once the clock is trusted again, the new local day starts a new cap.
    h.run(300)
    h.synced = True
    h.run(60)
    assert h.app._fed_today("pakan-nila") == 0


def test_telemetry_carries_water_hopper_and_feed_totals(unit_config, harness):
    config = unit_config(ponds={"kolam-nila": {"plan": {"times": ["09:00"],
                                                        "doses_g": [900]}}})
    h = harness(config, start_local="08:50")
    h.run_until_local("09:30")
    sample = h.pub.telemetry_records()[-1].data["readings"]
    for key in ("do_mg_l.kolam-nila", "temp_c.kolam-nila", "ph.kolam-nila",
                "do_mg_l.tambak-vaname", "hopper_pct.pakan-nila", "hopper_pct.pakan-vaname",
                "hopper_days_left.pakan-nila", "feed_g_today.kolam-nila"):
        assert sample[key] is not None, key
    assert sample["feed_g_today.kolam-nila"] == pytest.approx(900, rel=0.06)
    assert 0 < sample["do_mg_l.kolam-nila"] < 20
    log = h.app.feed_log()
    assert log["kolam-nila"]["2026-03-02"]["feedings"] == 1


def test_stale_sensor_alarm_and_policy_reduce(unit_config, harness):
    config = unit_config(ponds={"kolam-nila": {"plan": {"times": ["12:00"],
                                                        "doses_g": [1000]}}})
    h = harness(config, start_local="10:00")
    h.run(600)
    h.sim.ports["sim://do"].silent = True  # the DO circuit stops answering
    h.run_until_local("12:30")
    stale = h.events("alarm", code="sensor_stale", sensor="do-nila")
    assert len(stale) == 1 and stale[0].data["policy"] == "reduce"
    fed = _dispensed(h, "pakan-nila")
    assert len(fed) == 1 and fed[0].data["planned_g"] == 500
    assert fed[0].data["reduced_by"] == "stale"
    assert h.app.readings()["do_mg_l.kolam-nila"] is None
    h.sim.ports["sim://do"].silent = False
    h.run(400)
    assert h.events("alarm_cleared", code="sensor_stale", sensor="do-nila")


def test_stale_sensor_policy_skip(unit_config, harness):
    config = unit_config(interlocks={"stale_policy": "skip"},
                         ponds={"kolam-nila": {"plan": {"times": ["12:00"],
                                                        "doses_g": [1000]}}})
    h = harness(config, start_local="11:00")
    h.sim.ports["sim://temp"].silent = True
    h.run_until_local("12:30")
    skipped = h.events("feeding_skipped", feeder="pakan-nila")
    assert [(e.data["reason"], e.data["sensor"]) for e in skipped] == [
        ("sensor_stale", "temp_c")]


def test_garbled_serial_lines_counted_never_crash_the_day(unit_config, harness):
    h = harness(unit_config(), start_local="06:00", garble_rate=0.3)
    h.run_until_local("17:00")
    readings = h.pub.telemetry_records()[-1].data["readings"]
    garbled = {k: v for k, v in readings.items() if k.startswith("garbled_lines.")}
    assert sum(garbled.values()) > 50
    assert all(v > 0 for k, v in garbled.items() if "hopper" not in k or "vaname" in k)
    assert not h.events("alarm", code="tick_failed")
    assert not h.events("alarm", code="job_failed")
    # the day's feedings still ran, measured
    assert len(h.events("feed_dispensed", feeder="pakan-nila")) == 3
    assert [e.data["slot"] for e in h.events("feed_dispensed", feeder="pakan-vaname")] == [
        "10:00", "14:00"]
    assert not h.events("feeding_skipped")
    for e in h.pub.telemetry_records():
        do = e.data["readings"]["do_mg_l.kolam-nila"]
        assert do is None or 0 < do < 20


def test_sensor_silent_from_start_alarms_only_after_its_stale_time(unit_config, harness):
    def unplug(sim):
        sim.ports["sim://ph"].silent = True
        sim.distance_sources["pakan-nila"].broken = True

    h = harness(unit_config(), start_local="10:00", prepare=unplug)
    assert h.app.water_quality("kolam-nila").ph.stale
    h.run(600)  # both are stale from the start, but give them their stale time
    assert not h.events("alarm", code="sensor_stale")
    h.run(400)
    stale = {e.data["sensor"] for e in h.events("alarm", code="sensor_stale")}
    assert stale == {"ph-nila", "pakan-nila.hopper"}
    assert h.app.readings()["hopper_pct.pakan-nila"] is None
    h.sim.distance_sources["pakan-nila"].broken = False
    h.run(300)
    cleared = {e.data["sensor"] for e in h.events("alarm_cleared", code="sensor_stale")}
    assert cleared == {"pakan-nila.hopper"}


def test_feeding_time_missed_while_down_is_caught_up_or_skipped(unit_config, harness):
    config = unit_config(ponds={"kolam-nila": {"plan": {"times": ["09:00", "12:00"],
                                                        "doses_g": [700, 700]}}})
    h = harness(config, start_local="08:30")
    h.run_until_local("08:50")
    h.down_for(40 * 60)  # down 08:50-09:30: the 09:00 feeding is late, inside its window
    h.run(600)
    fed = h.events("feed_dispensed", feeder="pakan-nila")
    assert [e.data["slot"] for e in fed] == ["09:00"]
    assert 9.5 <= h.local(fed[0].ts) < 9.6
    # a feeding that ran is never repeated after a restart
    h.restart()
    h.run(600)
    assert len(h.events("feed_dispensed", feeder="pakan-nila")) == 1
    # down from 11:50 to 14:30: the 12:00 feeding is past its 2 h window: recorded
    h.run_until_local("11:50")
    h.down_for(160 * 60)
    skipped = h.events("feeding_skipped", feeder="pakan-nila", slot="12:00")
    assert [e.data["reason"] for e in skipped] == ["unit_down"]
    assert len(h.events("feed_dispensed", feeder="pakan-nila")) == 1


def test_feeding_times_either_side_of_midnight_are_caught_up_in_order(unit_config, harness):
    """Down from 23:50 to 00:20: the 23:55 feeding of one day and the 00:05 feeding of the
    next are both late inside their window; each runs once, in time order."""
    config = unit_config(ponds={"kolam-nila": {"plan": {"times": ["00:05", "23:55"],
                                                        "doses_g": [300, 300]}}})
    h = harness(config, start_local="23:00")
    h.run_until_local("23:50")
    h.down_for(30 * 60)
    h.run(1800)
    fed = h.events("feed_dispensed", feeder="pakan-nila")
    assert [e.data["slot"] for e in fed] == ["23:55", "00:05"]
    h.restart()
    h.run(600)
    assert len(h.events("feed_dispensed", feeder="pakan-nila")) == 2
    assert h.events("feeding_skipped", feeder="pakan-nila") == []


def test_catch_up_mark_is_saved_when_it_passes_a_feeding_time_not_at_every_poll(
        unit_config, harness):
    """Between feeding times a restart from the saved mark finds the same feeding times
    as one from the latest, so the state file is not written at every poll."""
    config = unit_config(ponds={"kolam-nila": {"plan": {"times": ["09:00", "12:00"],
                                                        "doses_g": [700, 700]}}})
    h = harness(config, start_local="08:30")  # the vaname pond feeds at 10:00 and 14:00
    h.run_until_local("10:10")
    saved = h.state.get("ff.alive")
    assert 10.0 <= h.local(datetime.fromisoformat(saved)) < 10.1
    h.run_until_local("11:55")  # about 100 water-quality polls
    assert h.state.get("ff.alive") == saved
    h.run_until_local("12:30")
    assert h.local(datetime.fromisoformat(h.state.get("ff.alive"))) >= 12.0
    assert [e.data["slot"] for e in h.events("feed_dispensed", feeder="pakan-nila")] == \
        ["09:00", "12:00"]


def test_feeding_skipped_on_an_untrusted_clock_is_not_fed_after_a_restart(
        unit_config, harness):
    """The 12:00 feeding falls due while the clock is not trusted (skipped); once it is
    again, the next poll saves a mark past 12:00, so a restart inside the feeding's
    window does not take it up."""
    config = unit_config(ponds={"kolam-nila": {"plan": {"times": ["09:00", "12:00"],
                                                        "doses_g": [700, 700]}}})
    h = harness(config, start_local="08:30")
    h.run_until_local("11:30")  # the 09:00 and 10:00 feedings
    h.synced = False
    h.run_until_local("12:10")
    h.synced = True
    h.run(180)
    h.down_for(10 * 60)
    h.run(600)
    assert [e.data["reason"] for e in h.events("feeding_skipped", slot="12:00")] == \
        ["clock_not_synced"]
    assert [e.data["slot"] for e in h.events("feed_dispensed", feeder="pakan-nila")] == \
        ["09:00"]
