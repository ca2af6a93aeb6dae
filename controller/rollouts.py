"""Rollouts: a kept release offered to units in stages, canary first.

A rollout is planned once, when an admin starts it (`plan_stages`): the target's units
(an OPD's, a list, or a share of all units or of an OPD's, picked evenly by a hash of
the device id), the first ``canary`` of them as stage 0, then the rest in stages that
end at the cumulative ``stage_percents`` of the target (``[100]``: the rest at once).

`RolloutEngine.step` runs in the controller's periodic work (the ingest's housekeeping)
and does the rest with the store alone, so it is tested without MQTT:

- a stage's units are offered the ``update`` command (the bundle's URL under
  ``[api] public_url``, its SHA-256 and size); a unit already running the version is
  ``skipped`` (counted as applied);
- each unit's state follows its command: ``accepted`` (the unit will install in its
  maintenance window), then ``applied`` (``update_applied``, or the unit already ran it)
  or ``failed`` (``update_failed`` with its step and reason, a refusal with its code, the
  command expired, or no outcome within ``stage_timeout_s``);
- once the failed share of the stage exceeds ``max_failure_share`` the rollout stops
  itself (``failure_threshold``): no further offers; units offered keep their result.
  Otherwise, when every unit of the stage has an outcome, the next stage starts; after
  the last, the rollout is ``completed``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from controller.errors import Conflict
from controller.store import Store, iso
from controller.store.releases import UNIT_DONE
from protocol.models import MAX_COMMAND_TTL, Command, ReplyCode

logger = logging.getLogger(__name__)

DEFAULT_STAGE_TIMEOUT_S = 86_400.0
"""A day: time for every unit of a stage to reach its maintenance window once."""

Send = Callable[[str, str, Command], None]
"""(opd, device_id, command): store the command and publish it."""


class PlanError(ValueError):
    """A rollout that cannot be planned; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def spread_key(device_id: str) -> str:
    """The order a share of units is picked in: even over OPDs and names, and stable."""
    return hashlib.sha256(device_id.encode()).hexdigest()


def select_units(devices: list[dict], target: dict) -> list[str]:
    """The device ids a target names: ``{"opd": X}``, ``{"devices": [...]}`` or
    ``{"percent": N}`` (of all units, or with ``"opd"`` of that OPD's)."""
    known = {d["device_id"]: d for d in devices}
    if "devices" in target:
        missing = [d for d in target["devices"] if d not in known]
        if missing:
            raise PlanError("target.devices", f"no device {missing[0]!r}")
        return list(dict.fromkeys(target["devices"]))
    pool = [d["device_id"] for d in devices
            if target.get("opd") is None or d["opd"] == target["opd"]]
    if not pool:
        raise PlanError("target.opd", f"OPD {target.get('opd')!r} has no units")
    percent = target.get("percent")
    if percent is None:
        return sorted(pool)
    pool.sort(key=spread_key)
    return pool[:max(1, math.ceil(len(pool) * percent / 100))]


def plan_stages(device_ids: list[str], canary: int, stage_percents: list[int]
                ) -> list[list[str]]:
    """Stage 0: the first ``canary`` units; then up to each cumulative percentage of all
    of them (empty stages dropped). The canary is picked evenly (`spread_key`)."""
    units = sorted(device_ids, key=spread_key)
    stages = [units[:canary]]
    done = len(stages[0])
    for percent in stage_percents:
        upto = max(done, math.ceil(len(units) * percent / 100))
        if upto > done:
            stages.append(units[done:upto])
            done = upto
    return [s for s in stages if s]


def bundle_url(base_url: str, version: str) -> str:
    return f"{base_url}/api/v1/releases/{version}/bundle"


def _outcome(unit: dict) -> tuple[str, str | None, str, str | None] | None:
    """(state, result, reason, step) the unit's command says, or None (no news)."""
    status, code, params = unit["command_status"], unit["reply_code"], unit["reply_params"]
    if status == "accepted":
        return ("accepted", None, "", None)
    if status == "done":
        current = code == ReplyCode.UPDATE_CURRENT.value
        return ("applied", "current" if current else "applied", "", None)
    if status == "failed":
        return ("failed", code or "update_failed",
                str(params.get("reason") or unit["detail"] or ""), params.get("step"))
    if status == "rejected":
        return ("failed", code or "rejected", str(unit["detail"] or ""), None)
    if status == "expired":
        return ("failed", "expired", str(unit["detail"] or ""), None)
    return None


