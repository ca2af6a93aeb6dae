"""Proves the real-broker harness (tests/support) and shows what Mosquitto persists.

The SIGKILL tests are the reason this file exists: they measure, rather than
assume, what a crashed broker keeps of QoS 1 messages queued for an offline
persistent session.  Short version (Mosquitto 2.0, mosquitto.conf(5)):

* Mosquitto writes its database only on clean shutdown, on SIGUSR1 and on
  autosave.  Messages it acknowledged after the last save die with a SIGKILL.
* After a save that happened after the PUBACKs, all of them come back, once.

So a PUBACK from the broker is not an end-to-end delivery guarantee, which
is why the project acknowledges commands end to end.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest
from support.broker import MosquittoBroker

TOPIC = "ponds/pond-07/feed"
SUBSCRIBER_ID = "pond-07"
SESSION_EXPIRY = 3600  # seconds; MQTT 5 ends the session at disconnect if 0
N = 200


def persistent_subscriber(mqtt_client_factory, broker, protocol):
    """A unit's client: fixed client id, session that outlives the connection."""
    return mqtt_client_factory(
        broker,
        client_id=SUBSCRIBER_ID,
        protocol=protocol,
        clean_start=False,
        session_expiry=SESSION_EXPIRY if protocol == "5" else None,
    )


def leave_offline_session(mqtt_client_factory, broker, protocol):
    """Subscribe with a persistent session at QoS 1, then go offline."""
    sub = persistent_subscriber(mqtt_client_factory, broker, protocol)
    assert sub.subscribe(TOPIC, qos=1)[0] == "Granted QoS 1"
    sub.close()


def publish_all(mqtt_client_factory, broker, n=N, protocol="5"):
    """Publish n QoS 1 messages and wait for every PUBACK; returns the payloads."""
    pub = mqtt_client_factory(broker, client_id="controller", protocol=protocol)
    payloads = [f"feed-{i:04d}".encode() for i in range(n)]
    infos = [pub.publish(TOPIC, p, qos=1, wait=False) for p in payloads]
    for info in infos:
        info.wait_for_publish(5)
        assert info.is_published()
    pub.close()
    return payloads


def collect(sub, expected):
    """Payloads delivered to `sub`: wait for `expected` (if that many come), then for quiet."""
    with contextlib.suppress(TimeoutError):
        sub.wait_for_messages(expected)
    return [m.payload for m in sub.settle(quiet=0.5)]  # extras would be duplicates


def assert_no_duplicates(payloads):
    dupes = {p: c for p, c in Counter(payloads).items() if c > 1}
    assert not dupes, f"delivered more than once: {dupes}"


def test_publish_subscribe_round_trip(mosquitto, mqtt_client_factory):
    assert mosquitto.port != 1883  # never the machine's own broker
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    sub = mqtt_client_factory(mosquitto, client_id="sub")
    assert sub.subscribe("parks/+/status", qos=1) == ["Granted QoS 1"]
    pub = mqtt_client_factory(mosquitto, client_id="pub", protocol="3.1.1")
    pub.publish("parks/park-03/status", b"valve=open", qos=1)

    [msg] = sub.wait_for_messages(1)
    assert (msg.topic, msg.payload, msg.qos) == ("parks/park-03/status", b"valve=open", 1)
    assert "Received PUBLISH from pub" in mosquitto.log_text()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_qos1_queue_survives_sigkill_after_autosave(mosquitto, mqtt_client_factory, protocol):
    """Publishes QoS 1 to a persistent session, SIGKILLs and restarts the broker,
    and shows what arrives: after an autosave that followed the PUBACKs, all of it."""
    leave_offline_session(mqtt_client_factory, mosquitto, protocol)
    sent = publish_all(mqtt_client_factory, mosquitto, protocol=protocol)

    # Every PUBACK is in; the next autosave (about every 2 s with
    # autosave_interval 1) therefore contains all N queued messages.
    mosquitto.wait_for_save(mosquitto.persistence_snapshot(), timeout=5)
    port = mosquitto.port
    mosquitto.kill()
    mosquitto.restart()
    assert mosquitto.port == port

    sub = persistent_subscriber(mqtt_client_factory, mosquitto, protocol)
    assert sub.session_present
    got = collect(sub, N)
    print(f"\n[MQTT {protocol}] SIGKILL after autosave: {len(got)}/{N} queued messages survived")
    assert_no_duplicates(got)
    assert set(got) == set(sent)


