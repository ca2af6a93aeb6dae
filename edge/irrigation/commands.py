"""Remote commands to an irrigation unit: run_zone, stop_all, skip_next, pause, resume,
rain_delay.

``Commands.handle`` validates the parameters with the protocol's models, runs the action
under the app's lock and answers it: ``rejected`` (with the reason, or the first bad
field), ``accepted`` (a queued run, answered ``done``/``failed`` again when it ends),
``done`` or ``failed``. Whatever an answer reports (a queued run, a pause) is saved
before it is sent, so a unit killed just after answering does not forget what it said.
A run asked for is clamped to the local limits, and the clamp is reported.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from protocol.holds import ALL, HoldRefused
from protocol.models import PauseParams, RainDelayParams, RunZoneParams, SkipNextParams

from ..app import command_params
from .rules import MIN_RUN_S, clamp

logger = logging.getLogger(__name__)


class Reject(Exception):
    """A command that cannot be accepted; the text goes back in the reply."""


class Commands:
    """The command handlers of one ``IrrigationApp``."""

    def __init__(self, app):
        self._app = app
        self._handlers = {"run_zone": self.run_zone, "stop_all": self.stop_all,
                          "skip_next": self.skip_next, "pause": self.pause,
                          "resume": self.resume, "rain_delay": self.rain_delay}

    def handle(self, cmd_id: str, action: str, params: dict, reply) -> None:
        app = self._app
        handler = self._handlers.get(action)
        if handler is None:
            reply("rejected", f"irrigation unit does not know action {action!r}")
            return
        answering = True

        def reply_when_saved(status, detail="", clamped=None):
            # What the handler's answer reports (a queued run, a pause) is on disk before
            # the answer: a unit killed just after answering must not forget what it said.
            # A run's own end, answered later by the queue, is saved with its events.
            if answering and status != "rejected":
                app.save(force=True)
            reply(status, detail, clamped=clamped)

        try:
            with app.lock:
                try:
                    handler(cmd_id, command_params(action, params), reply_when_saved)
                finally:
                    answering = False
                app.step_safe()
        except Reject as exc:
            reply("rejected", str(exc))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "params"
            reply("rejected", f"bad params: {where}: {first['msg']}")
        except Exception as exc:  # noqa: BLE001 - answer every command
            logger.exception("command %s %s failed", cmd_id, action)
            reply("failed", str(exc))

    def run_zone(self, cmd_id, p: RunZoneParams, reply) -> None:
        app = self._app
        if p.zone not in app.zones:
            raise Reject(f"no zone named {p.zone!r} (zones: {', '.join(app.zones)})")
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
            reply("rejected", f"daily water limit reached "
                              f"({app.config.limits.max_daily_water_min:g} min)",
                  clamped=report)
            return
        app.faults.pop(p.zone, None)  # an operator's explicit try clears a fault
        run = app.queue_run(f"manual:{cmd_id}", p.zone, "manual", allowed, now,
                            cmd_id=cmd_id, split=False)
        app.queue.replies[run.run_id] = reply
        reply("accepted", f"zone {p.zone} for {allowed:.0f} s", clamped=report)

    def stop_all(self, cmd_id, params, reply) -> None:
        app = self._app
        now = app.clock.now()
        n = len(app.queue.runs)
        for run in list(app.queue.runs):
            app.queue.stop(run, "stop_all", now)
        app.cut_supply()
        reply("done", f"stopped {n} run(s); every output off")

    def skip_next(self, cmd_id, p: SkipNextParams, reply) -> None:
        app = self._app
        if p.feeder is not None:
            raise Reject("an irrigation unit has no feeders")
        if p.zone is not None and p.zone not in app.zones:
            raise Reject(f"no zone named {p.zone!r}")
        app.holds.skip([p.zone or ALL])
        app.changed()
        reply("done", f"next scheduled run of {p.zone or 'every zone'} will be skipped")

    def pause(self, cmd_id, p: PauseParams, reply) -> None:
        app = self._app
        if not app.clock_synced():
            raise Reject("clock not synchronised: time-bounded commands are refused")
        now = app.clock.now()
        try:
            until = app.holds.pause(p.until, now)
        except HoldRefused as exc:
            raise Reject(str(exc)) from None
        for run in list(app.queue.runs):
            app.queue.stop(run, "paused", now)
        app.cut_supply()
        app.changed()
        app.publisher.event("paused", until=until.isoformat(), cmd_id=cmd_id)
        reply("done", f"paused until {until.astimezone(app.site.tz).isoformat()}")

    def resume(self, cmd_id, params, reply) -> None:
        app = self._app
        cleared = app.holds.resume()
        cleared += [name for name, v in (("faults", app.faults),
                                         ("leak", app.inputs.leak_active)) if v]
        app.faults.clear()
        app.inputs.leak_active = False
        app.changed()
        app.publisher.event("resumed", cleared=cleared, cmd_id=cmd_id)
        reply("done", "cleared: " + (", ".join(cleared) or "nothing"))

    def rain_delay(self, cmd_id, p: RainDelayParams, reply) -> None:
        app = self._app
        try:
            app.holds.rain_delay(p.hours, app.clock.now())
        except HoldRefused as exc:
            raise Reject(str(exc)) from None
        app.changed()
        reply("done", f"rain delay {p.hours:g} h")
