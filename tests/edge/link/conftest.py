import pytest
from gpiozero.pins.mock import MockFactory
from link_helpers import FAST, LimitApp, ThreadedUnit, unit_config, unit_topic

from edge.daemon import build_unit
from protocol import Channel


@pytest.fixture
def make_unit(mosquitto, tmp_path):
    """Build and start a unit (LimitApp) against the test broker; closed at teardown.

    Calling it again with the same ``state_dir`` is a restart of the same unit; other
    keywords are config knobs (``link_helpers.unit_toml``)."""
    units = []

    def make(*, state_dir=None, synced=True, options=FAST, start=True, wait=True,
             broker=None, **knobs):
        config = unit_config(broker or mosquitto, state_dir or tmp_path / "state", **knobs)
        unit = build_unit(config, pin_factory=MockFactory(), app_class=LimitApp,
                          link_options=options, sync_check=lambda: synced)
        threaded = ThreadedUnit(unit)
        units.append(threaded)
        if start:
            threaded.start()
            if wait and not threaded.link.subscribed.wait(10):
                raise TimeoutError("unit did not subscribe within 10 s")
        return threaded

    yield make
    for unit in units:
        unit.close()


@pytest.fixture
def controller(mosquitto, mqtt_client_factory):
    """A test client playing the controller: sees the unit's replies, events, status."""
    client = mqtt_client_factory(mosquitto, client_id="test-controller")
    for channel in (Channel.CMD_REPLY, Channel.EVENT, Channel.STATUS, Channel.TELEMETRY):
        client.subscribe(unit_topic(channel))
    return client
