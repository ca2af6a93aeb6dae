"""Overrides through handle_command, local hard limits and their clamp reports, clock trust."""

from datetime import UTC, datetime, timedelta

from irrigation_harness import WITA, Bench, Probe, make_config
from support.offers import update_paths

from protocol.models import ReplyCode

MON = datetime(2026, 9, 7, 0, 0, tzinfo=WITA)


def daily(*times, zones=(("z1", 10),), name="daily"):
    return {"name": name, "start_times": list(times),
            "zones": [{"zone": z, "duration_min": m} for z, m in zones]}


def outputs(**max_on):
    pins = {"v1": 17, "v2": 27, "v3": 22, "v4": 23, "master": 24}
    return [{"name": n, "pin": p, "max_on_s": max_on.get(n, 14_400 if n == "master" else 3600)}
            for n, p in pins.items()]


# -- hard limits ------------------------------------------------------------------------
def test_run_zone_is_clamped_to_the_valves_max_on_time_and_reported():
    bench = Bench(make_config(outputs=outputs(v3=600)), start=MON.replace(hour=9)).start()
    got = bench.command("run_zone", cmd_id="cmd-1", zone="z3", duration_s=1800)
    status, detail, clamped = got[0]
    assert status == "accepted"
    assert clamped == [{"field": "duration_s", "asked": 1800.0, "allowed": 600.0,
                        "limit": "max_on_s"}]
    (ev,) = bench.events("limit_clamped")
    assert (ev["zone"], ev["cmd_id"], ev["allowed"], ev["output"]) == ("z3", "cmd-1", 600.0, "v3")
    bench.run(1200, step=10)
    (fin,) = bench.events("run_finished")
    assert fin["duration_s"] == 600.0 and fin["ended"] == "completed"
    assert [e["code"] for e in bench.events("alarm")] == []  # ended by plan, not forced off
    assert got[-1][0] == "done" and not bench.is_on("v3")


def test_daily_water_limit_clamps_scheduled_runs_and_rejects_commands_until_midnight():
    config = make_config(limits={"max_concurrent_zones": 2, "max_daily_water_min": 15},
                         program={"programs": [daily("06:00", zones=(("z1", 10), ("z3", 10)))]})
    bench = Bench(config, start=MON.replace(hour=5)).start()
    bench.run_until(MON.replace(hour=7))
    fins = {e["zone"]: e for e in bench.events("run_finished")}
    assert fins["z1"]["duration_s"] + fins["z3"]["duration_s"] == 900.0
    (clamp,) = bench.events("limit_clamped")
    assert (clamp["limit"], clamp["asked"], clamp["allowed"]) == ("max_daily_water_min",
                                                                   600.0, 300.0)
    assert bench.app.readings()["water_min_today"] == 15.0

    status, detail, clamped = bench.command("run_zone", zone="z4", duration_s=60)[0]
    assert status == "rejected" and "daily water limit" in detail
    assert bench.codes[-1][2:] == (ReplyCode.DAILY_LIMIT, {"max_daily_water_min": 15.0})
    assert clamped[0]["limit"] == "max_daily_water_min" and clamped[0]["allowed"] == 0.0
    bench.run_until(MON + timedelta(days=1, hours=0, minutes=1))
    assert bench.app.readings()["water_min_today"] == 0.0  # reset at local midnight
    assert bench.command("run_zone", zone="z4", duration_s=60)[0][0] == "accepted"


def test_commands_beyond_the_concurrency_cap_queue_and_run_later():
    bench = Bench(make_config(), start=MON.replace(hour=9)).start()
    for zone in ("z1", "z2", "z3", "z4"):
        assert bench.command("run_zone", zone=zone, duration_s=300)[0][0] == "accepted"
    bench.run(5, step=1)
    assert sorted(bench.open_zones()) == ["z1", "z3"]  # cap 2, z2 shares z1's group
    bench.run(3600, step=15)
    assert sorted(e["zone"] for e in bench.events("run_finished")) == ["z1", "z2", "z3", "z4"]
    assert all(e["duration_s"] == 300.0 for e in bench.events("run_finished"))
    assert bench.violations == []
    assert [r[1] for r in bench.replies].count("done") == 4