class RolloutEngine:
    """Moves running rollouts on (see the module doc). ``send`` stores and publishes a
    command; ``base_url`` is where units download bundles (``[api] public_url``)."""

    def __init__(self, store: Store, send: Send, base_url: str):
        self.store = store
        self.send = send
        self.base_url = base_url

    def step(self, now: datetime) -> None:
        for rollout in self.store.running_rollouts():
            try:
                self._step_one(rollout, now)
            except Exception:  # noqa: BLE001 - one rollout must not stop the others
                logger.exception("rollout %s could not be moved on", rollout["id"])
        for rollout_id in self.store.ended_rollouts_with_open_units():
            # stopped: no more offers, but the units offered still report their outcome
            for unit in self.store.rollout_unit_commands(rollout_id):
                if unit["state"] in ("offered", "accepted"):
                    self._follow(rollout_id, unit, now)

    def _follow(self, rollout_id: int, unit: dict, now: datetime) -> None:
        """Take the unit's outcome from its command, if there is news."""
        news = _outcome(unit)
        if news is not None and (news[0] != unit["state"] or news[1] != unit["result"]):
            state, result, reason, step = news
            self.store.set_rollout_unit(rollout_id, unit["device_id"], now, state=state,
                                        result=result, reason=reason[:500], step=step)
            unit["state"], unit["result"] = state, result

    def _step_one(self, rollout: dict, now: datetime) -> None:
        rid, stage = rollout["id"], rollout["stage"]
        units = self.store.rollout_unit_commands(rid)
        if rollout["stage_started_at"] is None:  # the first step of a new rollout
            self.store.advance_rollout(rid, None, 0, now)
            rollout["stage_started_at"] = iso(now)
        started = datetime.fromisoformat(rollout["stage_started_at"].replace("Z", "+00:00"))
        timed_out = now - started >= timedelta(seconds=rollout["stage_timeout_s"])
        in_stage = [u for u in units if u["stage"] == stage]
        for unit in in_stage:
            if unit["state"] == "waiting":
                self._offer(rollout, unit, now)
                continue
            if unit["state"] in ("offered", "accepted") or unit["result"] == "timeout":
                self._follow(rid, unit, now)
                if timed_out and unit["state"] in ("offered", "accepted"):
                    self.store.set_rollout_unit(
                        rid, unit["device_id"], now, state="failed", result="timeout",
                        reason=f"no outcome within {rollout['stage_timeout_s']:g} s")
                    unit["state"], unit["result"] = "failed", "timeout"
        failed = sum(u["state"] == "failed" for u in in_stage)
        if in_stage and failed / len(in_stage) > rollout["max_failure_share"]:
            try:
                self.store.stop_rollout(rid, reason="failure_threshold", actor="controller",
                                        note=f"{failed} of {len(in_stage)} failed in stage "
                                        f"{stage}", now=now)
            except Conflict:  # stopped meanwhile (an admin, or another controller)
                return
            logger.warning("rollout %s of %s stopped: %d of %d units of stage %d failed",
                           rid, rollout["version"], failed, len(in_stage), stage)
            return
        if all(u["state"] in UNIT_DONE for u in in_stage):
            following = stage + 1 if stage + 1 < rollout["stages"] else None
            if not self.store.advance_rollout(rid, stage, following, now):
                return  # moved on meanwhile (another controller's periodic work)
            logger.info("rollout %s of %s: stage %d ended%s", rid, rollout["version"], stage,
                        "; completed" if following is None else f"; stage {following} starts")

    def _offer(self, rollout: dict, unit: dict, now: datetime) -> None:
        version, device_id = rollout["version"], unit["device_id"]
        if unit["running"] == version:
            self.store.set_rollout_unit(rollout["id"], device_id, now, state="skipped",
                                        result="current", offered_version=None)
            unit["state"] = "skipped"
            return
        release = self.store.get_release(version)
        if release is None:  # kept rows are never deleted; a guard all the same
            raise LookupError(f"release {version} is not kept")
        ttl = min(timedelta(seconds=rollout["stage_timeout_s"]), MAX_COMMAND_TTL)
        command = Command(id=uuid.uuid4().hex, issued_at=now, expires_at=now + ttl,
                          action="update", params={
                              "version": version, "url": bundle_url(self.base_url, version),
                              "sha256": release["sha256"], "size": release["size"]})
        # Claimed first, so two controllers never both offer it; then stored and sent.
        if not self.store.claim_rollout_unit(rollout["id"], device_id, command.id, version,
                                             now):
            return
        unit["state"], unit["command_id"] = "offered", command.id
        self.send(unit["opd"], device_id, command)
