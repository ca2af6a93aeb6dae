"""Short broker-kill campaign: Mosquitto SIGKILLed three times under load from real units,
the controller in its own process; nothing lost, nothing doubled, the ack catches up."""

from faults.broker_kills import run


def test_broker_kills_lose_and_double_nothing(tmp_path):
    report = run(workdir=tmp_path, cycles=3, max_s=80, seed=20250314, units=2,
                 rate_per_s=20.0, up_s=(0.4, 1.0), down_s=(0.05, 0.3))
    print("\n" + report.text())
    assert report.cycles_done == 3
    assert report.sent > 100  # under load: the units published between the kills
    assert (report.lost, report.doubled, report.waiting) == (0, 0, 0)
    assert report.stored == report.sent
    assert report.problems == []
    assert report.ok
