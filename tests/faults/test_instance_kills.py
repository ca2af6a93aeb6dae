"""Short instance-kill campaign: three ``serve`` instances on one PostgreSQL database and a
shared subscription, one SIGKILLed at random four times (the leader among them when the
dice say so) while units publish and a client sends commands and reads the device list:
every seq stored once, every command answered once, no request failed everywhere."""

from faults.instance_kills import run


def test_instance_kills_lose_double_and_fail_nothing(tmp_path, pg_url):
    report = run(workdir=tmp_path, cycles=4, max_s=85, seed=20261207, instances=3, units=2,
                 rate_per_s=20.0, database_url=pg_url, up_s=(1.5, 3.0), down_s=(0.0, 0.5))
    print("\n" + report.text())
    assert report.cycles_done == 4
    assert report.sent > 100
    assert (report.lost, report.doubled, report.waiting) == (0, 0, 0)
    assert report.stored == report.sent
    assert "0 more than once, 0 never" in report.figures["commands"]
    assert "0 failed on every instance" in report.figures["api_requests"]
    assert report.problems == []
    assert report.ok