def test_pump_rests_instead_of_exceeding_its_max_on_time():
    config = make_config(outputs=outputs(master=1000),
                         master={"output": "master", "kind": "pump", "pre_s": 3, "post_s": 5})
    bench = Bench(config, start=MON.replace(hour=9)).start()
    status, _, clamped = bench.command("run_zone", zone="z1", duration_s=1200)[0]
    assert clamped[0]["allowed"] == 999.0  # the pump's 1000 s less the 1 s margin
    assert bench.command("run_zone", zone="z2", duration_s=600)[0][0] == "accepted"
    bench.run(3600, step=10)
    pump = bench.on_periods("master")
    assert len(pump) == 2 and all((off - on).total_seconds() <= 1000 for on, off in pump)
    assert [e["code"] for e in bench.events("alarm")] == []
    # Pump order: the valve opens pre_s before the pump and closes post_s after it.
    (v1_on, v1_off), (p_on, p_off) = bench.on_periods("v1")[0], pump[0]
    assert (p_on - v1_on).total_seconds() == 3.0 and (v1_off - p_off).total_seconds() == 5.0
    assert [e["duration_s"] for e in bench.events("run_finished")] == [999.0, 600.0]


# -- overrides ----------------------------------------------------------------------------
def test_stop_all_ends_everything_at_once():
    bench = Bench(make_config(), start=MON.replace(hour=9)).start()
    manual = bench.command("run_zone", cmd_id="m1", zone="z1", duration_s=600)
    queued = bench.command("run_zone", cmd_id="m2", zone="z2", duration_s=600)
    bench.run(120, step=5)
    assert bench.is_on("v1") and bench.is_on("master")
    assert bench.command("stop_all", cmd_id="s1")[0][0] == "done"
    assert bench.open_zones() == [] and not bench.is_on("master")
    (fin,) = bench.events("run_finished")
    assert (fin["ended"], fin["stopped_by"]) == ("stopped", "s1")
    assert 110 < fin["duration_s"] < 125
    (skip,) = bench.events("run_skipped")
    assert (skip["zone"], skip["reason"], skip["stopped_by"]) == ("z2", "stopped", "s1")
    assert manual[-1][0] == "failed" and queued[-1][0] == "failed"
    codes = {(cmd, code): params for cmd, _, code, params in bench.codes}
    assert codes[("s1", ReplyCode.STOPPED_ALL)] == {"runs": 2}
    assert codes[("m1", ReplyCode.RUN_ENDED)]["ended"] == "stopped"
    assert codes[("m2", ReplyCode.RUN_SKIPPED)] == {"zone": "z2", "reason": "stopped"}


