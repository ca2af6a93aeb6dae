"""What the controller sends a fish feeder: commands (``feed_now``, ``skip_next``, ``pause``,
``resume``, ``stop_all``, ``clear_fault``), the pause and skip flags they set
(``protocol.holds``, state key ``ff.holds``), and the remote config (plans, species and
thresholds of ponds; hardware and hard limits stay in the local config).

``FishFeederApp`` takes these methods from ``RemoteControl``; they work on the app's
feeders, queue, holds and state under its lock."""

from __future__ import annotations

import logging
from datetime import datetime

from pydantic import ValidationError

from protocol.holds import HoldRefused, Holds
from protocol.kinds.fish_feeder import RemoteBody
from protocol.models import (
    MIN_DOSE_G,
    ClearFaultParams,
    FeedNowParams,
    PauseParams,
    ReplyCode,
    SkipNextParams,
)

from ..app import bad_params, command_params
from ..config import problems as config_problems
from ..errors import ConfigError
from .config import PondSpec
from .pending import Pending, iso_utc

logger = logging.getLogger(__name__)


class RemoteControl:
    """The fish feeder app's commands and remote config (a part of ``FishFeederApp``)."""

    def outlook(self):
        """Holds in force and the next feeding, for the status (``edge.outlook``); a
        rain delay holds no feeding."""
        return self._outlook.get(
            self.clock.now(), holds=self.holds, clock_synced=self.clock_synced(),
            planner=self._planner, rain_delay_holds=False,
            describe=lambda planned: {"pond": planned.program})

    # -- commands -------------------------------------------------------------------------------
    def handle_command(self, cmd_id: str, action: str, params, reply) -> None:
        handler = {
            "feed_now": self._cmd_feed_now, "skip_next": self._cmd_skip_next,
            "pause": self._cmd_pause, "resume": self._cmd_resume,
            "stop_all": self._cmd_stop_all, "clear_fault": self._cmd_clear_fault,
        }.get(action)
        if handler is None:
            reply("rejected", ReplyCode.UNKNOWN_ACTION, action=action)
            return
        try:
            p = command_params(action, params)
        except ValidationError as exc:
            reply("rejected", ReplyCode.BAD_PARAMS, **bad_params(exc))
            return
        with self._lock:
            handler(cmd_id, p, reply)

    def _known_feeder(self, name: str | None, reply) -> bool:
        if name is None or name in self.feeders:
            return True
        reply("rejected", ReplyCode.UNKNOWN_FEEDER, feeder=name)
        return False

    def _cmd_feed_now(self, cmd_id, p: FeedNowParams, reply) -> None:
        if not self._known_feeder(p.feeder, reply):
            return
        name, dose = p.feeder, p.dose_g
        feeder = self.feeders[name]
        if feeder.fault is not None:
            reply("rejected", ReplyCode.FEEDER_LOCKED, feeder=name, fault=feeder.fault)
            return
        if feeder.busy or any(p.feeder == name for p in self._pending):
            reply("rejected", ReplyCode.FEEDER_BUSY, feeder=name)
            return
        spec = feeder.spec
        clamp = self.ledger.clamp(feeder, float(dose))
        clamped = (self._clamped(name, clamp, source="command", pond=spec.pond, cmd_id=cmd_id)
                   if clamp.clamped else None)
        if clamp.allowed_g < MIN_DOSE_G:
            reply("rejected", ReplyCode.DAILY_CAP, clamped=clamped, feeder=name,
                  fed_g=round(self._fed_today(name), 1), max_daily_g=spec.max_daily_g)
            return
        now = iso_utc(self.clock.now())
        # Try first, answer after: a feeding that starts is saved as in progress before
        # 'accepted' goes out (a unit killed just after answering then reports it cut
        # short, with this command's id); one that is skipped answers 'failed' itself.
        answers: list[tuple] = []
        p = Pending(feeder=name, pond=spec.pond, plan_g=clamp.allowed_g, source="command",
                    due=now, retry_until=now, cmd_id=cmd_id,
                    reply=lambda *answer, **params: answers.append((answer, params)))
        settled = self._try(p)
        p.reply = reply
        if answers:
            answer, params = answers[0]
            reply(*answer, **params)
            return
        reply("accepted", ReplyCode.FEEDING_ACCEPTED, clamped=clamped, feeder=name,
              dose_g=round(clamp.allowed_g, 1))
        if not settled:
            self._pending.append(p)  # cannot happen for an idle feeder; kept for safety

    def _cmd_skip_next(self, cmd_id, p: SkipNextParams, reply) -> None:
        if p.zone is not None:
            reply("rejected", ReplyCode.NO_ZONES)
            return
        if not self._known_feeder(p.feeder, reply):
            return
        targets = [p.feeder] if p.feeder else list(self.feeders)
        self.holds.skip(targets)
        self._save_holds()
        if p.feeder:
            reply("done", ReplyCode.SKIP_SET, target=p.feeder)
        else:
            reply("done", ReplyCode.SKIP_SET_ALL)

    def _cmd_pause(self, cmd_id, p: PauseParams, reply) -> None:
        if not self.clock_synced():
            reply("rejected", ReplyCode.CLOCK_NOT_SYNCED)
            return
        until = p.until
        try:
            self.holds.pause(until, self.clock.now())
        except HoldRefused as exc:
            reply("rejected", ReplyCode.PAUSE_REFUSED, **exc.params)
            return
        self._save_holds()
        self.publisher.event("paused", until=iso_utc(until), cmd_id=cmd_id)
        reply("done", ReplyCode.PAUSED, until=iso_utc(until))

    def _cmd_resume(self, cmd_id, params, reply) -> None:
        pause = self.holds.resume()
        self._save_holds()
        if pause:
            self.publisher.event("resumed", reason="command", cmd_id=cmd_id)
            reply("done", ReplyCode.RESUMED, cleared="pause")
        else:
            reply("done", ReplyCode.NOTHING_TO_RESUME)

    def _cmd_stop_all(self, cmd_id, params, reply) -> None:
        stopped = [f.name for f in self.feeders.values() if f.abort("stopped")]
        waiting = list(self._pending)
        for p in waiting:
            self._skipped(p, "stopped", stopped_by=cmd_id)
        self._pending = []
        self._save_pending()
        reply("done", ReplyCode.STOPPED_ALL, runs=len(stopped) + len(waiting))

    def _cmd_clear_fault(self, cmd_id, p: ClearFaultParams, reply) -> None:
        if not self._known_feeder(p.feeder, reply):
            return
        name = p.feeder
        fault = self.feeders[name].clear_fault()
        locks = self.state.get("ff.lockouts") or {}
        locks.pop(name, None)
        self.state.set("ff.lockouts", locks)
        if fault is None:
            reply("done", ReplyCode.NOT_LOCKED, feeder=name)
            return
        self.publisher.event("alarm_cleared", code=f"feeder_{fault}", feeder=name,
                             cleared_by="command", cmd_id=cmd_id,
                             message=f"feeder {name}: lockout cleared by an operator")
        reply("done", ReplyCode.FAULT_CLEARED, feeder=name, fault=fault)

    # -- pause and skip (set by commands) -------------------------------------------------------
    def _load_holds(self) -> Holds:
        doc = self.state.get("ff.holds")
        if doc is None:  # saved before the holds were one document
            pause = self.state.get("ff.pause") or {}
            doc = {"paused_until": pause.get("until"),
                   "skip_next": self.state.get("ff.skip_next") or []}
        return Holds.from_doc(doc)

    def _save_holds(self) -> None:
        self.state.set("ff.holds", self.holds.to_doc())

    def _paused_until(self, now: datetime) -> str | None:
        if self.holds.reason(now, rain_delay=False) == "paused":
            return iso_utc(self.holds.paused_until)
        return None

    def _check_pause_end(self) -> None:
        until = self.holds.paused_until
        if "pause" in self.holds.expire(self.clock.now()):
            self._save_holds()
            self.publisher.event("resumed", reason="pause_ended", until=iso_utc(until))

    # -- remote config --------------------------------------------------------------------------
    def apply_remote_config(self, version: int, body: dict) -> None:
        """Replace plans, species and thresholds of ponds; hard limits stay local.

        ``body`` is ``{"ponds": {name: {"plan": {...}, "species": ..., "thresholds":
        {...}}}}``; a pond it does not name runs its local plan. Raises ``ConfigError``
        (and changes nothing) when the body is invalid or older than the version in force.
        """
        where = f"remote config v{version}"
        if not isinstance(version, int) or version < 1:
            raise ConfigError(where, [("version", "must be a positive integer")])
        if version < self._remote_version:
            raise ConfigError(where, [("version", f"older than version {self._remote_version} "
                                                  "already in force")])
        ponds = self._validate_remote(where, body)
        if isinstance(body, RemoteBody):  # as the link decoded it: kept as it was sent
            body = body.model_dump(mode="json", exclude_unset=True)
        with self._lock:
            self._ponds = ponds
            self._thresholds_cache = {}
            self._remote_version = version
            self.state.set("ff.remote_config", {"version": version, "body": body})
            self._planner = self._feeding_planner()
        logger.info("remote config v%d in force", version)

    def _validate_remote(self, where: str, body) -> dict[str, PondSpec]:
        problems: list[tuple[str, str]] = []
        if isinstance(body, RemoteBody):  # decoded by the link with the protocol's model
            parsed = body
        else:
            if not isinstance(body, dict):
                raise ConfigError(where, [("(body)", "must be a JSON object")])
            problems = [(key, "not settable remotely: hardware and hard limits (max_dose_g, "
                         "max_daily_g, max_on_s) stay in the unit's local config")
                        for key in body if key != "ponds"]
            if problems:
                raise ConfigError(where, problems)
            try:
                parsed = RemoteBody.model_validate(body)
            except ValidationError as exc:
                raise ConfigError(where, list(config_problems(exc))) from None
        ponds = {p.name: p for p in self.config.ponds}
        for name, change in parsed.ponds.items():
            if name not in ponds:
                problems.append((f"ponds.{name}", f"no pond named {name!r} on this unit"))
                continue
            merged = ponds[name].model_dump()
            for key in ("species", "plan", "thresholds"):
                value = getattr(change, key)
                if value is not None:
                    merged[key] = value.model_dump() if hasattr(value, "model_dump") else value
            try:
                ponds[name] = PondSpec.model_validate(merged)
            except ValidationError as exc:
                problems += [(f"ponds.{name}.{f}", r) for f, r in config_problems(exc)]
        if problems:
            raise ConfigError(where, problems)
        return ponds

    def _load_remote_config(self) -> None:
        saved = self.state.get("ff.remote_config")
        if not saved:
            return
        try:
            self._ponds = self._validate_remote(f"remote config v{saved['version']}",
                                                saved["body"])
            self._thresholds_cache = {}
            self._remote_version = int(saved["version"])
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            logger.error("saved remote config no longer fits the local config: %s", exc)
            self.alarm("remote_config_invalid",
                       "the saved remote config does not fit the local config; running "
                       f"the local plan: {exc}")
