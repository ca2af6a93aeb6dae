"""Short controller-kill campaign: ``smartcity-controller serve`` SIGKILLed three times
while it ingests from real units; every seq stored once, every outbox drained."""

from faults.controller_kills import run


def test_controller_kills_lose_and_double_nothing(tmp_path):
    report = run(workdir=tmp_path, cycles=3, max_s=80, seed=20250314, units=2,
                 rate_per_s=20.0, up_s=(0.3, 1.0), down_s=(0.0, 0.5))
    print("\n" + report.text())
    assert report.cycles_done == 3
    assert report.sent > 100
    assert (report.lost, report.doubled, report.waiting) == (0, 0, 0)
    assert report.stored == report.sent
    assert report.problems == []
    assert report.ok