def test_stop_zone_ends_that_zones_run_and_leaves_the_others():
    bench = Bench(make_config(), start=MON.replace(hour=9)).start()  # z1, z2 in one group
    bench.command("run_zone", cmd_id="m1", zone="z1", duration_s=600)
    bench.command("run_zone", cmd_id="m2", zone="z2", duration_s=600)  # queued behind z1
    bench.command("run_zone", cmd_id="m3", zone="z3", duration_s=600)
    bench.run(120, step=5)
    assert bench.open_zones() == ["z1", "z3"] and bench.is_on("master")
    assert bench.command("stop_zone", cmd_id="s1", zone="z1")[0][0] == "done"
    assert bench.codes[-1][2:] == (ReplyCode.ZONE_STOPPED, {"zone": "z1"})
    (fin,) = bench.events("run_finished")
    assert (fin["zone"], fin["ended"], fin["stopped_by"], fin["cmd_id"]) == (
        "z1", "stopped", "s1", "m1")
    bench.run(30, step=5)  # z3 keeps the supply; z2, behind z1 in its group, starts
    assert bench.open_zones() == ["z2", "z3"] and bench.is_on("master")
    # a queued run: reported skipped, never started
    bench.command("run_zone", cmd_id="m4", zone="z1", duration_s=600)  # behind z2
    assert bench.command("stop_zone", cmd_id="s2", zone="z1")[0][0] == "done"
    skip = bench.events("run_skipped")[-1]
    assert (skip["zone"], skip["reason"], skip["stopped_by"]) == ("z1", "stopped", "s2")
    # the last zones stopped: the supply is cut at once, as stop_all does
    bench.command("stop_zone", cmd_id="s3", zone="z2")
    bench.command("stop_zone", cmd_id="s4", zone="z3")
    assert bench.open_zones() == [] and not bench.is_on("master")
    # nothing running, or no such zone: refused with a code
    assert bench.command("stop_zone", cmd_id="s5", zone="z1")[0][0] == "rejected"
    assert bench.codes[-1][2:] == (ReplyCode.ZONE_NOT_RUNNING, {"zone": "z1"})
    assert bench.command("stop_zone", cmd_id="s6", zone="z9")[0][0] == "rejected"
    assert bench.codes[-1][2:] == (ReplyCode.UNKNOWN_ZONE, {"zone": "z9"})
    ends = {c: (status, code) for c, status, code, _ in bench.codes}
    assert ends["m1"] == ends["m3"] == ("failed", ReplyCode.RUN_ENDED)
    assert ends["m4"] == ("failed", ReplyCode.RUN_SKIPPED)


def test_every_command_path_replies_with_a_code(tmp_path):
    bench = Bench(make_config(), start=MON.replace(hour=9)).start()
    until = (MON + timedelta(days=1)).isoformat()
    paths = [
        (("run_zone", {"zone": "z1", "duration_s": 60}), "accepted", ReplyCode.RUN_ACCEPTED,
         {"zone": "z1", "duration_s": 60}),
        (("run_zone", {"zone": "z9", "duration_s": 60}), "rejected", ReplyCode.UNKNOWN_ZONE,
         {"zone": "z9"}),
        (("run_zone", {"zone": "z1", "duration_s": 5}), "rejected", ReplyCode.BAD_PARAMS,
         {"field": "duration_s", "reason_code": "greater_than_equal", "ge": 10}),
        (("feed_now", {"feeder": "f1", "dose_g": 10}), "rejected", ReplyCode.UNKNOWN_ACTION,
         {"action": "feed_now"}),
        (("skip_next", {"feeder": "f1"}), "rejected", ReplyCode.NO_FEEDERS, {}),
        (("skip_next", {"zone": "z2"}), "done", ReplyCode.SKIP_SET, {"target": "z2"}),
        (("skip_next", {}), "done", ReplyCode.SKIP_SET_ALL, {}),
        (("pause", {"until": (MON + timedelta(days=40)).isoformat()}), "rejected",
         ReplyCode.PAUSE_REFUSED, {"reason": "too_long", "max_days": 31}),
        (("pause", {"until": until}), "done", ReplyCode.PAUSED,
         {"until": datetime.fromisoformat(until).astimezone(UTC).isoformat()}),
        (("rain_delay", {"hours": 6.0}), "done", ReplyCode.RAIN_DELAY_SET, {"hours": 6.0}),
        (("resume", {}), "done", ReplyCode.RESUMED, {"cleared": "pause,rain_delay"}),
        (("resume", {}), "done", ReplyCode.NOTHING_TO_RESUME, {}),
        (("rain_delay", {"hours": 0.0}), "done", ReplyCode.RAIN_DELAY_ENDED, {}),
        (("stop_zone", {"zone": "z3"}), "rejected", ReplyCode.ZONE_NOT_RUNNING, {"zone": "z3"}),
        (("stop_all", {}), "done", ReplyCode.STOPPED_ALL, {"runs": 0}),  # the pause ended z1
    ]
    for (action, params), status, code, want in paths:
        got = bench.command(action, **params)
        assert (got[0][0], bench.codes[-len(got)][2:]) == (status, (code, want)), action
    # ``update`` is answered by the link for every kind (edge.offer), with a code too
    for got, want in update_paths(bench.config, tmp_path, bench.clock):
        assert got == want