@pytest.mark.parametrize("autosave_on_changes", [False, True], ids=["timed-autosave", "autosave-on-changes"])
def test_sigkill_before_autosave_may_lose_acknowledged_messages(
    mosquitto_factory, mqtt_client_factory, autosave_on_changes
):
    """The flip side: messages PUBACKed after the last save may be lost by a SIGKILL.

    The session itself is saved first (SIGUSR1), so what is measured here is only
    the messages.  Timed autosave: the burst fits between two saves, so typically
    none survive.  autosave_on_changes with a threshold of 1: the broker saves
    after each loop iteration that changed anything, so most or all survive, but
    the PUBACK for the last batch still goes out before its save.
    """
    broker = mosquitto_factory(autosave_on_changes=autosave_on_changes)
    leave_offline_session(mqtt_client_factory, broker, "5")
    broker.save_now()
    sent = publish_all(mqtt_client_factory, broker)
    broker.kill()  # immediately after the last PUBACK
    broker.restart()

    sub = persistent_subscriber(mqtt_client_factory, broker, "5")
    assert sub.session_present  # saved before the burst
    got = collect(sub, 0)
    mode = "autosave_on_changes" if autosave_on_changes else "timed autosave"
    print(f"\n[{mode}] SIGKILL right after the PUBACKs: {len(got)}/{N} survived")
    assert_no_duplicates(got)
    assert set(got) <= set(sent)


def test_queue_survives_graceful_stop(mosquitto_factory, mqtt_client_factory):
    """SIGTERM makes Mosquitto save on the way out: everything queued comes back, once.

    Autosave is off (interval 0), so the shutdown save is the only one there is.
    """
    broker = mosquitto_factory(autosave_interval=0)
    leave_offline_session(mqtt_client_factory, broker, "5")
    sent = publish_all(mqtt_client_factory, broker)
    broker.stop()
    assert "Saving in-memory database" in broker.log_text()
    broker.restart()

    sub = persistent_subscriber(mqtt_client_factory, broker, "5")
    assert sub.session_present
    got = collect(sub, N)
    print(f"\n[graceful stop] {len(got)}/{N} queued messages survived")
    assert_no_duplicates(got)
    assert set(got) == set(sent)


UNITS = {"park-03": "park-03-secret", "pond-07": "pond-07-secret"}
# Each unit may use only its own subtree.  Mosquitto 2 denies everything an
# acl_file does not grant, including to anonymous clients.
ACL = "pattern readwrite units/%u/#\n"


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_password_file_and_acl(mosquitto_factory, mqtt_client_factory, protocol):
    broker = mosquitto_factory(password_file_users=UNITS, acl=ACL, allow_anonymous=False)

    def unit(name, password=None, client_id=None, check=True):
        return mqtt_client_factory(broker, client_id=client_id or name, protocol=protocol,
                                   username=name, password=password or UNITS[name], check=check)

    wrong = unit("park-03", password="guess", client_id="intruder", check=False)
    assert wrong.connack.is_failure and wrong.connack == "Not authorized"
    anonymous = mqtt_client_factory(broker, client_id="anon", protocol=protocol, check=False)
    assert anonymous.connack == "Not authorized"

    park = unit("park-03")
    park_monitor = unit("park-03", client_id="park-03-monitor")
    snoop = unit("pond-07")
    park_monitor.subscribe("units/park-03/#", qos=1)
    # Mosquitto 2.0 grants the SUBACK and applies the read ACL per message.
    assert snoop.subscribe("units/park-03/#", qos=1) == ["Granted QoS 1"]

    park.publish("units/park-03/status", b"watering", qos=1)
    assert park_monitor.wait_for_messages(1)[0].payload == b"watering"
    assert snoop.settle(quiet=0.3) == []  # delivered to park-03's reader, not to pond-07

    info = snoop.publish("units/park-03/cmd", b"valve=close", qos=1)
    if protocol == "5":  # only MQTT 5 PUBACKs can say no; 3.1.1 drops silently
        assert snoop.puback(info) == "Not authorized"
    assert [m.payload for m in park_monitor.settle(quiet=0.3)] == [b"watering"]


def test_password_file_written_without_mosquitto_passwd(tmp_path, mqtt_client_factory):
    """The pure-Python $7$ (PBKDF2-SHA512) password lines are accepted by Mosquitto."""
    with MosquittoBroker(password_users={"park-03": "pw"}, allow_anonymous=False,
                         workdir=tmp_path, use_mosquitto_passwd=False) as broker:
        assert (tmp_path / "passwd").read_text().startswith("park-03:$7$101$")
        ok = mqtt_client_factory(broker, client_id="ok", username="park-03", password="pw")
        assert ok.connack == "Success"
        bad = mqtt_client_factory(broker, client_id="bad", username="park-03", password="no",
                                  check=False)
        assert bad.connack == "Not authorized"
        ok.close()
    assert not broker.is_running()
