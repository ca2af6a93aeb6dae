"""Fail closed inside the process: a broken step, and the output layer's max on-time."""

from datetime import datetime

import pytest
from irrigation_harness import WITA, Bench, make_config

from edge.errors import ConfigError

MON = datetime(2026, 9, 7, 9, 0, tzinfo=WITA)


def outputs(v3_max_s):
    return [{"name": n, "pin": p, "max_on_s": v3_max_s if n == "v3" else 3600}
            for n, p in (("v1", 17), ("v2", 27), ("v3", 22), ("v4", 23), ("master", 24))]


def test_a_failing_step_turns_everything_off_raises_an_alarm_and_the_loop_goes_on():
    bench = Bench(make_config(), start=MON).start()
    bench.command("run_zone", zone="z1", duration_s=600)
    bench.command("run_zone", zone="z3", duration_s=600)
    bench.run(60, step=5)
    assert bench.open_zones() == ["z1", "z3"]
    original = bench.app._check_soil

    def broken(now):
        raise RuntimeError("probe table corrupted")

    bench.app._check_soil = broken
    bench.run(30, step=5)  # fails on every step: one alarm, not one per step
    assert bench.open_zones() == [] and not bench.is_on("master")
    (alarm,) = bench.events("alarm")
    assert alarm["code"] == "engine_error" and "corrupted" in alarm["message"]
    assert {e["ended"] for e in bench.events("run_finished")} == {"error"}
    bench.app._check_soil = original  # the loop is still alive and works again
    assert bench.command("run_zone", zone="z4", duration_s=60)[0][0] == "accepted"
    bench.run(120, step=5)
    assert bench.events("run_finished")[-1]["ended"] == "completed"


def test_the_valves_max_on_time_cuts_a_run_the_app_failed_to_end():
    bench = Bench(make_config(outputs=outputs(600)), start=MON).start()
    bench.app._end_due_cycles = lambda now, mono: None  # a bug: cycles never end
    bench.command("run_zone", zone="z3", duration_s=300)
    bench.run(600, step=1)  # the valve opened 2 s in (after the master's pre_s)
    assert bench.is_on("v3")  # the app's own end was lost...
    bench.run(3, step=1)
    assert not bench.is_on("v3")  # ...the output layer cut it at max_on_s
    codes = [a["code"] for a in bench.events("alarm")]
    assert codes == ["max_on_time"]
    (fin,) = bench.events("run_finished")
    assert fin["ended"] == "max_on_time"
    assert bench.open_zones() == [] and not bench.is_on("master")


def test_remote_config_version_must_be_a_whole_number():
    bench = Bench(make_config(), start=MON).start()
    for bad in ("7", -1, 2.5, True):
        with pytest.raises(ConfigError, match="version"):
            bench.app.apply_remote_config(bad, {})
    assert bench.app.current_config_version == 0