def test_skip_next_skips_one_start_of_one_zone_or_of_all():
    config = make_config(program={"programs": [daily("06:00", zones=(("z1", 5), ("z3", 5)))]})
    bench = Bench(config, start=MON).start()
    assert bench.command("skip_next", zone="z1")[0][0] == "done"
    bench.run_until(MON.replace(hour=7))
    (skip,) = bench.events("run_skipped")
    assert (skip["zone"], skip["reason"]) == ("z1", "skip_next")
    assert [e["zone"] for e in bench.events("run_finished")] == ["z3"]
    assert bench.command("skip_next")[0][0] == "done"
    bench.run_until(MON + timedelta(days=2, hours=7))
    reasons = [(e.get("zones") or [e.get("zone")], e["reason"]) for e in bench.events("run_skipped")]
    assert reasons == [(["z1"], "skip_next"), (["z1", "z3"], "skip_next")]
    assert len(bench.events("run_finished")) == 3  # day 3 ran both zones again


def test_pause_until_stops_and_holds_then_resume():
    probe = Probe(20.0)
    config = make_config(
        zones=[{"name": "z1", "valve": "v1", "group": "a", "soil_sensor": "p1"},
               {"name": "z2", "valve": "v2", "group": "a"}, {"name": "z3", "valve": "v3"},
               {"name": "z4", "valve": "v4", "group": "c"}],
        soil={"sensors": [{"name": "p1", "kind": "serial", "port": "loop://"}]},
        program={"programs": [daily("06:00", zones=(("z3", 10),))],
                 "zones": [{"zone": "z1", "moisture": {"start_below_pct": 25,
                                                       "skip_above_pct": 30}}]})
    bench = Bench(config, start=MON.replace(hour=5), probes={"z1": probe})
    probe.value = 28.0
    bench.start()
    bench.command("run_zone", zone="z3", duration_s=900)
    bench.run(60, step=5)
    until = (MON + timedelta(days=1, hours=12)).isoformat()
    assert bench.command("pause", until=until)[0][0] == "done"
    assert bench.open_zones() == []
    assert bench.events("run_finished")[0]["ended"] == "paused"
    probe.value = 20.0  # dry: a sensor run would start, but not while paused
    bench.run_until(MON + timedelta(days=1, hours=7))
    skipped = [(e["trigger"], e["reason"]) for e in bench.events("run_skipped")]
    # Monday's and Tuesday's 06:00 starts, and the dry probe's run (reported once).
    assert sorted(skipped) == [("schedule", "paused"), ("schedule", "paused"),
                               ("sensor", "paused")]
    assert bench.app.readings()["paused"] is True
    (paused,) = bench.events("paused")
    # the same instant, written in UTC (both kinds report a pause's end in UTC)
    assert paused["until"] == datetime.fromisoformat(until).astimezone(UTC).isoformat()
    assert bench.command("resume")[0][1].startswith("cleared: pause")
    assert bench.events("resumed")[0]["cleared"] == ["pause"]
    bench.run(120, step=10)
    (run,) = [e for e in bench.events("run_started") if e["trigger"] == "sensor"]
    assert run["zone"] == "z1"


def test_bad_commands_are_rejected_with_a_reason():
    bench = Bench(make_config(), start=MON.replace(hour=9)).start()
    assert bench.command("feed_now", feeder="f1", dose_g=10)[0][0] == "rejected"
    status, detail, _ = bench.command("run_zone", zone="z9", duration_s=60)[0]
    assert status == "rejected" and "z9" in detail
    status, detail, _ = bench.command("run_zone", zone="z1", duration_s=-5)[0]
    assert status == "rejected" and "duration_s" in detail
    status, detail, _ = bench.command("run_zone", zone="z1")[0]
    assert status == "rejected" and "duration_s" in detail
    assert bench.command("pause", until="yesterday")[0][0] == "rejected"
    past = (MON.replace(hour=8)).isoformat()
    assert "past" in bench.command("pause", until=past)[0][1]
    assert bench.command("rain_delay", hours=500)[0][0] == "rejected"
    assert bench.command("skip_next", zone="nope")[0][0] == "rejected"
    assert bench.open_zones() == [] and bench.events("run_started") == []


