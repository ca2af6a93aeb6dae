"""Physical confirmation: a jammed auger, an empty hopper, a hopper that runs dry."""

from __future__ import annotations

import pytest


def test_jam_motor_off_within_timeout_one_alarm_no_retry(unit_config, harness):
    config = unit_config(ponds={"kolam-nila": {"plan": {"times": ["09:00", "12:00"],
                                                        "doses_g": [1000, 1000]}}})
    h = harness(config, start_local="07:55", sim_feeders={"pakan-nila": {"jammed": True}})
    h.run_until_local("08:00")
    motor = h.app.outputs["auger-nila"]
    replies = h.command("feed_now", feeder="pakan-nila", dose_g=900)
    assert replies[0][0] == "accepted"
    assert motor.is_active
    h.run(4.5)
    assert motor.is_active, "still inside the 5 s confirmation window"
    h.run(1.0)
    assert not motor.is_active, "no rotation pulses within 5 s: motor off"
    assert motor.total_on_s == pytest.approx(5.0, abs=0.01)
    jams = h.events("alarm", code="feeder_jam")
    assert len(jams) == 1 and jams[0].data["feeder"] == "pakan-nila"
    assert replies[-1][0] == "failed" and "jam" in replies[-1][1]
    fed = h.events("feed_dispensed", feeder="pakan-nila")
    assert len(fed) == 1 and fed[0].data["fault"] == "jam" and fed[0].data["measured_g"] == 0

    # No blind retry: the rest of the day the motor stays off, feedings are skipped.
    h.run_until_local("13:00")
    assert motor.total_on_s == pytest.approx(5.0, abs=0.01)
    assert len(h.events("alarm", code="feeder_jam")) == 1
    skipped = h.events("feeding_skipped", feeder="pakan-nila")
    assert [e.data["reason"] for e in skipped] == ["feeder_locked", "feeder_locked"]
    assert h.command("feed_now", "c2", feeder="pakan-nila", dose_g=100)[0][0] == "rejected"
    assert h.pub.telemetry_records()[-1].data["readings"]["feeder_locked.pakan-nila"] is True

    # A technician frees the auger; the operator clears the lockout; feeding works again.
    h.sim.feeders["pakan-nila"].jammed = False
    done = h.command("clear_fault", "c3", feeder="pakan-nila")
    assert done[0][0] == "done"
    assert h.events("alarm_cleared", feeder="pakan-nila")[-1].data["cleared_by"] == "command"
    replies = h.command("feed_now", "c4", feeder="pakan-nila", dose_g=500)
    assert replies[0][0] == "accepted"
    h.run(120)
    assert replies[-1][0] == "done"
    assert h.events("feed_dispensed", feeder="pakan-nila")[-1].data["fault"] is None


def test_jam_lockout_cleared_by_restart_is_recorded(unit_config, harness):
    h = harness(unit_config(), start_local="09:55",
                sim_feeders={"pakan-nila": {"jammed": True}})
    h.run_until_local("10:00")  # daylight: oxygen is fine
    h.command("feed_now", feeder="pakan-nila", dose_g=500)
    h.run(10)
    assert h.app.feeders["pakan-nila"].fault == "jam"
    h.restart()
    assert h.app.feeders["pakan-nila"].fault is None
    cleared = h.events("alarm_cleared", feeder="pakan-nila")
    assert len(cleared) == 1 and cleared[0].data["cleared_by"] == "restart"


def test_empty_hopper_alarm_and_feeding_skipped(unit_config, harness):
    config = unit_config(ponds={"kolam-nila": {"plan": {"times": ["09:00"],
                                                        "doses_g": [1000]}}})
    # 1 % of a 50 kg hopper left: below empty_pct = 3 %.
    h = harness(config, start_local="08:55", sim_feeders={"pakan-nila": {"hopper_g": 500}})
    h.run_until_local("09:30")
    empty = h.events("alarm", code="hopper_empty", feeder="pakan-nila")
    assert len(empty) == 1
    skipped = h.events("feeding_skipped", feeder="pakan-nila")
    assert [e.data["reason"] for e in skipped] == ["hopper_empty"]
    assert h.app.outputs["auger-nila"].total_on_s == 0
    assert h.events("alarm", code="hopper_low", feeder="pakan-nila")

    # Refilled: the alarms clear and the next feeding goes ahead.
    h.sim.feeders["pakan-nila"].hopper_g = 45_000
    h.run(400)
    codes = {e.data["code"] for e in h.events("alarm_cleared", feeder="pakan-nila")}
    assert {"hopper_empty", "hopper_low"} <= codes


def test_hopper_low_alarm_estimates_days_left(unit_config, harness):
    config = unit_config(ponds={"kolam-nila": {"plan": {"times": ["09:00", "15:00"],
                                                        "doses_g": [1000, 1000]}}})
    h = harness(config, sim_feeders={"pakan-nila": {"hopper_g": 7_000}})  # 14 % of 50 kg
    h.run(60)
    low = h.events("alarm", code="hopper_low", feeder="pakan-nila")
    assert len(low) == 1
    assert low[0].data["days_left"] == pytest.approx(3.5, abs=0.3)  # 7 kg at 2 kg/day
    readings = h.app.readings()
    assert readings["hopper_days_left.pakan-nila"] == pytest.approx(3.5, abs=0.3)


def test_hopper_runs_dry_mid_feeding_weight_stops_dropping(unit_config, harness):
    config = unit_config(
        feeders={"pakan-vaname": {"hopper": {"empty_pct": 0.5, "low_pct": 25}}},
        ponds={"tambak-vaname": {"plan": {"times": ["12:00"], "doses_g": [1500]}}})
    # 300 g left: above the empty mark, so the feeding starts, and runs dry after ~17 s.
    h = harness(config, start_local="11:55", sim_feeders={"pakan-vaname": {"hopper_g": 300}})
    h.run_until_local("12:02")
    motor = h.app.outputs["spinner-vaname"]
    assert not motor.is_active
    assert motor.total_on_s < 30, "stopped at the first check without a weight drop"
    alarms = h.events("alarm", code="feeder_no_feed")
    assert len(alarms) == 1
    fed = h.events("feed_dispensed", feeder="pakan-vaname")
    assert len(fed) == 1 and fed[0].data["fault"] == "no_feed"
    assert fed[0].data["measured_by"] == "weight"
    assert fed[0].data["measured_g"] == pytest.approx(300, abs=25)
    assert h.app.feeders["pakan-vaname"].fault == "no_feed"


def test_jam_in_a_run_shorter_than_one_window_still_caught(unit_config, harness):
    h = harness(unit_config(), start_local="09:55",
                sim_feeders={"pakan-nila": {"jammed": True}})
    replies = h.command("feed_now", feeder="pakan-nila", dose_g=60)  # 3.3 s of motor
    h.run(10)
    assert replies[-1][0] == "failed"
    assert h.app.feeders["pakan-nila"].fault == "jam"
    assert len(h.events("alarm", code="feeder_jam")) == 1
    assert h.app.outputs["auger-nila"].total_on_s == pytest.approx(60 / 18, abs=0.01)
    # and a short run on a good feeder is fine
    replies = h.command("feed_now", "c2", feeder="pakan-vaname", dose_g=60)
    h.run(10)
    assert replies[-1][0] == "done"
    assert h.app.feeders["pakan-vaname"].fault is None
