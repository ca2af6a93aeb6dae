"""Units that answer ``update`` commands as a real one would, over a real broker
(imported as ``fake_units``): a retained status with the version they run, an
``update_accepted`` reply, then ``update_applied`` (and the new version in their status)
or ``update_failed`` with a step and reason, each event with the next seq. The real
unit's side is ``edge``'s; these stand in for it in the controller's tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol.codec import decode, encode
from protocol.models import Command, Event, Status
from protocol.topics import topic


class FakeUnit:
    """``outcome``: "applied", "failed", "not_trusted" (refuses) or "silent";
    ``update_window``: the maintenance window its status reports (a real unit's default:
    any time)."""

    def __init__(self, host: str, port: int, opd: str, device_id: str, *, fw: str = "0.1.0",
                 outcome: str = "applied", update_window: str | None = "00:00-24:00"):
        self.opd, self.device_id, self.fw, self.outcome = opd, device_id, fw, outcome
        self.update_window = update_window
        self.commands: list[Command] = []
        self._seq = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-{device_id}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._connected = threading.Event()
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError(f"{device_id} could not connect")

    def _topic(self, channel: str) -> str:
        return topic(self.opd, self.device_id, channel)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(self._topic("cmd"), qos=1)
        self.status()
        self._connected.set()

    def status(self) -> None:
        self.client.publish(self._topic("status"), encode(Status(
            online=True, fw=self.fw, clock_synced=True, ts=datetime.now(UTC),
            update_window=self.update_window)), qos=1,
            retain=True)

    def _event(self, type_: str, details: dict) -> None:
        self._seq += 1
        self.client.publish(self._topic("event"), encode(Event(
            seq=self._seq, ts=datetime.now(UTC), type=type_, details=details)), qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        command = decode(Command, msg.payload)
        with self._lock:
            self.commands.append(command)
            self.answer(command)

    def answer(self, command: Command) -> None:
        now = datetime.now(UTC)
        version = command.params.version
        reply = lambda *a, **k: self.client.publish(  # noqa: E731
            self._topic("cmd/reply"), encode(command.reply(*a, **k)), qos=1)
        if self.outcome == "silent":
            return
        if self.outcome == "not_trusted":
            reply("rejected", now, code="update_not_trusted", params={"version": version})
            return
        reply("accepted", now, code="update_accepted",
              params={"version": version, "window": self.update_window or "00:00-24:00"})
        if self.outcome == "applied":
            previous, self.fw = self.fw, version
            self._event("update_applied", {"version": version, "previous": previous,
                                           "update_id": command.id, "duration_s": 12.5})
            self.status()
        else:
            self._event("update_failed", {
                "version": version, "running": self.fw, "update_id": command.id,
                "step": "health", "reason": "the MQTT link is not up", "rolled_back": True})

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