def test_pause_and_rain_delay_have_the_fish_feeders_limits():
    """One set of holds for both unit kinds (protocol.holds): a pause names its UTC
    offset and lasts at most 31 days; a rain delay is more than 0 hours."""
    bench = Bench(make_config(), start=MON.replace(hour=9)).start()
    naive = (MON + timedelta(days=1)).replace(tzinfo=None).isoformat()
    status, detail = bench.command("pause", until=naive)[0][:2]
    assert status == "rejected"  # refused by the protocol's model
    assert bench.codes[-1][2:] == (ReplyCode.BAD_PARAMS,
                                   {"field": "until", "reason_code": "value_error"})
    too_long = (MON + timedelta(days=33)).isoformat()
    assert bench.command("pause", until=too_long)[0][:2] == (
        "rejected", "pause refused: too_long (max_days 31)")
    assert bench.command("rain_delay", hours=0)[0][0] == "done"  # 0 ends a delay
    assert bench.app.status()["paused_until"] is None
    assert bench.app.readings()["rain_delay_h"] == 0.0


# -- clock trust ----------------------------------------------------------------------------
def test_unsynced_clock_skips_schedules_once_per_start_but_keeps_sensor_rules_and_limits():
    synced = {"ok": False}
    probe = Probe(30.0)
    config = make_config(
        outputs=outputs(v4=300),
        zones=[{"name": "z1", "valve": "v1", "group": "a", "soil_sensor": "p1"},
               {"name": "z2", "valve": "v2", "group": "a"}, {"name": "z3", "valve": "v3"},
               {"name": "z4", "valve": "v4", "group": "c"}],
        soil={"sensors": [{"name": "p1", "kind": "serial", "port": "loop://"}]},
        program={"programs": [daily("06:00", "18:00", zones=(("z1", 5), ("z3", 5)))],
                 "zones": [{"zone": "z1", "moisture": {"start_below_pct": 25,
                                                       "skip_above_pct": 32, "run_min": 5}}]})
    bench = Bench(config, start=MON, probes={"z1": probe}, clock_synced=lambda: synced["ok"])
    bench.start()
    bench.run_until(MON + timedelta(days=1))
    skipped = bench.events("run_skipped")
    assert [(e["reason"], e["zones"]) for e in skipped] == [("clock_not_synced", ["z1", "z3"])] * 2
    assert bench.events("run_started") == []
    probe.value = 22.0  # sensor rules keep working on an untrusted clock
    bench.run(300, step=30)
    assert [e["trigger"] for e in bench.events("run_started")] == ["sensor"]
    _, _, clamped = bench.command("run_zone", zone="z4", duration_s=900)[0]  # limits too
    assert clamped[0]["allowed"] == 300.0
    assert bench.command("pause", until=(MON + timedelta(days=2)).isoformat())[0][0] == \
        "rejected"  # time-bounded commands are refused
    synced["ok"] = True
    bench.run_until(MON + timedelta(days=1, hours=6, minutes=30))
    assert {e["program"] for e in bench.events("run_started") if e["trigger"] == "schedule"} \
        == {"daily"}



def test_run_zone_shorter_than_minimum_is_rejected_with_reason():
    from edge.irrigation.rules import MIN_RUN_S

    bench = Bench(make_config(outputs=outputs()), start=MON.replace(hour=9)).start()
    got = bench.command("run_zone", cmd_id="cmd-short", zone="z1", duration_s=int(MIN_RUN_S) - 1)
    status, detail, _ = got[-1]
    assert status == "rejected"
    # the protocol's run_zone model refuses it (so does the controller, before sending)
    assert detail == f"bad params: duration_s: greater_than_equal (ge {MIN_RUN_S})"
    assert bench.events("limit_clamped") == [] and not bench.is_on("v1")
