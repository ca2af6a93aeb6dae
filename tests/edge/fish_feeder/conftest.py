"""A fish-feeder unit on mock pins, its field simulator, and a virtual clock.

``unit_config(**changes)`` builds a valid config dict (two ponds: nila with EZO probes,
a pulse-confirmed auger and an ultrasonic hopper; vaname with a Modbus probe and a
weight-confirmed spinner on a load cell). ``harness(...)`` wires the real
``FishFeederApp`` to ``FishFeederSim`` on a ``VirtualClock``.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from edge.clock import VirtualClock
from edge.config import parse_config
from edge.fish_feeder.app import FishFeederApp
from edge.hardware import make_pin_factory
from edge.publisher import MemoryPublisher
from edge.sim.fish_feeder import FishFeederSim
from edge.state import StateStore
from protocol.models import ReplyCode, reply_text

MIDNIGHT_WITA = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)  # 2026-03-02 00:00 in Balikpapan

BASE = {
    "kind": "fish_feeder",
    "state_dir": "/tmp/unused",
    "unit": {"device_id": "dp3-test-01", "opd": "dp3"},
    "hardware": {"pin_factory": "mock"},
    "telemetry": {"interval_s": 600},
    "water": {"poll_s": 300},
    "interlocks": {"postpone_window_s": 7200, "stale_policy": "reduce",
                   "stale_reduce_factor": 0.5},
    "outputs": [
        {"name": "auger-nila", "pin": 17, "max_on_s": 240},
        {"name": "spinner-vaname", "pin": 27, "max_on_s": 180},
    ],
    "inputs": [
        {"name": "rot-nila", "pin": 5, "kind": "pulse"},
        {"name": "rot-vaname", "pin": 6, "kind": "pulse"},
    ],
    "sensors": [
        {"name": "do-nila", "driver": "ezo", "port_url": "sim://do", "quantity": "do_mg_l",
         "stale_after_s": 900},
        {"name": "suhu-nila", "driver": "ezo", "port_url": "sim://temp", "quantity": "temp_c",
         "stale_after_s": 900},
        {"name": "ph-nila", "driver": "ezo", "port_url": "sim://ph", "quantity": "ph",
         "stale_after_s": 900},
        {"name": "probe-vaname", "driver": "modbus", "port_url": "sim://rs485", "slave": 1,
         "stale_after_s": 900,
         "registers": {"do_mg_l": {"address": 0, "decimals": 2},
                       "temp_c": {"address": 1, "decimals": 1, "signed": True},
                       "ph": {"address": 2, "decimals": 2}}},
    ],
    "feeders": [
        {"name": "pakan-nila", "pond": "kolam-nila", "motor": "auger-nila",
         "rate_g_per_s": 18.0, "max_dose_g": 3500, "max_daily_g": 10000,
         "confirm_by": "pulses", "rotation_input": "rot-nila", "g_per_pulse": 3.0,
         "confirm_timeout_s": 5,
         "hopper": {"driver": "ultrasonic", "trigger_pin": 23, "echo_pin": 24,
                    "full_distance_m": 0.12, "empty_distance_m": 0.85,
                    "capacity_g": 50000, "low_pct": 20, "empty_pct": 3}},
        {"name": "pakan-vaname", "pond": "tambak-vaname", "motor": "spinner-vaname",
         "kind": "spinner", "rate_g_per_s": 18.0, "max_dose_g": 2500, "max_daily_g": 10000,
         "confirm_by": "weight", "rotation_input": "rot-vaname", "g_per_pulse": 3.0,
         "confirm_timeout_s": 8, "min_weight_drop_g": 40,
         "hopper": {"driver": "loadcell", "port_url": "sim://loadcell", "tare_g": 6200,
                    "capacity_g": 40000, "low_pct": 25, "empty_pct": 3}},
    ],
    "ponds": [
        {"name": "kolam-nila", "species": "nila",
         "sensors": ["do-nila", "suhu-nila", "ph-nila"],
         "plan": {"times": ["07:00", "11:00", "16:00"], "fish_count": 3000,
                  "avg_weight_g": 80}},
        {"name": "tambak-vaname", "species": "vaname", "sensors": ["probe-vaname"],
         "plan": {"times": ["06:00", "10:00", "14:00", "18:00", "22:00"],
                  "doses_g": [1400, 1700, 1700, 1800, 1600]}},
    ],
}


def unit_config_dict(*, feeders=None, ponds=None, **top):
    """A copy of ``BASE``; ``feeders``/``ponds`` map a name to a dict merged into it
    (a ``plan`` is replaced whole, other tables are merged)."""
    d = copy.deepcopy(BASE)
    for section, changes in (("feeders", feeders), ("ponds", ponds)):
        for item in d[section]:
            for key, value in (changes or {}).get(item["name"], {}).items():
                if key != "plan" and isinstance(value, dict) and isinstance(item.get(key), dict):
                    item[key] = {**item[key], **value}
                else:
                    item[key] = value
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(d.get(key), dict):
            d[key] = {**d[key], **value}
        else:
            d[key] = value
    return d


@pytest.fixture
def config_dict():
    """``config_dict(**changes)``: a config as a dict (see ``unit_config_dict``)."""
    return unit_config_dict


@pytest.fixture
def unit_config():
    def build(**changes):
        return parse_config(unit_config_dict(**changes))

    return build


class Harness:
    """One unit: clock, simulator, app, publisher, state; ``restart()`` keeps the state."""

    def __init__(self, config, *, state_path, start_local="00:00", synced=True,
                 sim_ponds=None, sim_feeders=None, seed=1, garble_rate=0.0, prepare=None):
        """``start_local``: the clock starts at this time (HH:MM WITA) on day 0;
        ``prepare(sim)`` runs before the app is built (e.g. to unplug a probe)."""
        self.config = config
        h, m = map(int, start_local.split(":"))
        self.clock = VirtualClock(start=MIDNIGHT_WITA + timedelta(hours=h, minutes=m))
        self.factory = make_pin_factory("mock")
        self.pub = MemoryPublisher(self.clock)
        self.state_path = state_path
        self.synced = synced
        self.sim = FishFeederSim(config, self.clock, seed=seed, ponds=sim_ponds,
                                 feeders=sim_feeders, garble_rate=garble_rate)
        self.app = None
        self.replies: list[tuple] = []
        self.codes: list[tuple] = []  # (cmd_id, status, ReplyCode, params)
        if prepare is not None:
            prepare(self.sim)
        self._new_app()

    def _new_app(self):
        self.state = StateStore(self.state_path)
        self.app = FishFeederApp(self.config, pin_factory=self.factory, clock=self.clock,
                                 publisher=self.pub, state=self.state,
                                 clock_synced=lambda: self.synced, **self.sim.app_kwargs())
        self.sim.attach(self.app)
        self.app.start()

    def restart(self, config=None):
        """Stop the daemon cleanly and start a new one on the same state file."""
        self.app.close()
        self.state.close()
        if config is not None:
            self.config = config
        self._new_app()

    def down_for(self, seconds):
        """The daemon is stopped, ``seconds`` pass, and it starts again (same state)."""
        self.app.close()
        self.state.close()
        self.clock.advance(seconds)
        self._new_app()

    def run(self, seconds, **kw):
        self.sim.run(seconds, **kw)

    def run_until_local(self, hhmm: str, day: int = 0):
        h, m = map(int, hhmm.split(":"))
        when = MIDNIGHT_WITA + timedelta(days=day, hours=h, minutes=m)
        self.sim.run_until(when)

    def local(self, ts):
        return (ts - MIDNIGHT_WITA).total_seconds() / 3600  # hours after day-0 midnight

    def command(self, action, cmd_id="c1", **params):
        got = []

        def reply(status, code, *, clamped=None, **params):
            code = ReplyCode(code)  # every reply a unit makes has a code
            detail = reply_text(code, params)
            got.append((status, detail, clamped))
            self.replies.append((cmd_id, status, detail, clamped))
            self.codes.append((cmd_id, status, code, params))

        self.app.handle_command(cmd_id, action, params, reply)
        return got

    def events(self, type_=None, **match):
        return [r for r in self.pub.events(type_)
                if all(r.data.get(k) == v for k, v in match.items())]

    def close(self):
        self.app.close()
        self.state.close()


@pytest.fixture
def harness(tmp_path):
    made = []

    def build(config, **kw):
        h = Harness(config, state_path=tmp_path / f"state{len(made)}.sqlite", **kw)
        made.append(h)
        return h

    yield build
    for h in made:
        h.close()
