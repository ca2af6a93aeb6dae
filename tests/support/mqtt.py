"""Small paho-mqtt 2.x test clients with a thread-safe inbox.

`MqttTestClient` wraps a `paho.mqtt.client.Client` built with
``CallbackAPIVersion.VERSION2``, so callbacks have one signature for MQTT 3.1.1
and 5: ``on_connect(client, userdata, flags, reason_code, properties)``,
``on_message(client, userdata, msg)``.  Reason codes are `ReasonCode` objects
for both protocols (paho converts 3.1.1 CONNACK codes), so a refused login
reads the same way: ``client.connack == "Not authorized"``.

Sessions:

* MQTT 5: ``clean_start=False`` plus ``session_expiry`` seconds (the Session
  Expiry Interval property).  With expiry 0 (the default) the broker drops the
  session at disconnect even if clean_start is False.
* MQTT 3.1.1: ``clean_start=False`` is sent as clean_session=False; such a
  session never expires in Mosquitto unless persistent_client_expiration is set.

TLS: ``tls_ca=<CA file>`` connects over TLS and verifies the broker's certificate
against that CA; connect to the broker's ``tls_address`` then.

The paho network thread runs the callbacks; test code waits with `wait_for`.
Auto-reconnect is off: a test reconnects explicitly by making a new client
with the same client id, which is what a restarted Pi unit does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
T = TypeVar("T")

PROTOCOLS: dict[str, MQTTProtocolVersion] = {
    "5": MQTTProtocolVersion.MQTTv5,
    "3.1.1": MQTTProtocolVersion.MQTTv311,
}


@dataclass(frozen=True)
class Received:
    """One delivered PUBLISH, copied out of paho's message object."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool


