"""Short unit-kill campaign: a real irrigation unit SIGKILLed mid-run three times (one
kill right as the valve opened, one restart resuming the run): outputs off within 2 s
of every restart, each interruption recorded at the controller exactly once."""

from faults.common import OUTPUTS_OFF_LIMIT_S
from faults.unit_kills import run


def test_unit_kills_outputs_off_and_interruptions_recorded_once(tmp_path):
    report = run(workdir=tmp_path, cycles=3, max_s=80, seed=20250314, resume_every=3,
                 delay_s=(0.2, 1.0))
    print("\n" + report.text())
    assert report.cycles_done == 3
    assert len(report.outputs_off_s) == 3
    assert report.max_outputs_off_s <= OUTPUTS_OFF_LIMIT_S
    assert report.figures["policies"] == {"drop": 2, "resume": 1}
    assert report.figures["run_interrupted"].startswith("3 at the controller for 3 kills")
    assert (report.lost, report.doubled) == (0, 0)
    assert report.problems == []
    assert report.ok
