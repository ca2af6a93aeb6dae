"""The TOML config of an irrigation unit on mock pins that talks to a test broker.

One builder for everything that runs a real unit (``edge.irrigation`` or a test app, with
its MQTT link and outbox) against a private Mosquitto: the tests, and the bench/ and
faults/ scripts that run from the repository root without pytest. Tests import it as
``support.unit_toml``, the scripts as ``tests.support.unit_toml``.

    text = unit_toml(device_id="taman-uji-01", opd="dlh", state_dir=tmp / "state",
                     host=broker.host, port=broker.port, telemetry_s=1)
    write_unit_toml(tmp / "unit.toml", device_id=..., zones=TWO_ZONES, pump=Pump())

A knob left at ``None`` is left out of the file, so the unit takes the loader's default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ONE_ZONE", "TWO_ZONES", "Pump", "unit_toml", "write_unit_toml"]

# zone name -> (valve output name, BCM pin)
ONE_ZONE: Mapping[str, tuple[str, int]] = {"zone1": ("valve-1", 17)}
TWO_ZONES: Mapping[str, tuple[str, int]] = {"zone1": ("valve-1", 17), "zone2": ("valve-2", 27)}


@dataclass(frozen=True)
class Pump:
    """A master output of kind pump: on ``pre_s`` before any zone, off ``post_s`` after."""

    output: str = "pompa"
    pin: int = 24
    max_on_s: float = 900
    pre_s: float = 0.5
    post_s: float = 0.5


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _table(header: str, values: Mapping[str, object]) -> list[str]:
    lines = [f"{key} = {_value(v)}" for key, v in values.items() if v is not None]
    return ["", header, *lines] if lines else []


def unit_toml(*, device_id: str, opd: str, state_dir: str | Path, host: str, port: int,
              name: str | None = None, keepalive_s: int | None = 5,
              username: str | None = None, password_file: str | Path | None = None,
              tls: bool | None = None, ca_file: str | Path | None = None,
              sync_check: str | None = "assume_synced", telemetry_s: float | None = None,
              zones: Mapping[str, tuple[str, int]] = ONE_ZONE, max_on_s: float = 600,
              pump: Pump | None = None, on_interrupted: str | None = None) -> str:
    """The config text of an irrigation unit on mock pins.

    ``zones`` maps each zone to its valve output and pin (every valve gets ``max_on_s``);
    ``pump`` adds a master pump output; ``on_interrupted`` sets ``[runs]``.
    """
    lines = [f"kind = {_value('irrigation')}", f"state_dir = {_value(state_dir)}"]
    lines += _table("[unit]", {"device_id": device_id, "opd": opd, "name": name})
    lines += _table("[broker]", {"host": host, "port": port, "keepalive_s": keepalive_s,
                                 "username": username, "password_file": password_file,
                                 "tls": tls, "ca_file": ca_file})
    lines += _table("[hardware]", {"pin_factory": "mock"})
    lines += _table("[clock]", {"sync_check": sync_check})
    lines += _table("[telemetry]", {"interval_s": telemetry_s})
    for valve, pin in zones.values():
        lines += _table("[[outputs]]", {"name": valve, "pin": pin, "max_on_s": max_on_s})
    if pump is not None:
        lines += _table("[[outputs]]", {"name": pump.output, "pin": pump.pin,
                                        "max_on_s": pump.max_on_s})
    for zone, (valve, _pin) in zones.items():
        lines += _table("[[zones]]", {"name": zone, "valve": valve})
    if pump is not None:
        lines += _table("[master]", {"output": pump.output, "kind": "pump",
                                     "pre_s": pump.pre_s, "post_s": pump.post_s})
    lines += _table("[runs]", {"on_interrupted": on_interrupted})
    return "\n".join(lines) + "\n"


def write_unit_toml(path: str | Path, **knobs) -> Path:
    """Write ``unit_toml(**knobs)`` to ``path``; returns the path."""
    path = Path(path)
    path.write_text(unit_toml(**knobs))
    return path
