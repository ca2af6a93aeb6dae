"""When runs start by themselves: program starts that fall due, and dry soil.

``Planning`` turns the program's planned starts (``protocol.planner.StartPlanner``) into
queued runs, or ``run_skipped`` events with the reason (missed, clock not synchronised,
skip, pause, rain, rain delay, leak, zone fault, watering %, moisture), and starts a
sensor run where a soil rule's latch says the zone is dry. ``hold_reason`` is why no
automatic run may start now; the app's dispatch asks it again before each cycle.

It reads the app's program, holds, faults, inputs and ledger, and queues through
``app.queue_run``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from protocol.holds import ALL
from protocol.planner import MAX_CATCH_UP, Plan, Site, StartPlanner

from ..outlook import OutlookCache
from .config import IrrigationProgramConfig
from .rules import MIN_RUN_S, adjusted_s


class Planning:
    """The program's starts and the soil's runs, for one unit."""

    def __init__(self, app, program: IrrigationProgramConfig, site: Site,
                 mark: datetime | None):
        self._app = app
        self.site = site
        self.mark = mark  # up to when planned starts were looked at (saved)
        self._outlook = OutlookCache()
        self.use(program)

    def use(self, program: IrrigationProgramConfig) -> None:
        """Plan with a new program (from the next step on)."""
        self.planner = StartPlanner([Plan.of(p) for p in program.programs], self.site)
        self.next_start = None  # the next planned start after next_from (a cache)
        self.next_from: datetime | None = None  # None: not computed yet

    @property
    def restart_mark(self) -> datetime | None:
        """The mark to save: where starts were last looked for.

        Between two looks ``mark`` follows every step, but no start lies between the
        last look and it (``check_schedule`` looks again at the next start), so a restart
        from the last look finds the same starts as one from ``mark``. Saving this one
        writes the state file when starts were looked at, not at every checkpoint.
        """
        return self.next_from if self.next_from is not None else self.mark

    def outlook(self, now: datetime):
        """Holds in force and the next program start, for the status (``edge.outlook``)."""
        app = self._app
        return self._outlook.get(
            now, holds=app.holds, clock_synced=app.clock_synced(), planner=self.planner,
            describe=lambda planned: {"program": planned.program})

    def hold_reason(self, now: datetime, trigger: str = "schedule") -> str | None:
        """Why no automatic run may start now, or None.

        A rain delay holds scheduled runs; a run a soil probe asks for waits only while
        it is raining (the probe sees what the rain did to the soil).
        """
        app = self._app
        if app.holds.expire(now):
            app.changed()
        if app.holds.reason(now) == "paused":
            return "paused"
        if app.inputs.raining:
            return "rain"
        reason = app.holds.reason(now, rain_delay=trigger != "sensor")
        if reason is not None:
            return reason
        if app.inputs.leak_active:
            return "leak"
        return None

    def check_schedule(self, now: datetime) -> None:
        """Queue (or skip) the program starts that fell due since the last look."""
        if self.mark is None or now < self.mark:
            self.mark = self.next_from = now  # first step, or the clock was stepped back
            self.next_start = self.planner.next_after(now)
            return
        if self.next_from is not None and self.next_from <= self.mark:
            nxt = self.next_start
            horizon = nxt.at if nxt is not None else self.next_from + timedelta(days=7)
            if now < horizon:
                self.mark = now  # nothing falls due before the next start: no expansion
                return
        after = max(self.mark, now - MAX_CATCH_UP)
        for planned in self.planner.between(after, now):
            self._planned_start(planned, now)
        self.mark = now
        self.next_start, self.next_from = self.planner.next_after(now), now

    def _planned_start(self, planned, now: datetime) -> None:
        app = self._app
        program = next((p for p in app.program.programs if p.name == planned.program), None)
        if program is None:
            return
        base = {"trigger": "schedule", "program": program.name,
                "planned_at": planned.at.isoformat()}
        zones = [pz.zone for pz in program.zones]
        late_s = (now - planned.at).total_seconds()
        if late_s > app.config.runs.late_start_grace_s:
            reason = "missed"
        elif not app.clock_synced():
            reason = "clock_not_synced"
        elif app.holds.take_skip(ALL):
            app.changed()
            reason = "skip_next"
        else:
            reason = self.hold_reason(now)
        if reason is not None:
            app.publisher.event("run_skipped", zones=zones, reason=reason, **base)
            return
        for pz in program.zones:
            run_id = f"{program.name}@{planned.at:%Y-%m-%dT%H:%M}:{pz.zone}"
            total = adjusted_s(pz.duration_min, app.program.watering_pct, program.watering_pct)
            if app.holds.take_skip(pz.zone):
                app.changed()
                reason = "skip_next"
            elif pz.zone in app.faults:
                reason = "zone_fault"
            elif total < MIN_RUN_S:
                reason = "watering_pct"
            else:
                reason = app.inputs.moisture_gate(pz.zone, app.program)
            if reason is not None:
                app.publisher.event("run_skipped", run_id=run_id, zone=pz.zone, reason=reason,
                                    **app.inputs.moisture_detail(pz.zone), **base)
                continue
            app.queue_run(run_id, pz.zone, "schedule", total, now, program=program.name,
                          planned_at=planned.at.isoformat())

    def sensor_runs(self, now: datetime) -> None:
        """Start a run where a soil rule says the zone is dry (once per ``min_interval``;
        a hold is reported once while it lasts)."""
        app = self._app
        inputs = app.inputs
        for zone in inputs.soil:
            rule = app.program.rules_for(zone).moisture
            if rule is None or rule.start_below_pct is None:
                continue
            zs = inputs.zone_state[zone]
            if inputs.soil_stale[zone] or not zs.latched:
                zs.blocked = None
                continue
            if app.queue.has_zone(zone):
                continue
            if zs.last_sensor_start is not None:
                since = (now - zs.last_sensor_start).total_seconds()
                if since < 0:  # the clock was stepped back
                    zs.last_sensor_start = now
                    continue
                if since < rule.min_interval_min * 60:
                    continue
            reason = self.hold_reason(now, "sensor")
            if reason is None and zone in app.faults:
                reason = "zone_fault"
            if reason is None and app.ledger.budget_left_s(app.queue.runs) < MIN_RUN_S:
                reason = "daily_limit"
            if reason is not None:
                if zs.blocked != reason:
                    zs.blocked = reason
                    app.publisher.event("run_skipped", zone=zone, trigger="sensor",
                                        reason=reason, **inputs.moisture_detail(zone))
                continue
            zs.blocked = None
            zs.last_sensor_start = now
            app.changed()
            run_id = f"sensor:{zone}:{now.astimezone(self.site.tz):%Y-%m-%dT%H:%M:%S}"
            app.queue_run(run_id, zone, "sensor", rule.run_min * 60.0, now)

    def wake_at(self, now: datetime, mono: float) -> float | None:
        """The monotonic time of the next planned start (a step is due then)."""
        if self.next_start is None:
            return None
        return mono + (self.next_start.at - now).total_seconds()
