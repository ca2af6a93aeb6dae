"""Weeks of a unit's history, made by the field simulators and stored through the ingest path.

The daemons are the real ``IrrigationApp`` and ``FishFeederApp`` in the park and pond
simulators of ``edge.sim`` (mock pins, a ``VirtualClock``). What they publish goes through
`WireRecorder`, which stands where the unit's MQTT link stands: each event and sample
becomes a protocol message with the unit's next seq, is encoded and decoded as on the
wire, and is committed with ``Store.commit_batch`` exactly as the ingest commits what it
receives. The unit's status (online, offline as its Last Will, the config version it
applied) goes the same way, so the controller's status history (uptime) is filled too.

While a simulated outage lasts, the unit keeps working on its own (local autonomy); what
it publishes then reaches the controller when the outage ends, as from its outbox.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from controller.store import Inbound, Store
from edge.clock import VirtualClock
from edge.config import parse_config
from edge.fish_feeder.app import FishFeederApp
from edge.hardware import make_pin_factory
from edge.irrigation.app import IrrigationApp
from edge.sim.fish_feeder import FishFeederSim
from edge.sim.irrigation import IrrigationField, SoilModel, Weather
from edge.state import StateStore
from protocol.codec import decode, encode
from protocol.models import Event, Status, Telemetry
from protocol.topics import Channel

ROOT = Path(__file__).resolve().parents[3]
IRRIGATION_EXAMPLE = ROOT / "config" / "irrigation.example.toml"
FW = "sim-1.0"


@dataclass(frozen=True)
class Outage:
    """The unit's link is down from ``start`` to ``end`` (aware datetimes)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class ConfigChange:
    """At ``at`` the controller's desired config ``version`` reaches the unit."""

    at: datetime
    version: int
    body: dict


def _plain(details: dict) -> dict:
    return json.loads(json.dumps(details, default=str, allow_nan=False))


@dataclass
class WireRecorder:
    """An app's publisher seam that records what the unit would put on the wire."""

    clock: VirtualClock
    opd: str
    device_id: str
    app_kind: str
    outages: Sequence[Outage] = ()
    items: list[tuple[datetime, int, Inbound]] = field(default_factory=list)
    seq: int = 0
    config_version: int | None = None
    outputs: Any = None

    def _arrives(self, ts: datetime) -> datetime:
        for outage in self.outages:
            if outage.start <= ts < outage.end:
                return outage.end
        return ts

    def _add(self, channel: Channel, message, received_at: datetime, order: int = 1) -> None:
        wire = decode(channel, encode(message))  # exactly what the ingest would read
        self.items.append((received_at, order, Inbound(self.opd, self.device_id, channel,
                                                       wire, received_at)))

    def event(self, type: str, **details: Any) -> None:
        self.seq += 1
        now = self.clock.now()
        self._add(Channel.EVENT, Event(seq=self.seq, ts=now, type=type,
                                       details=_plain(details)), self._arrives(now))

    def telemetry(self, readings: dict[str, Any], outputs: dict[str, bool]) -> None:
        self.seq += 1
        now = self.clock.now()
        self._add(Channel.TELEMETRY, Telemetry(seq=self.seq, ts=now, readings=readings,
                                               outputs=outputs), self._arrives(now))

    def status(self, online: bool, at: datetime) -> None:
        outputs = self.outputs.states() if (online and self.outputs is not None) else {}
        self._add(Channel.STATUS, Status(online=online, fw=FW, ts=at, app=self.app_kind,
                                         config_version=self.config_version,
                                         clock_synced=True, outputs=outputs), at, order=0)

    def link_statuses(self, start: datetime, end: datetime) -> None:
        """Online at ``start``; offline (the Last Will) and online again around outages."""
        self.status(True, start)
        for outage in self.outages:
            if start <= outage.start < end:
                self.status(False, outage.start)
                self.status(True, outage.end)

    def inbound(self) -> list[Inbound]:
        """Everything in the order the controller receives it (statuses first on ties)."""
        return [item for _, _, item in sorted(self.items, key=lambda x: (x[0], x[1]))]


def _apply_due(app, recorder: WireRecorder, changes: list[ConfigChange]) -> None:
    while changes and changes[0].at <= recorder.clock.now():
        change = changes.pop(0)
        app.apply_remote_config(change.version, change.body)
        recorder.config_version = change.version
        recorder.event("config_applied", version=change.version)
        recorder.status(True, recorder.clock.now())


