"""What the irrigation unit saves so that a restart neither forgets nor doubles anything.

The unit's ``StateStore`` holds, under the ``STATE_*`` keys: the remote program in force
(with its version), the holds (pause, rain delay, skips) with the zone faults, today's
water totals, the runs (queued, watering, soaking), each soil-ruled zone's latch and last
sensor run, and the schedule's mark (up to when program starts were looked at).

``load`` reads them back (dropping what no longer fits the local config);
``Checkpoint.save`` writes what changed, in one transaction, when something is marked
changed or every ``checkpoint_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from protocol.holds import Holds

from ..errors import ConfigError
from ..state import StateStore
from .config import IrrigationProgramConfig, parse_program
from .inputs import ZoneState
from .queue import Run
from .rules import from_iso, iso

logger = logging.getLogger(__name__)

STATE_PROGRAM = "irrigation.program"
STATE_HOLDS = "irrigation.holds"
STATE_TODAY = "irrigation.today"
STATE_RUNS = "irrigation.runs"
STATE_ZONES = "irrigation.zones"
STATE_MARK = "irrigation.schedule_mark"


@dataclass
class Saved:
    """What a start finds in the state file."""

    holds: Holds
    faults: dict[str, str]
    today: dict
    runs: list[Run]
    zone_state: dict[str, ZoneState]
    mark: datetime | None


def load_program(state: StateStore, zones, default: IrrigationProgramConfig,
                 alarm: Callable[..., None]) -> tuple[IrrigationProgramConfig, int]:
    """The saved remote program and its version, or ``default`` and 0 (with a
    ``config_invalid`` alarm when the saved one no longer fits the local config)."""
    doc = state.get(STATE_PROGRAM)
    if doc:
        try:
            return (parse_program(doc["body"], zones, f"saved remote config v{doc['version']}"),
                    int(doc["version"]))
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            logger.error("saved remote config no longer fits this unit: %s", exc)
            alarm("config_invalid", "saved remote config no longer fits the local "
                  "config; running the local default program", error=str(exc))
    return default, 0


def save_program(state: StateStore, version: int, program: IrrigationProgramConfig) -> None:
    state.set(STATE_PROGRAM, {"version": int(version), "body": program.model_dump(mode="json")})


def load(state: StateStore, zones) -> Saved:
    holds = state.get(STATE_HOLDS) or {}
    runs = []
    for doc in state.get(STATE_RUNS) or []:
        try:
            run = Run.from_doc(doc)
        except TypeError:
            logger.error("dropping an unreadable saved run: %r", doc)
            continue
        if run.zone in zones:
            runs.append(run)
    saved_zones = state.get(STATE_ZONES) or {}
    return Saved(
        holds=Holds.from_doc(holds),
        faults={z: r for z, r in holds.get("faults", {}).items() if z in zones},
        today=state.get(STATE_TODAY) or {},
        runs=runs,
        zone_state={
            z: ZoneState(latched=bool(saved_zones.get(z, {}).get("latched", False)),
                         last_sensor_start=from_iso(saved_zones.get(z, {}).get("last_sensor_start")))
            for z in zones
        },
        mark=from_iso(state.get(STATE_MARK)),
    )


def docs(saved: Saved) -> dict[str, Any]:
    """The documents to save, by key."""
    return {
        STATE_HOLDS: {**saved.holds.to_doc(), "faults": dict(saved.faults)},
        STATE_TODAY: saved.today,
        STATE_RUNS: [r.to_doc() for r in saved.runs],
        STATE_ZONES: {z: {"latched": s.latched, "last_sensor_start": iso(s.last_sensor_start)}
                      for z, s in saved.zone_state.items()},
        STATE_MARK: iso(saved.mark),
    }


class Checkpoint:
    """Saves what changed: at once when ``dirty``, else every ``checkpoint_s``."""

    def __init__(self, state: StateStore, checkpoint_s: float):
        self.state = state
        self.checkpoint_s = checkpoint_s
        self.dirty = True
        self._last_save = float("-inf")
        self._saved: dict[str, Any] = {}

    def changed(self) -> None:
        self.dirty = True

    def save(self, current: Callable[[], dict[str, Any]], mono: float,
             force: bool = False) -> None:
        if not (force or self.dirty or mono - self._last_save >= self.checkpoint_s):
            return
        changed = {key: doc for key, doc in current().items() if self._saved.get(key) != doc}
        if changed:
            self.state.set_many(changed)  # one transaction: runs and totals agree on disk
            for key, doc in changed.items():
                self._saved[key] = _copy(doc)
        self._last_save = mono
        self.dirty = False


def _copy(doc):
    if isinstance(doc, dict):
        return {k: _copy(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_copy(v) for v in doc]
    return doc
