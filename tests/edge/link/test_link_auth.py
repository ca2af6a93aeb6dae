"""Username and password from the config's password file."""

import pytest
from link_helpers import wait_until

from edge.link import LinkError


@pytest.fixture
def locked_broker(mosquitto_factory):
    return mosquitto_factory(password_file_users={"taman-uji-01": "kata-sandi"},
                             allow_anonymous=False)


def test_link_logs_in_with_the_password_file(make_unit, locked_broker, tmp_path):
    secret = tmp_path / "mqtt.pass"
    secret.write_text("kata-sandi\n")
    unit = make_unit(broker=locked_broker, username="taman-uji-01",
                     password_file=secret)
    assert unit.link.connected


def test_link_with_a_wrong_password_stays_down_and_keeps_trying(make_unit, locked_broker,
                                                                tmp_path, caplog):
    secret = tmp_path / "mqtt.pass"
    secret.write_text("salah\n")
    unit = make_unit(broker=locked_broker, wait=False, username="taman-uji-01",
                     password_file=secret)
    wait_until(lambda: "refused the connection" in caplog.text, 10, "refusal logged")
    assert not unit.link.connected
    unit.link.event("alarm", code="test", message="kept while refused")
    assert unit.link.outbox.backlog >= 2  # started + alarm, waiting


def test_link_missing_password_file_is_a_clear_error(make_unit, locked_broker, tmp_path):
    unit = make_unit(broker=locked_broker, start=False, username="u",
                     password_file=tmp_path / "absent")
    with pytest.raises(LinkError, match="broker.password_file"):
        unit.link.start()
