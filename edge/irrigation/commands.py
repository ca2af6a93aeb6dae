"""Remote commands to an irrigation unit: run_zone, stop_zone, stop_all, skip_next, pause,
resume, rain_delay.

``Commands.handle`` validates the parameters with the protocol's models, runs the action
under the app's lock and answers it with a status and a reply code
(``protocol.models.ReplyCode``) with its params: ``rejected`` (with the reason, or the
first bad field), ``accepted`` (a queued run, answered ``done``/``failed`` again when it
ends), ``done`` or ``failed``. Whatever an answer reports (a queued run, a pause) is saved
before it is sent, so a unit killed just after answering does not forget what it said.
A run asked for is clamped to the local limits, and the clamp is reported. A run a person
stops (stop_all, stop_zone) ends ``stopped``, with the command in ``stopped_by``.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from protocol.holds import ALL, HoldRefused
from protocol.models import (
    PauseParams,
    RainDelayParams,
    ReplyCode,
    RunZoneParams,
    SkipNextParams,
    StopZoneParams,
)

from ..app import bad_params, command_params
from .rules import MIN_RUN_S, clamp

logger = logging.getLogger(__name__)


STOPPED = "stopped"
"""How a run a person stopped ends (``ended`` or ``reason`` of its end report)."""


class Reject(Exception):
    """A command that cannot be accepted: the reply's code and params."""

    def __init__(self, code: ReplyCode, **params):
        super().__init__(code.value)
        self.code = code
        self.params = params