class MqttTestClient:
    """A connected-or-refused paho client whose callbacks feed a shared inbox.

    Everything the callbacks record (`messages`, `connack`, `subacks`,
    `pubacks`, `disconnects`) is guarded by one condition variable; read it from test code
    through `wait_for` or the snapshot helpers.
    """

    def __init__(
        self,
        *,
        client_id: str = "",
        protocol: str = "5",
        clean_start: bool = True,
        session_expiry: int | None = None,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 30,
        tls_ca: str | Path | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}")
        self.protocol = protocol
        self.client_id = client_id
        self.clean_start = clean_start
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        v5 = protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if v5 else clean_start,
            protocol=PROTOCOLS[protocol],
            reconnect_on_failure=False,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls_ca is not None:
            # TLS, verifying the broker's certificate (and host name) against this CA.
            self.client.tls_set(ca_certs=str(tls_ca))
        self._cond = threading.Condition()
        self.messages: list[Received] = []
        self.connack: ReasonCode | None = None
        self.session_present: bool | None = None
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.pubacks: dict[int, ReasonCode] = {}
        self.disconnects: list[ReasonCode] = []
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect

    # ------------------------------------------------------------- callbacks
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self.connack = reason_code
            self.session_present = flags.session_present
            self._cond.notify_all()
        log.debug("%s CONNACK %s session_present=%s", self.client_id, reason_code,
                  flags.session_present)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        received = Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), bool(msg.dup))
        with self._cond:
            self.messages.append(received)
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._cond:
            self.subacks[mid] = list(reason_codes)
            self._cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # QoS 1: PUBACK arrived.  MQTT 5 carries a reason (e.g. "Not authorized"
        # for an ACL-denied publish); MQTT 3.1.1 always reads as "Success".
        with self._cond:
            self.pubacks[mid] = reason_code
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self.disconnects.append(reason_code)
            self._cond.notify_all()
        log.debug("%s disconnected: %s", self.client_id, reason_code)

    # ------------------------------------------------------------ connection
    def connect(self, host: str, port: int, *, check: bool = True,
                timeout: float = DEFAULT_TIMEOUT) -> ReasonCode:
        """Connect, start the network thread and wait for the CONNACK.

        With ``check=True`` a refused CONNACK raises `AssertionError`; with
        ``check=False`` the reason code is returned for the test to inspect.
        """
        properties = None
        kwargs: dict[str, Any] = {}
        if self.protocol == "5":
            kwargs["clean_start"] = self.clean_start
            if self.session_expiry is not None:
                properties = Properties(PacketTypes.CONNECT)
                properties.SessionExpiryInterval = self.session_expiry
                kwargs["properties"] = properties
        self.client.connect(host, port, keepalive=self.keepalive, **kwargs)
        self.client.loop_start()
        self.wait_for(lambda: self.connack is not None, timeout, what="CONNACK")
        connack = self.connack
        assert connack is not None
        if check and connack.is_failure:
            raise AssertionError(f"{self.client_id or 'client'} refused: {connack}")
        return connack

    def close(self) -> None:
        """Disconnect (if still connected) and stop the network thread."""
        if self.client.is_connected():
            self.client.disconnect()
        self.client.loop_stop()

    # -------------------------------------------------------------- pub/sub
    def subscribe(self, topic: str, qos: int = 1, timeout: float = DEFAULT_TIMEOUT) -> list[ReasonCode]:
        """Subscribe and wait for the SUBACK; returns its reason codes (granted QoS or failure)."""
        rc, mid = self.client.subscribe(topic, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError(f"subscribe failed locally: {mqtt.error_string(rc)}")
        return self.wait_for(lambda: self.subacks.get(mid), timeout, what=f"SUBACK for {topic}")

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, *, retain: bool = False,
                wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> mqtt.MQTTMessageInfo:
        """Publish; with ``wait`` block until PUBACK (QoS 1) / PUBCOMP (QoS 2) / sent (QoS 0).

        The broker's verdict is in ``pubacks[info.mid]`` (see `puback`).
        """
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if wait:
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise TimeoutError(f"no acknowledgement for {topic} within {timeout}s")
        return info

    def puback(self, info: mqtt.MQTTMessageInfo) -> ReasonCode | None:
        """Reason code the broker acknowledged `info` with (None until acknowledged)."""
        with self._cond:
            return self.pubacks.get(info.mid)

    # ---------------------------------------------------------------- waiting
    def wait_for(self, predicate: Callable[[], T], timeout: float = DEFAULT_TIMEOUT,
                 what: str = "condition") -> T:
        """Wait until ``predicate()`` is truthy and return its value.

        The predicate runs with the inbox lock held, so it may read `messages`,
        `connack`, `subacks` directly.  Raises `TimeoutError` naming `what`.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.client_id or 'client'}: no {what} within {timeout}s")
                self._cond.wait(min(remaining, 0.1))

    def wait_for_messages(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Received]:
        """Wait until at least `count` messages arrived; returns a snapshot of all of them."""
        self.wait_for(lambda: len(self.messages) >= count, timeout, what=f"{count} messages")
        return self.received()

    def settle(self, quiet: float = 0.3, timeout: float = DEFAULT_TIMEOUT) -> list[Received]:
        """Wait until no new message arrived for `quiet` seconds; returns all messages.

        For "what arrives" checks where the expected count is unknown.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = len(self.messages)
            last_change = time.monotonic()
            while time.monotonic() - last_change < quiet and time.monotonic() < deadline:
                self._cond.wait(0.05)
                if len(self.messages) != seen:
                    seen, last_change = len(self.messages), time.monotonic()
            return list(self.messages)

    def received(self) -> list[Received]:
        with self._cond:
            return list(self.messages)

    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.received()]


MqttClientFactory = Callable[..., MqttTestClient]


def make_client_factory() -> tuple[MqttClientFactory, Callable[[], None]]:
    """Return ``(factory, close_all)``: the factory connects clients and remembers them.

    ``factory(broker, *, client_id="", protocol="5", clean_start=True,
    session_expiry=None, username=None, password=None, tls_ca=None, check=True,
    connect=True)``
    where ``broker`` is anything with ``host`` and ``port`` or a ``(host, port)`` pair.
    """
    clients: list[MqttTestClient] = []

    def factory(broker: Any, *, check: bool = True, connect: bool = True,
                timeout: float = DEFAULT_TIMEOUT, **options: Any) -> MqttTestClient:
        host, port = broker if isinstance(broker, tuple) else (broker.host, broker.port)
        client = MqttTestClient(**options)
        clients.append(client)
        if connect:
            client.connect(host, port, check=check, timeout=timeout)
        return client

    def close_all() -> None:
        for client in clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - teardown must reach every client
                log.exception("closing test client %s", client.client_id)

    return factory, close_all
