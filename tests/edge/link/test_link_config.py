"""Desired config: newer versions applied and kept over a restart, bad ones rejected."""

from link_helpers import desired_config, events, statuses, unit_topic, wait_until
from pydantic import BaseModel, ConfigDict, Field

from protocol import Channel


def push(controller, payload):
    controller.publish(unit_topic(Channel.CONFIG), payload, retain=True)


def test_link_newer_config_is_applied_and_survives_restart(make_unit, controller, tmp_path):
    state_dir = tmp_path / "unit"
    unit = make_unit(state_dir=state_dir)
    push(controller, desired_config(3, {"interval_min": 15}))
    wait_until(lambda: unit.link.config_version == 3, 10, "config 3 applied")
    assert unit.app.body == {"interval_min": 15}
    [applied] = wait_until(lambda: events(controller, "config_applied"), 10, "config_applied")
    assert applied.details == {"version": 3}
    wait_until(lambda: any(s.config_version == 3 and s.online for s in statuses(controller)),
               10, "status with config 3")

    unit.close()
    unit = make_unit(state_dir=state_dir)
    assert unit.link.config_version == 3
    assert unit.app.body == {"interval_min": 15}
    # the retained config 3 arrives again and is not applied twice
    wait_until(lambda: any(s.config_version == 3 and s.online
                           for s in statuses(controller)[1:]), 10, "status after restart")
    assert len(events(controller, "config_applied")) == 1  # once per seq
    assert unit.link.counters["configs_applied"] == 0

    push(controller, desired_config(2, {"interval_min": 99}))  # older: ignored
    push(controller, desired_config(4, {"interval_min": 20}))
    wait_until(lambda: unit.link.config_version == 4, 10, "config 4 applied")
    assert unit.app.body == {"interval_min": 20}


def test_link_invalid_config_is_rejected_and_old_one_stays(make_unit, controller):
    unit = make_unit()
    push(controller, desired_config(1, {"interval_min": 10}))
    wait_until(lambda: unit.link.config_version == 1, 10, "config 1 applied")

    push(controller, desired_config(2, {"interval_min": 0}))
    [rejected] = wait_until(lambda: events(controller, "config_rejected"), 10,
                            "config_rejected")
    assert rejected.details["version"] == 2
    assert rejected.details["errors"] == ["interval_min: must be 1..1440"]
    assert rejected.details["kept_version"] == 1
    assert unit.link.config_version == 1
    assert unit.app.body == {"interval_min": 10}


def test_link_malformed_config_is_reported_and_unit_carries_on(make_unit, controller):
    unit = make_unit()
    push(controller, b'{"v":1,"version":5,"body":"not an object"}')
    [rejected] = wait_until(lambda: events(controller, "config_rejected"), 10,
                            "config_rejected")
    assert rejected.details["version"] == 5
    assert "body" in rejected.details["errors"][0]
    assert unit.link.counters["bad_configs"] == 1

    push(controller, b"{{{ not json")
    wait_until(lambda: len(events(controller, "config_rejected")) == 2, 10, "second rejection")
    assert events(controller, "config_rejected")[1].details["version"] is None

    push(controller, desired_config(6, {"interval_min": 30}))
    wait_until(lambda: unit.link.config_version == 6, 10, "config 6 applied")
    assert unit.app.body == {"interval_min": 30}


def test_link_rejected_config_is_not_reported_again_on_reconnect(make_unit, controller,
                                                                tmp_path):
    state_dir = tmp_path / "unit"
    unit = make_unit(state_dir=state_dir)
    push(controller, desired_config(7, {"interval_min": -1}))
    wait_until(lambda: events(controller, "config_rejected"), 10, "config_rejected")
    unit.close()
    unit = make_unit(state_dir=state_dir)
    wait_until(lambda: len([s for s in statuses(controller) if s.online]) >= 2, 10,
               "second online status")
    controller.settle(0.5)
    assert len(events(controller, "config_rejected")) == 1  # once per seq
    assert unit.link.counters["configs_rejected"] == 0  # this run: nothing new rejected
    assert unit.link.config_version is None


class IntervalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval_min: int = Field(ge=1, le=1440)


def test_link_hands_the_app_its_schedule_model_decoded_once(make_unit, controller):
    unit = make_unit()
    unit.app.schedule_model = IntervalBody  # as IrrigationApp and FishFeederApp declare theirs
    got = []
    unit.app.apply_remote_config = lambda version, body: got.append((version, body))
    push(controller, desired_config(4, {"interval_min": "often"}))
    [rejected] = wait_until(lambda: events(controller, "config_rejected"), 10,
                            "config_rejected")
    assert rejected.details["version"] == 4
    assert rejected.details["errors"][0].startswith("interval_min: ")
    assert got == []  # a schedule that does not fit never reaches the app
    push(controller, desired_config(5, {"interval_min": 20}))
    wait_until(lambda: unit.link.config_version == 5, 10, "config 5 applied")
    assert got == [(5, IntervalBody(interval_min=20))]
