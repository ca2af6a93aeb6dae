"""The unit's retained status: birth on connect, offline on a clean close."""

from link_helpers import statuses, unit_topic, wait_until

from edge.link import firmware_version
from protocol import Channel


def test_link_birth_status_says_online_with_fw_config_and_clock(make_unit, controller):
    unit = make_unit(synced=False)
    status = wait_until(lambda: [s for s in statuses(controller) if s.online], 10,
                        "online status")[-1]
    assert status.fw == firmware_version()
    assert status.config_version is None
    assert status.clock_synced is False
    assert status.app == "irrigation"
    assert status.outputs == {"valve1": False}
    assert unit.link.connected


def test_link_status_reports_zones_and_limits_the_offline_one_none(make_unit, controller):
    # what schedules and commands may name, with the local limits: the controller checks
    # against it before it stores or sends anything
    unit = make_unit()
    status = wait_until(lambda: [s for s in statuses(controller) if s.online], 10,
                        "online status")[-1]
    config = unit.app.config
    zones = config.zone_map()
    assert zones and set(status.limits.zones) == set(zones)
    for name, zone in zones.items():
        assert status.limits.zones[name].max_on_s == config.output(zone.valve).max_on_s
        assert status.limits.zones[name].soil_probe is (zone.soil_sensor is not None)
    assert status.limits.max_daily_water_min == config.limits.max_daily_water_min
    unit.close()
    offline = wait_until(lambda: [s for s in statuses(controller) if not s.online], 10,
                         "offline status")[-1]
    assert offline.limits is None


def test_link_status_is_retained_and_offline_after_clean_close(make_unit, mosquitto,
                                                               mqtt_client_factory):
    unit = make_unit()
    wait_until(lambda: unit.link.connected, 10, "connection")
    late = mqtt_client_factory(mosquitto, client_id="late-subscriber")
    late.subscribe(unit_topic(Channel.STATUS))
    first = wait_until(lambda: statuses(late), 5, "retained status")[0]
    assert first.online is True
    unit.close()
    later = mqtt_client_factory(mosquitto, client_id="later-subscriber")
    later.subscribe(unit_topic(Channel.STATUS))
    status = wait_until(lambda: statuses(later), 5, "retained status")[0]
    assert status.online is False