# --------------------------------------------------------------------------- irrigation

def irrigation_config(device_id: str, opd: str, name: str):
    """The example park (4 zones, pump, rain sensor, flow meter, soil probes), faster:
    telemetry every 15 min, soil read every 5 min."""
    data = tomllib.loads(IRRIGATION_EXAMPLE.read_text())
    data["unit"] = {"device_id": device_id, "opd": opd, "name": name}
    data["telemetry"]["interval_s"] = 900
    data["soil"]["poll_s"] = 300
    return parse_config(data, f"sim:{device_id}")


def example_program() -> dict:
    """The example park's own program (the ``[program]`` section) as a desired config."""
    return tomllib.loads(IRRIGATION_EXAMPLE.read_text())["program"]


def simulate_irrigation(device_id: str, opd: str, start: datetime, days: float, *,
                        name: str = "", seed: int = 11, outages: Iterable[Outage] = (),
                        changes: Iterable[ConfigChange] = (),
                        leaks: Iterable[tuple[datetime, datetime, float]] = (),
                        step_s: float = 300.0, flow_tick_s: float = 10.0) -> list[Inbound]:
    """Run the example park for ``days`` from ``start``; returns what the unit sent."""
    config = irrigation_config(device_id, opd, name or device_id)
    clock = VirtualClock(start)
    weather = Weather.generate(start, int(days) + 1, seed=seed, tz=start.tzinfo)
    soil = {z.name: SoilModel(moisture_pct=29.0, area_m2=z.area_m2 or 200.0)
            for z in config.zones}
    park = IrrigationField(config, clock, weather=weather, seed=seed, soil=soil,
                           flow_tick_s=flow_tick_s)
    recorder = WireRecorder(clock, opd, device_id, "irrigation", tuple(outages))
    app = IrrigationApp(config, pin_factory=park.pin_factory, clock=clock, publisher=recorder,
                        state=StateStore(":memory:"), soil_readers=park.readers())
    recorder.outputs = app.outputs
    park.connect(app)
    end = start + timedelta(days=days)
    recorder.link_statuses(start, end)
    pending = sorted(changes, key=lambda c: c.at)
    leaks = sorted(leaks)
    try:
        recorder.event("started", app="irrigation", fw=FW, outputs=app.outputs.states())
        _apply_due(app, recorder, pending)
        app.start()
        while clock.now() < end:
            clock.advance(min(step_s, (end - clock.now()).total_seconds()))
            park.sync()
            now = clock.now()
            lpm = next((x for a, b, x in leaks if a <= now < b), 0.0)
            if lpm != park.leak_lpm:
                park.set_leak(lpm)
            _apply_due(app, recorder, pending)
            app.tick()
    finally:
        app.close()
    return recorder.inbound()


# --------------------------------------------------------------------------- fish feeder

FISH_TOML = """
kind = "fish_feeder"
state_dir = "/nonexistent"

[unit]
device_id = "{device_id}"
opd = "{opd}"
name = "{name}"

[telemetry]
interval_s = 900

[water]
poll_s = 300

[interlocks]
postpone_window_s = 7200

[[outputs]]
name = "auger-nila"
pin = 17
max_on_s = 240

[[outputs]]
name = "auger-lele"
pin = 27
max_on_s = 240

[[inputs]]
name = "rot-nila"
pin = 5
kind = "pulse"

[[inputs]]
name = "rot-lele"
pin = 6
kind = "pulse"

[[sensors]]
name = "do-nila"
driver = "ezo"
port_url = "sim://do-nila"
quantity = "do_mg_l"

[[sensors]]
name = "suhu-nila"
driver = "ezo"
port_url = "sim://suhu-nila"
quantity = "temp_c"

[[sensors]]
name = "do-lele"
driver = "ezo"
port_url = "sim://do-lele"
quantity = "do_mg_l"

[[sensors]]
name = "suhu-lele"
driver = "ezo"
port_url = "sim://suhu-lele"
quantity = "temp_c"

[[feeders]]
name = "pakan-nila"
pond = "kolam-nila"
motor = "auger-nila"
rate_g_per_s = 18.0
max_dose_g = 3500
max_daily_g = 10000
rotation_input = "rot-nila"
g_per_pulse = 3.0

[feeders.hopper]
driver = "ultrasonic"
trigger_pin = 23
echo_pin = 24
full_distance_m = 0.12
empty_distance_m = 0.85
capacity_g = 50000

[[feeders]]
name = "pakan-lele"
pond = "kolam-lele"
motor = "auger-lele"
rate_g_per_s = 18.0
max_dose_g = 3000
max_daily_g = 8000
rotation_input = "rot-lele"
g_per_pulse = 3.0

[[ponds]]
name = "kolam-nila"
species = "nila"
sensors = ["do-nila", "suhu-nila"]

[ponds.plan]
times = ["07:00", "11:00", "16:00"]
fish_count = 3000
avg_weight_g = 80

[[ponds]]
name = "kolam-lele"
species = "lele"
sensors = ["do-lele", "suhu-lele"]

[ponds.plan]
times = ["08:00", "17:00"]
doses_g = [900, 1100]
"""


