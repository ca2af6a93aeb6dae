"""Short instance-kill campaign: three ``serve`` instances on one PostgreSQL database and a
shared subscription, one SIGKILLed at random four times (the leader among them when the
dice say so) while units publish and a client sends commands and reads the device list:
every seq stored once, every command answered once, no request failed everywhere."""

from faults.instance_kills import run


def test_instance_kills_lose_double_and_fail_nothing(tmp_path, pg_url):
    report = run(workdir=tmp_path, cycles=4, max_s=120, seed=20261207, instances=3, units=2,
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


def test_two_instances_share_one_units_stream_and_its_commands(tmp_path, pg_url):
    """No kills: one unit's stream split between two instances by the shared
    subscription; every seq stored once, the outbox drained (the ack, computed in each
    batch's transaction, covers what either instance committed), each command answered
    once."""
    report = run(workdir=tmp_path, cycles=0, max_s=80, seed=7, instances=2, units=1,
                 rate_per_s=40.0, database_url=pg_url, warm_s=4.0)
    print("\n" + report.text())
    assert report.sent > 100
    assert (report.lost, report.doubled, report.waiting) == (0, 0, 0)
    per_instance = report.figures["per_instance"]
    assert "instance-0 0 " not in per_instance and "instance-1 0 " not in per_instance
    assert "0 more than once, 0 never" in report.figures["commands"]
    assert report.ok
