"""Program starts near midnight: a sun offset that crosses midnight loses no start.

Two programs on two zones, each fine alone: a sun start moved over midnight by its
offset, and a clock start just on the other side of midnight. Every start of both runs,
none is skipped, none runs twice (Balikpapan: sunset+06:00 is about 00:15 the next day in
September, sunrise-06:00 about 23:51 the evening before in early November).
"""

from collections import Counter
from datetime import datetime

import pytest
from irrigation_harness import WITA, Bench, days, make_config


def two_programs(sun: str, clock: str):
    return make_config(program={"programs": [
        {"name": "sun", "start_times": [sun], "zones": [{"zone": "z1", "duration_min": 5}]},
        {"name": "clock", "start_times": [clock], "zones": [{"zone": "z3", "duration_min": 5}]},
    ]})


@pytest.mark.parametrize("sun,clock,start", [
    ("sunset+06:00", "00:05", datetime(2026, 9, 1, 12, 0, tzinfo=WITA)),
    ("sunrise-06:00", "23:55", datetime(2026, 10, 29, 12, 0, tzinfo=WITA)),
])
def test_irrigation_midnight_starts_of_two_programs_all_run(sun, clock, start):
    bench = Bench(two_programs(sun, clock), start=start).start()
    try:
        bench.run(days(4), step=60)
    finally:
        bench.close()
    started = Counter(e["program"] for e in bench.events("run_started"))
    finished = [e for e in bench.events("run_finished") if e["ended"] == "completed"]
    assert bench.events("run_skipped") == []
    assert started == {"sun": 4, "clock": 4}
    assert len(finished) == 8
    assert len({e["run_id"] for e in finished}) == 8