def fish_config(device_id: str, opd: str, name: str):
    """Two ponds (nila with a hopper gauge, lele), oxygen and temperature probes."""
    data = tomllib.loads(FISH_TOML.format(device_id=device_id, opd=opd, name=name))
    return parse_config(data, f"sim:{device_id}")


def fish_plan(avg_weight_g: float, fish_count: int = 3000) -> dict:
    """A desired config: kolam-nila fed by biomass (count x average weight)."""
    return {"ponds": {"kolam-nila": {"plan": {
        "times": ["07:00", "11:00", "16:00"], "fish_count": fish_count,
        "avg_weight_g": avg_weight_g}}}}


def simulate_fish(device_id: str, opd: str, start: datetime, days: float, *, name: str = "",
                  seed: int = 3, outages: Iterable[Outage] = (),
                  changes: Iterable[ConfigChange] = (), cloudy_days: Iterable[int] = (),
                  step_s: float = 300.0, fast_step_s: float = 2.0) -> list[Inbound]:
    """Run two ponds for ``days`` from ``start``; cloudy days keep oxygen low (feedings
    postponed). The hopper is refilled when it runs low, as a pond keeper would."""
    config = fish_config(device_id, opd, name or device_id)
    clock = VirtualClock(start)
    sim = FishFeederSim(config, clock, seed=seed)
    recorder = WireRecorder(clock, opd, device_id, "fish_feeder", tuple(outages))
    app = FishFeederApp(config, pin_factory=make_pin_factory("mock"), clock=clock,
                        publisher=recorder, state=StateStore(":memory:"), **sim.app_kwargs())
    recorder.outputs = app.outputs
    sim.attach(app)
    recorder.link_statuses(start, start + timedelta(days=days))
    pending = sorted(changes, key=lambda c: c.at)
    cloudy = set(cloudy_days)
    try:
        recorder.event("started", app="fish_feeder", fw=FW, outputs=app.outputs.states())
        _apply_due(app, recorder, pending)
        app.start()
        for hour in range(round(days * 24)):
            for pond in sim.ponds.values():
                pond.photosynthesis = 0.05 if hour // 24 in cloudy else 1.0
            for feeder in sim.feeders.values():
                if feeder.hopper_g < 15_000:
                    feeder.hopper_g = 45_000.0
            sim.run(3600, step_s=step_s, fast_step_s=fast_step_s)
            _apply_due(app, recorder, pending)
    finally:
        app.close()
    return recorder.inbound()


def last_will(opd: str, device_id: str, at: datetime, app: str) -> Inbound:
    """The offline status the broker publishes for a unit whose link dropped at ``at``."""
    status = Status(online=False, fw=FW, ts=at, app=app, clock_synced=True)
    return Inbound(opd, device_id, Channel.STATUS, decode(Channel.STATUS, encode(status)), at)


# --------------------------------------------------------------------------- storing

def store_history(store: Store, items: Sequence[Inbound], batch: int = 500) -> int:
    """Commit ``items`` in batches through ``Store.commit_batch``; returns how many stored."""
    stored = 0
    for i in range(0, len(items), batch):
        result = store.commit_batch(items[i:i + batch])
        assert not result.rejected, result.rejected[:3]
        stored += sum(result.stored.values())
    return stored
