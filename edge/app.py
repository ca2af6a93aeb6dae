"""What both daemons share: outputs that fail closed, a job scheduler, alarms.

An app (``edge.irrigation.app.IrrigationApp``, ``edge.fish_feeder.app.FishFeederApp``)
subclasses ``App``, builds its devices from the config in ``__init__`` and registers its
jobs in ``start()``. The service loop (``edge.service``) calls ``tick()`` often and
``close()`` once, always, which turns every output off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from protocol.models import PARAMS_BY_ACTION, CommandAction, ReplyCode

from .config import problems
from .errors import ConfigError
from .hardware import OutputBank, PulseCounter
from .scheduler import JobScheduler
from .state import StateStore

logger = logging.getLogger(__name__)


ReplyFn = Callable[..., None]
"""``reply(status, code, *, clamped=None, **params)``: status is accepted, rejected, done or
failed; ``code`` a ``protocol.models.ReplyCode`` and ``params`` its parameters (names and
numbers: the link makes the English ``detail`` from them)."""


def bad_params(exc: ValidationError) -> dict:
    """The params of a ``bad_params`` reply for the first problem of ``exc``: the field, the
    reason's code (pydantic's error type) and its scalar bounds (``ge``, ``le``, ...)."""
    first = exc.errors()[0]
    ctx = {k: v for k, v in (first.get("ctx") or {}).items()
           if isinstance(v, str | int | float | bool) and k != "error"}
    return {"field": ".".join(str(p) for p in first["loc"]) or "params",
            "reason_code": first["type"], **ctx}


def command_params(action: str, params: BaseModel | dict | None) -> BaseModel:
    """A command's params as the protocol's model for ``action``: as the link hands them
    (already decoded with the command), or read once here from a plain dict (raises
    ``pydantic.ValidationError``). No app declares its own params models."""
    model = PARAMS_BY_ACTION[CommandAction(action)]
    return params if isinstance(params, model) else model.model_validate(params or {})


class App:
    """Base of both daemons.

    Subclasses implement:

    - ``handle_command(cmd_id, action, params, reply)``: called by the edge link (``params``
      the protocol's typed params of the action; ``command_params`` reads a dict) after it
      has checked expiry and duplicates. Call ``reply("accepted", code, clamped=...,
      **params)`` or ``reply("rejected", code, **params)`` at once, and
      ``reply("done"|"failed", code, **params)`` when a longer action ends.
    - ``apply_remote_config(version, body)``: apply and persist the desired config sent by
      the controller (schedules and rules, never the local hard limits). ``body`` comes
      decoded with the class's ``schedule_model`` (the protocol's schedule model of the
      kind); raise ``ConfigError`` when it does not fit the unit (an unknown zone).
    - ``readings()``: the sensor readings for telemetry, names with units.
    """

    kind: ClassVar[str] = ""

    def __init__(self, config, *, pin_factory, clock, publisher,
                 state: StateStore | None = None,
                 clock_synced: Callable[[], bool] | None = None):
        self.config = config
        self.clock = clock
        self.publisher = publisher
        self.alarms_raised: list[str] = []
        """Codes of the alarms raised since this app was made (the health file's)."""
        self.pin_factory = pin_factory
        self.state = state if state is not None else StateStore(":memory:")
        self.clock_synced = clock_synced or (lambda: True)
        self.scheduler = JobScheduler(clock, config.site.timezone, on_error=self._job_failed)
        # Outputs are created first, and so driven off, before anything else happens.
        self.outputs = OutputBank(pin_factory=pin_factory, clock=clock, on_limit=self._limit_hit)
        for spec in config.outputs:
            self.outputs.add(spec.name, spec.pin, max_on_s=spec.max_on_s,
                             active_high=spec.active_high)
        logger.info("every output off: %s", ", ".join(s.name for s in config.outputs))
        self.pulse_counters: dict[str, PulseCounter] = {}
        self._closed = False

    # -- helpers for subclasses -------------------------------------------------------
    def pulse_counter(self, name: str) -> PulseCounter:
        if name not in self.pulse_counters:
            spec = self.config.input(name)
            self.pulse_counters[name] = PulseCounter(
                spec.pin, pin_factory=self.pin_factory, pull_up=spec.pull_up
            )
        return self.pulse_counters[name]

    def event_once(self, key: str, type: str, **details: Any) -> None:
        """Report an event that a restart may report again: the publisher stores it only
        if nothing was stored under ``key`` before (see ``Publisher.event_once``).

        ``key`` names what happened, not when it was reported: the same on every start
        that finds the same saved state, different for anything that happened anew."""
        once = getattr(self.publisher, "event_once", None)
        if once is None:  # a publisher that keeps nothing across restarts
            self.publisher.event(type, **details)
        else:
            once(key, type, **details)

    def event_stored(self, key: str) -> bool | None:
        """Whether an event was stored under ``key`` by ``event_once``: True or False, or
        None when the publisher cannot tell now (its outbox cannot be read). A publisher
        that keeps no keys knows of none (False).

        For a report made before the state write that records what it reports (a run
        finished, then the run removed): a start that finds the old state asks whether
        the report was made."""
        lookup = getattr(self.publisher, "event_stored", None)
        return False if lookup is None else lookup(key)

    def alarm(self, code: str, message: str, **details: Any) -> None:
        """Raise an alarm (``code`` one of ``protocol.events.AlarmCode``)."""
        from protocol.events import Alarm  # at the first alarm, not at start-up

        alarm = Alarm(code=code, message=message, **details)
        logger.warning("alarm %s: %s", alarm.code.value, message)
        self.alarms_raised.append(alarm.code.value)
        self.publisher.event("alarm", **alarm.model_dump(mode="json", exclude_unset=True))

    def _limit_hit(self, output, on_s: float) -> None:
        self.alarm("max_on_time", f"{output.name} was forced off after {on_s:.0f} s",
                   output=output.name, on_s=round(on_s, 1), max_on_s=output.max_on_s)

    def _job_failed(self, name: str, exc: BaseException) -> None:
        self.alarm("job_failed", f"job {name} failed: {exc}; every output switched off",
                   job=name)
        self.fault_stop(f"job {name} failed")

    def fault_stop(self, reason: str) -> None:
        """Something failed mid-way: fail closed. Subclasses also forget their runs."""
        logger.error("fault stop: %s", reason)
        self.outputs.all_off()

    def outlook(self):
        """Holds in force and the next start (``protocol.outlook.Outlook``), for the
        status; None for a kind that has no schedules."""
        return None

    def handle_command(self, cmd_id: str, action: str, params: dict, reply: ReplyFn) -> None:
        reply("rejected", ReplyCode.UNKNOWN_ACTION, action=action)

    schedule_model: ClassVar[type[BaseModel] | None] = None
    """The protocol's schedule model of this kind (``protocol.kinds``): the link decodes a
    desired config's body with it and hands the app the model."""

    def decode_schedule(self, version: int, body: dict) -> BaseModel | dict:
        """``body`` as ``schedule_model`` (as is without one); raises ``ConfigError``."""
        if self.schedule_model is None or isinstance(body, self.schedule_model):
            return body
        try:
            return self.schedule_model.model_validate(body)
        except ValidationError as exc:
            raise ConfigError(f"remote config v{version}",
                              list(problems(exc, body, self.schedule_model))) from None

    def apply_remote_config(self, version: int, body) -> None:
        raise NotImplementedError

    def readings(self) -> dict[str, Any]:
        return {}

    def publish_telemetry(self) -> None:
        self.publisher.telemetry(self.readings(), self.outputs.states())

    def busy(self) -> bool:
        """Whether a run or a feeding is under way (an update waits until it is not):
        here, any output on; the apps add what they know (a run soaking between cycles)."""
        return any(self.outputs.states().values())

    # -- the life cycle ----------------------------------------------------------------
    def start(self) -> None:
        """Register jobs; subclasses extend and call ``super().start()``."""
        self.scheduler.every_s(self.config.telemetry.interval_s, self.publish_telemetry,
                               "telemetry")

    def tick(self) -> None:
        self.scheduler.run_pending()

    def close(self) -> None:
        """Turn every output off and release the pins; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.outputs.all_off()
        finally:
            self.outputs.close()
            for counter in self.pulse_counters.values():
                counter.close()
