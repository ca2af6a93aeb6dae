"""The edge bench's valve timing: a unit daemon whose mock pins log each change with its
time, ``run_zone`` commands sent over MQTT, and how long each output was really on
against what the config asks."""

from __future__ import annotations

import sys
import threading
import time
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import wait_until
from bench.edge_unit import spawn, stop, unit_config

RUN_S = 10  # the shortest manual run the irrigation app accepts (rules.MIN_RUN_S)
EDGE_SCRIPT = Path(__file__).resolve().with_name("edge.py")
"""The bench's entry point, which runs ``unit_process`` with ``--unit-process``."""


def unit_process(config: str, pin_log: str) -> int:
    """``smartcity-edge run --pin-factory mock``, with mock pins that log each change as
    ``monotonic_time pin state``."""
    from gpiozero.pins.mock import MockFactory, MockPin

    import edge.hardware
    from edge.cli import main

    log = open(pin_log, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    class RecordingPin(MockPin):
        def _change_state(self, value):
            changed = super()._change_state(value)
            if changed and self._function == "output":
                log.write(f"{time.monotonic():.6f} {self.info.name} {int(value)}\n")
            return changed

    real = edge.hardware.make_pin_factory
    edge.hardware.make_pin_factory = lambda name: (
        MockFactory(pin_class=RecordingPin) if name == "mock" else real(name))
    return main(["run", "--config", config, "--pin-factory", "mock"])

# --------------------------------------------------------------------------- 2. valve timing

class Commander:
    """Sends commands to one unit over MQTT and waits for its final replies."""

    def __init__(self, broker, opd: str, device: str):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        from protocol import Channel, topic

        self.cmd_topic = topic(opd, device, Channel.CMD)
        self.status_topic = topic(opd, device, Channel.STATUS)
        self.replies: dict[str, list[str]] = {}
        self.online = threading.Event()
        self.changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"bench-commander-{uuid.uuid4().hex[:6]}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(
            [(topic(opd, device, Channel.CMD_REPLY), 1), (self.status_topic, 1)])
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        from protocol import CommandReply, Status, decode
        if msg.topic == self.status_topic:
            if decode(Status, msg.payload).online:
                self.online.set()
            return
        reply = decode(CommandReply, msg.payload)
        with self.changed:
            self.replies.setdefault(reply.id, []).append(reply.status.value)
            self.changed.notify_all()

    def send(self, action: str, **params) -> str:
        from protocol import Command, encode
        now = datetime.now(UTC)
        command = Command(id=uuid.uuid4().hex, issued_at=now,
                          expires_at=now + timedelta(minutes=5), action=action, params=params)
        self.client.publish(self.cmd_topic, encode(command), qos=1)
        return command.id

    def wait_final(self, command_ids: list[str], timeout: float) -> dict[str, list[str]]:
        final = {"done", "failed", "rejected", "expired"}
        deadline = time.monotonic() + timeout
        with self.changed:
            while not all(final & set(self.replies.get(i, [])) for i in command_ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = {i: self.replies.get(i) for i in command_ids}
                    raise TimeoutError(f"no final reply: {got}")
                self.changed.wait(left)
        return {i: self.replies[i] for i in command_ids}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def on_intervals(lines: list[str], pins: set[str]) -> dict[str, list[tuple[float, float]]]:
    """pin -> [(on_at, off_at)] of ``pins`` from pin log lines."""
    opened: dict[str, float] = {}
    out: dict[str, list[tuple[float, float]]] = {}
    for line in lines:
        t, pin, state = line.split()
        if pin not in pins:
            continue
        if state == "1":
            opened[pin] = float(t)
        elif pin in opened:
            out.setdefault(pin, []).append((opened.pop(pin), float(t)))
    return out


def valve_timing(workdir: Path, broker, rounds: list[list[str]], master: bool) -> dict:
    config_path = unit_config(workdir, broker, "timing-unit", master=master)
    config = tomllib.loads(config_path.read_text())
    pins = {f"GPIO{o['pin']}": o["name"] for o in config["outputs"]}
    valve_of = {z["name"]: z["valve"] for z in config["zones"]}
    m = config.get("master")
    pre_s, post_s = (m["pre_s"], m["post_s"]) if m else (0.0, 0.0)
    pin_log = workdir / "timing-pins.log"
    proc = spawn([sys.executable, str(EDGE_SCRIPT), "--unit-process",
                  str(config_path), str(pin_log)], workdir / "timing-unit.log")
    commander = Commander(broker, config["unit"]["opd"], config["unit"]["device_id"])
    rows, replies = [], {}
    try:
        if not commander.online.wait(30):
            raise TimeoutError("the timing unit did not come online")
        for zones in rounds:
            mark = len(pin_log.read_text().splitlines()) if pin_log.exists() else 0
            ids = [commander.send("run_zone", zone=z, duration_s=RUN_S) for z in zones]
            replies |= commander.wait_final(ids, timeout=RUN_S + pre_s + post_s + 30)
            wait_until(lambda: not _any_on(pin_log, pins), 10, "every output off")
            lines = pin_log.read_text().splitlines()[mark:] if pin_log.exists() else []
            for pin, spans in on_intervals(lines, set(pins)).items():
                name = pins[pin]
                expected = RUN_S if name == (m or {}).get("output") else \
                    RUN_S + pre_s + post_s
                zone = next((z for z, v in valve_of.items() if v == name), None)
                for on, off in spans:
                    rows.append({"output": name, "zone": zone, "on_s": off - on,
                                 "expected_s": expected,
                                 "error_ms": 1000 * abs(off - on - expected)})
    finally:
        commander.close()
        stop(proc)
    return {"rows": rows, "replies": replies}


def _any_on(pin_log: Path, pins: dict[str, str]) -> bool:
    state: dict[str, str] = {}
    lines = pin_log.read_text().splitlines() if pin_log.exists() else []
    for line in lines:
        _, pin, value = line.split()
        if pin in pins:
            state[pin] = value
    return "1" in state.values()