class Commands:
    """The command handlers of one ``IrrigationApp``."""

    def __init__(self, app):
        self._app = app
        self._handlers = {"run_zone": self.run_zone, "stop_all": self.stop_all,
                          "stop_zone": self.stop_zone, "skip_next": self.skip_next,
                          "pause": self.pause, "resume": self.resume,
                          "rain_delay": self.rain_delay}

    def handle(self, cmd_id: str, action: str, params: dict, reply) -> None:
        app = self._app
        handler = self._handlers.get(action)
        if handler is None:
            reply("rejected", ReplyCode.UNKNOWN_ACTION, action=action)
            return
        answering = True

        def reply_when_saved(status, code, *, clamped=None, **params):
            # What the handler's answer reports (a queued run, a pause) is on disk before
            # the answer: a unit killed just after answering must not forget what it said.
            # A run's own end, answered later by the queue, is saved with its events.
            if answering and status != "rejected":
                app.save(force=True)
            reply(status, code, clamped=clamped, **params)

        try:
            with app.lock:
                try:
                    handler(cmd_id, command_params(action, params), reply_when_saved)
                finally:
                    answering = False
                app.step_safe()
        except Reject as exc:
            reply("rejected", exc.code, **exc.params)
        except ValidationError as exc:
            reply("rejected", ReplyCode.BAD_PARAMS, **bad_params(exc))
        except Exception as exc:  # noqa: BLE001 - answer every command
            logger.exception("command %s %s failed", cmd_id, action)
            reply("failed", ReplyCode.UNIT_ERROR, error=type(exc).__name__)

    def run_zone(self, cmd_id, p: RunZoneParams, reply) -> None:
        app = self._app
        if p.zone not in app.zones:
            raise Reject(ReplyCode.UNKNOWN_ZONE, zone=p.zone)
        now, mono = app.clock.now(), app.clock.monotonic()
        app.account(mono)
        app.roll_day(now)
        zmax, output, max_on_s = app.zone_max_cycle_s(p.zone)
        clamps = []
        allowed, c = clamp(p.duration_s, zmax, "duration_s", "max_on_s")
        if c:
            clamps.append((c, {"output": output, "max_on_s": round(max_on_s, 1)}))
        allowed, c = clamp(allowed, max(0.0, app.ledger.budget_left_s(app.queue.runs)),
                           "duration_s", "max_daily_water_min")
        if c:
            clamps.append((c, {"used_today_min": round(app.ledger.used_today_s() / 60, 1)}))
        report = [c.as_dict() for c, _ in clamps] or None
        for c, extra in clamps:
            app.publisher.event("limit_clamped", **c.as_dict(), zone=p.zone, cmd_id=cmd_id,
                                **extra)
        if allowed < MIN_RUN_S:
            reply("rejected", ReplyCode.DAILY_LIMIT, clamped=report,
                  max_daily_water_min=app.config.limits.max_daily_water_min)
            return
        app.faults.pop(p.zone, None)  # an operator's explicit try clears a fault
        run = app.queue_run(f"manual:{cmd_id}", p.zone, "manual", allowed, now,
                            cmd_id=cmd_id, split=False)
        app.queue.replies[run.run_id] = reply
        reply("accepted", ReplyCode.RUN_ACCEPTED, clamped=report, zone=p.zone,
              duration_s=round(allowed))

    def stop_all(self, cmd_id, params, reply) -> None:
        app = self._app
        now = app.clock.now()
        n = len(app.queue.runs)
        for run in list(app.queue.runs):
            app.queue.stop(run, STOPPED, now, stopped_by=cmd_id)
        app.cut_supply()
        reply("done", ReplyCode.STOPPED_ALL, runs=n)

    def stop_zone(self, cmd_id, p: StopZoneParams, reply) -> None:
        """End the zone's runs (watering, soaking or queued); its valve closes, and with
        nothing else running the supply is cut at once, as stop_all does."""
        app = self._app
        if p.zone not in app.zones:
            raise Reject(ReplyCode.UNKNOWN_ZONE, zone=p.zone)
        runs = [run for run in app.queue.runs if run.zone == p.zone]
        if not runs:
            raise Reject(ReplyCode.ZONE_NOT_RUNNING, zone=p.zone)
        now = app.clock.now()
        for run in runs:
            app.queue.stop(run, STOPPED, now, stopped_by=cmd_id)
        app.settle_outputs()
        reply("done", ReplyCode.ZONE_STOPPED, zone=p.zone)

    def skip_next(self, cmd_id, p: SkipNextParams, reply) -> None:
        app = self._app
        if p.feeder is not None:
            raise Reject(ReplyCode.NO_FEEDERS)
        if p.zone is not None and p.zone not in app.zones:
            raise Reject(ReplyCode.UNKNOWN_ZONE, zone=p.zone)
        app.holds.skip([p.zone or ALL])
        app.changed()
        if p.zone is None:
            reply("done", ReplyCode.SKIP_SET_ALL)
        else:
            reply("done", ReplyCode.SKIP_SET, target=p.zone)

    def pause(self, cmd_id, p: PauseParams, reply) -> None:
        app = self._app
        if not app.clock_synced():
            raise Reject(ReplyCode.CLOCK_NOT_SYNCED)
        now = app.clock.now()
        try:
            until = app.holds.pause(p.until, now)
        except HoldRefused as exc:
            raise Reject(ReplyCode.PAUSE_REFUSED, **exc.params) from None
        for run in list(app.queue.runs):
            app.queue.stop(run, "paused", now)
        app.cut_supply()
        app.changed()
        app.publisher.event("paused", until=until.isoformat(), cmd_id=cmd_id)
        reply("done", ReplyCode.PAUSED, until=until.isoformat())

    def resume(self, cmd_id, params, reply) -> None:
        app = self._app
        cleared = app.holds.resume()
        cleared += [name for name, v in (("faults", app.faults),
                                         ("leak", app.inputs.leak_active)) if v]
        app.faults.clear()
        app.inputs.leak_active = False
        app.changed()
        app.publisher.event("resumed", cleared=cleared, cmd_id=cmd_id)
        if cleared:
            reply("done", ReplyCode.RESUMED, cleared=",".join(c.replace(" ", "_")
                                                               for c in cleared))
        else:
            reply("done", ReplyCode.NOTHING_TO_RESUME)

    def rain_delay(self, cmd_id, p: RainDelayParams, reply) -> None:
        app = self._app
        try:
            app.holds.rain_delay(p.hours, app.clock.now())
        except HoldRefused as exc:
            raise Reject(ReplyCode.RAIN_DELAY_REFUSED, **exc.params) from None
        app.changed()
        if p.hours:
            reply("done", ReplyCode.RAIN_DELAY_SET, hours=p.hours)
        else:
            reply("done", ReplyCode.RAIN_DELAY_ENDED)
