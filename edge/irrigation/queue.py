"""The run queue: runs waiting, watering and soaking, and the reports each run makes.

A *run* is one zone watered for a planned time, possibly in several cycles with soaks in
between (cycle-and-soak). ``RunQueue`` holds the runs in order, starts and ends their
cycles, and reports them: ``run_started`` (first cycle), ``run_resumed``,
``run_finished`` (with ``duration_s`` of water, ``litres`` and how it ``ended``), or
``run_skipped`` (with the ``reason``) when it never ran. Nothing is silently dropped.

A run's reports are stored once per run (``App.event_once``, keys
``run_started:<run id>:<created>``, ``run_finished:...``, ``run_skipped:...``), so that
``recover`` can ask the outbox, after a kill, what was reported. The queue switches no
output: a cycle that ends puts its zone in ``released``, and the app's supply
sequencing closes it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from protocol.models import ReplyCode

from .rules import EPS_S, MIN_RUN_S, clamp, from_iso, split_cycles

logger = logging.getLogger(__name__)



def _key(event: str, run: Run) -> str:
    """The outbox key of a report made once per run."""
    return f"{event}:{run.run_id}:{run.created}"


@dataclass
class Run:
    """One zone watered for a planned time, in one or more cycles."""

    run_id: str
    zone: str
    trigger: str  # schedule | sensor | manual
    cycles: list[float]  # cycle lengths still to do, the running one first
    soak_s: float
    planned_s: float
    seq: int = 0
    program: str | None = None
    planned_at: str | None = None  # local time of the planned start
    cmd_id: str | None = None
    created: str = ""
    state: str = "queued"  # queued | active | soaking
    started: str | None = None
    done_s: float = 0.0
    cycle_done_s: float = 0.0
    litres: float = 0.0
    cycles_done: int = 0
    resumed: bool = False
    resumed_reported: bool = False
    interruptions: int = 0  # run_interrupted reports saved with the run
    # in this process only
    not_before: float = field(default=0.0, metadata={"runtime": True})
    cycle_s: float = field(default=0.0, metadata={"runtime": True})
    valve_open: bool = field(default=False, metadata={"runtime": True})
    water_since: float | None = field(default=None, metadata={"runtime": True})
    acct_mark: float = field(default=0.0, metadata={"runtime": True})
    announce: bool = field(default=False, metadata={"runtime": True})  # run_started due

    @property
    def automatic(self) -> bool:
        return self.trigger != "manual"

    def to_doc(self) -> dict:
        doc = {f.name: getattr(self, f.name) for f in fields(self)
               if not f.metadata.get("runtime")}
        doc["cycles"] = list(self.cycles)
        return doc

    @classmethod
    def from_doc(cls, doc: dict) -> Run:
        return cls(**doc)

    def details(self) -> dict:
        d: dict[str, Any] = {"run_id": self.run_id, "zone": self.zone, "trigger": self.trigger}
        if self.program:
            d["program"] = self.program
        if self.planned_at:
            d["planned_at"] = self.planned_at
        if self.cmd_id:
            d["cmd_id"] = self.cmd_id
        if self.resumed:
            d["resumed"] = True
        return d


class RunQueue:
    """The runs of the unit, in order, with their cycles and their reports.

    ``app`` gives the reporting (``publisher.event``, ``event_once``, ``event_stored``);
    ``detail(zone)`` adds what the soil probe reads to a report; ``changed()`` says that
    something to save has changed.
    """

    def __init__(self, runs: list[Run], *, app, detail: Callable[[str], dict],
                 changed: Callable[[], None]):
        self.runs = runs
        self._app = app
        self._detail = detail
        self._changed = changed
        self._seq = itertools.count(max((r.seq for r in runs), default=0) + 1)
        self.replies: dict[str, Any] = {}  # run id -> the reply of its run_zone command
        self.released: list[str] = []  # valves of runs that ended, to close

    def active(self) -> list[Run]:
        return [r for r in self.runs if r.state == "active"]

    def flowing(self) -> list[Run]:
        return [r for r in self.runs if r.state == "active" and r.water_since is not None]

    def has_zone(self, zone: str) -> bool:
        return any(r.zone == zone for r in self.runs)

    def ready(self, mono: float) -> list[Run]:
        """Runs that may start a cycle now: manual ones first, then in queue order."""
        return sorted((r for r in self.runs if r.state in ("queued", "soaking")
                       and r.not_before <= mono + EPS_S),
                      key=lambda r: (r.automatic, r.seq))

    def due_times(self) -> list[float]:
        """When cycles end and soaks are over (monotonic seconds)."""
        return [r.water_since + r.cycle_s if r.state == "active" else r.not_before
                for r in self.runs if r.state == "soaking"
                or (r.state == "active" and r.water_since is not None)]

    def valves_closed(self) -> None:
        """Every valve was closed at once: no run has water, nothing is left to close."""
        for run in self.runs:
            run.valve_open = False
            run.water_since = None
        self.released.clear()

    # -- queueing ---------------------------------------------------------------------
    def enqueue(self, run_id: str, zone: str, trigger: str, total_s: float, now: datetime,
                *, cycle_s: float | None, soak_s: float, max_cycle: tuple[float, str, float],
                program: str | None = None, planned_at: str | None = None,
                cmd_id: str | None = None) -> Run:
        """Queue a run of ``total_s`` in cycles of ``cycle_s`` (None: one cycle), each cut
        to ``max_cycle`` (``ledger.zone_max_cycle_s``); a cut is reported."""
        cycles = split_cycles(total_s, cycle_s)
        zmax, output, max_on_s = max_cycle
        clamps = []
        if cycles and max(cycles) > zmax:
            cycles = [min(c, zmax) for c in cycles]
            _, c = clamp(total_s, sum(cycles), "duration_s", "max_on_s")
            clamps.append((c, {"output": output, "max_on_s": round(max_on_s, 1)}))
        run = Run(run_id=run_id, zone=zone, trigger=trigger, cycles=cycles,
                  soak_s=soak_s if len(cycles) > 1 else 0.0,
                  planned_s=sum(cycles), seq=next(self._seq), program=program,
                  planned_at=planned_at, cmd_id=cmd_id, created=now.isoformat())
        for c, extra in clamps:
            self.report_clamp(c, run, **extra)
        self.runs.append(run)
        self._changed()
        logger.info("queued %s: %s for %.0f s in %d cycle(s)", run_id, zone, run.planned_s,
                    len(cycles))
        return run

    def report_clamp(self, c, run: Run, **extra) -> None:
        self._app.publisher.event("limit_clamped", **c.as_dict(), run_id=run.run_id,
                                  zone=run.zone,
                                  **({"cmd_id": run.cmd_id} if run.cmd_id else {}), **extra)

    def expire(self, now: datetime, max_wait: timedelta) -> None:
        for run in [r for r in self.runs if r.state == "queued"]:
            created = from_iso(run.created)
            if created is not None and now - created > max_wait:
                self.finish(run, "queue_timeout", now)

    # -- cycles -----------------------------------------------------------------------
    def begin_cycle(self, run: Run, now: datetime) -> None:
        run.state = "active"
        run.cycle_s = run.cycles[0]
        run.cycle_done_s = 0.0
        run.water_since = None
        run.valve_open = False
        if run.started is None:
            run.started = now.isoformat()
            run.announce = True  # once the run is saved as active (the app's step)
        elif run.resumed and not run.resumed_reported:
            run.resumed_reported = True
            self._app.publisher.event("run_resumed", **run.details(), started=run.started,
                                      done_s=round(run.done_s, 1),
                                      remaining_s=round(sum(run.cycles), 1))
        self._changed()

    def announce_started(self) -> None:
        for run in self.runs:
            if run.announce:
                self.report_started(run)

    def report_started(self, run: Run, **extra) -> None:
        """Store the run's ``run_started``, once per run (a restart that finds the run
        saved as started reports it too, in case the kill came before the report)."""
        run.announce = False
        self._app.event_once(_key("run_started", run), "run_started", **run.details(),
                             planned_s=round(run.planned_s, 1),
                             cycles=run.cycles_done + len(run.cycles),
                             soak_s=round(run.soak_s, 1), **self._detail(run.zone), **extra)

    def end_due_cycles(self, now: datetime, mono: float) -> None:
        for run in self.flowing():
            if mono + EPS_S >= run.water_since + run.cycle_s:
                self.cycle_done(run, now, mono)

    def cycle_done(self, run: Run, now: datetime, mono: float) -> None:
        run.cycles.pop(0)
        run.cycles_done += 1
        run.cycle_done_s = 0.0
        run.water_since = None
        run.valve_open = False
        self.released.append(run.zone)
        if run.cycles:
            run.state = "soaking"
            run.not_before = mono + run.soak_s
            self._changed()
        else:
            self.finish(run, "completed", now)

    def stop(self, run: Run, ended: str, now: datetime, **extra: Any) -> None:
        """End a run at once (its valve is released, to close); ``extra`` goes into its
        end report (``stopped_by``: the command of a person's stop)."""
        if run.valve_open:
            self.released.append(run.zone)
        run.valve_open = False
        run.water_since = None
        self.finish(run, ended, now, **extra)

    def finish(self, run: Run, ended: str, now: datetime, **extra: Any) -> None:
        if run in self.runs:
            self.runs.remove(run)
        self._changed()
        # Reported before the save that removes the run: a restart that still finds the
        # run asks the outbox for these keys (``recover``).
        if run.started is None:
            self._app.event_once(_key("run_skipped", run), "run_skipped", **run.details(),
                                 reason=ended, **self._detail(run.zone), **extra)
            answer = ("failed", ReplyCode.RUN_SKIPPED, {"zone": run.zone, "reason": ended})
        else:
            if run.announce:  # ended in the step that started it
                self.report_started(run)
            self._app.event_once(_key("run_finished", run), "run_finished", **run.details(),
                                 started=run.started, duration_s=round(run.done_s, 1),
                                 litres=round(run.litres, 1), cycles=run.cycles_done,
                                 planned_s=round(run.planned_s, 1), ended=ended, **extra)
            done = {"zone": run.zone, "duration_s": round(run.done_s),
                    "litres": round(run.litres, 1)}
            answer = (("done", ReplyCode.RUN_COMPLETED, done) if ended == "completed"
                      else ("failed", ReplyCode.RUN_ENDED, {**done, "ended": ended}))
        reply = self.replies.pop(run.run_id, None)
        if reply is not None:
            status, code, params = answer
            try:
                reply(status, code, **params)
            except Exception:  # noqa: BLE001 - a reply problem is the link's to report
                logger.exception("reply for %s failed", run.run_id)

    # -- after a restart ----------------------------------------------------------------
    def recover(self, policy: str, mono: float) -> None:
        """After an unclean stop: settle runs whose end was reported, record interrupted
        runs, then resume or drop them (``policy``: ``resume`` or ``drop``).

        Reports go to the outbox and runs to the state file, two files, and a kill can
        fall between the two writes. So each report is stored under a key and this start
        asks the outbox what was reported:

        - a run whose ``run_finished`` (or ``run_skipped``) is stored had ended, and only
          the save that removes it was lost: it is removed, never resumed;
        - a run saved as started is announced (``run_started``, stored once: the run is
          saved before it is announced, so it may be missing), then reported interrupted
          under the key (run, creation, interruptions saved so far). A start killed
          before its own save reports it again under the same key, which the outbox
          stores once; the key changes only when the run is saved again.

        A run of which the outbox cannot say whether it ended is dropped, not resumed."""
        for run in list(self.runs):
            ended = self._end_reported(run)
            if ended:
                logger.warning("run %s had ended before the unit stopped (its end is "
                               "reported, its removal was not saved): removed", run.run_id)
                self.runs.remove(run)
                continue
            if run.state == "queued":
                continue
            remaining = list(run.cycles)
            if run.state == "active" and remaining:
                remaining[0] = max(0.0, remaining[0] - run.cycle_done_s)
            remaining = [c for c in remaining if c >= MIN_RUN_S]
            resume = policy == "resume" and bool(remaining)
            if resume and ended is None:
                logger.error("cannot tell whether run %s ended (outbox unreadable): "
                             "dropped, not resumed", run.run_id)
                resume = False
            action = "resumed" if resume else "dropped"
            self.report_started(run, started=run.started)
            run.interruptions += 1
            self._app.event_once(
                f"run_interrupted:{run.run_id}:{run.created}:{run.interruptions}",
                "run_interrupted", **run.details(), started=run.started,
                planned_s=round(run.planned_s, 1), done_s=round(run.done_s, 1),
                remaining_s=round(sum(remaining), 1), action=action, policy=policy)
            logger.warning("run %s was interrupted; %s", run.run_id, action)
            if action == "dropped":
                self.runs.remove(run)
                continue
            run.cycles, run.state, run.resumed = remaining, "soaking", True
            run.resumed_reported = False
            run.cycle_done_s, run.not_before = 0.0, mono
        self._changed()

    def _end_reported(self, run: Run) -> bool | None:
        """Whether the run's ``run_finished`` or ``run_skipped`` is stored (None: the
        outbox cannot tell)."""
        answers = [self._app.event_stored(_key("run_finished", run)),
                   self._app.event_stored(_key("run_skipped", run))]
        if True in answers:
            return True
        return None if None in answers else False
