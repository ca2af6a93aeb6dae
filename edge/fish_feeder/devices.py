"""A feeder: its motor, the dose it runs, and the physical proof that feed moved.

``Feeder.start(dose_g, done)`` runs the auger or spinner motor for ``dose_g /
rate_g_per_s`` seconds (``Output.on(for_s=...)``, so the output's own timers stop it even
if this code fails; its ``max_on_s`` is the hard per-run limit). While it runs, every
``confirm_timeout_s`` the feeder checks that feed is moving:

- ``confirm_by = "pulses"``: at least ``min_pulses`` new rotation pulses since the last
  check;
- ``confirm_by = "weight"``: the hopper's weight dropped by ``min_weight_drop_g``.

No movement is a fault: the motor goes off at once, the feeder locks itself (``fault``)
and ``done`` gets a result with ``fault`` set. It never retries by itself; the app raises
the alarm and keeps the feeder locked until someone clears it.

When the run ends, the grams that went out are measured, not assumed: rotation pulses x
``g_per_pulse``, or the hopper's weight drop after ``settle_s``. ``HopperGauge`` wraps the
level sensor of either kind and gives grams and percent left.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..sensors.base import SensorError, SensorValue
from ..sensors.hopper import LoadCell, UltrasonicLevel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedResult:
    feeder: str
    planned_g: float
    commanded_g: float  # motor on-time x calibrated rate
    measured_g: float | None  # from pulses or hopper weight; None when nothing measures
    measured_by: str  # "pulses", "weight" or "none"
    duration_s: float
    pulses: int | None
    fault: str | None = None  # "jam" or "no_feed" (auger turns, weight does not drop)


class HopperGauge:
    """Feed left in a hopper, from a load cell (grams) or an ultrasonic level (percent)."""

    def __init__(self, spec, device: LoadCell | UltrasonicLevel, clock):
        self.spec = spec
        self.device = device
        self.clock = clock
        self.value = SensorValue()  # grams of feed

    @property
    def weighs(self) -> bool:
        return isinstance(self.device, LoadCell)

    def read(self) -> float:
        """Read the sensor now; returns grams of feed (raises ``SensorError``)."""
        if isinstance(self.device, LoadCell):
            grams = self.device.read() - self.spec.tare_g
        else:
            grams = self.device.read_pct() / 100.0 * self.spec.capacity_g
        self.value.update(grams, self.clock.now())
        return grams

    def grams(self) -> float | None:
        if self.value.is_stale(self.clock.now(), self.spec.stale_after_s):
            return None
        return self.value.value

    def pct(self) -> float | None:
        g = self.grams()
        if g is None:
            return None
        return round(min(100.0, max(0.0, g / self.spec.capacity_g * 100.0)), 1)

    @property
    def garbled(self) -> int:
        return getattr(self.device, "garbled", 0)

    def close(self) -> None:
        self.device.close()


class Feeder:
    """One feeder motor with its confirmation; thread-safe (timers may run on threads)."""

    def __init__(self, spec, motor, clock, *, pulses=None, hopper: HopperGauge | None = None):
        self.spec = spec
        self.name = spec.name
        self.motor = motor
        self.clock = clock
        self.pulses = pulses
        self.hopper = hopper
        self.fault: str | None = None
        self.trim = 1.0  # learned: real rate / calibrated rate (see rules.next_rate_trim)
        self._lock = threading.RLock()
        self._run: dict | None = None

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._run is not None

    @property
    def rate_g_per_s(self) -> float:
        """The calibrated rate times the learned trim."""
        return self.spec.rate_g_per_s * self.trim

    def max_dose_for_motor_g(self) -> float:
        """Grams the motor can give before its max on-time (small margin kept)."""
        return max(0.0, (self.motor.max_on_s - self.spec.settle_s - 0.5)) * self.rate_g_per_s

    def start(self, dose_g: float, done: Callable[[FeedResult], None]) -> float:
        """Start dispensing ``dose_g``; returns the planned motor time in seconds."""
        with self._lock:
            if self._run is not None:
                raise RuntimeError(f"feeder {self.name} is already running")
            if self.fault is not None:
                raise RuntimeError(f"feeder {self.name} is locked out ({self.fault})")
            duration_s = dose_g / self.rate_g_per_s
            if duration_s > self.motor.max_on_s:
                raise ValueError(f"{dose_g} g needs {duration_s:.0f} s, over max_on_s")
            run = {
                "planned_g": dose_g,
                "duration_s": duration_s,
                "t0": self.clock.monotonic(),
                "rate": self.rate_g_per_s,
                "p0": self.pulses.count if self.pulses is not None else None,
                "w0": None,
                "timers": [],
            }
            run["p_last"] = run["p0"]
            run["last_check"] = run["t0"]
            if self.hopper is not None and self.hopper.weighs:
                try:
                    run["w0"] = self.hopper.read()
                except SensorError as exc:
                    if self.spec.confirm_by == "weight":
                        raise RuntimeError(f"hopper weight unreadable: {exc}") from exc
            run["w_last"] = run["w0"]
            run["done"] = done
            self._run = run
            self.motor.on(for_s=duration_s)
            if self.spec.confirm_by != "none" and self.spec.confirm_timeout_s < duration_s:
                run["timers"].append(self.clock.call_later(self.spec.confirm_timeout_s,
                                                           self._check))
            run["timers"].append(self.clock.call_later(duration_s, self._motor_done))
            logger.info("%s: dispensing %.1f g (%.1f s)", self.name, dose_g, duration_s)
            return duration_s

    # -- while running ---------------------------------------------------------------------
    def _check(self) -> None:
        report = None
        with self._lock:
            run = self._run
            if run is None or "stopped_at" in run:
                return
            moved, detail = self._moved(run)
            run["last_check"] = self.clock.monotonic()
            if not moved:
                self._stop_motor(run)
                fault = "no_feed" if self.spec.confirm_by == "weight" and detail.get(
                    "pulses_turning") else "jam"
                self.fault = fault
                logger.warning("%s: %s (%s); motor off, feeder locked", self.name, fault, detail)
                report = self._finish(run, fault)
            else:
                elapsed = self.clock.monotonic() - run["t0"]
                if run["duration_s"] - elapsed > self.spec.confirm_timeout_s:
                    run["timers"].append(self.clock.call_later(self.spec.confirm_timeout_s,
                                                               self._check))
        _report(report)

    def _moved(self, run) -> tuple[bool, dict]:
        if self.spec.confirm_by == "pulses":
            now = self.pulses.count
            new = now - run["p_last"]
            run["p_last"] = now
            return new >= self.spec.min_pulses, {"new_pulses": new}
        if self.spec.confirm_by == "weight":
            turning = None
            if self.pulses is not None:
                now = self.pulses.count
                turning = now - run["p_last"] >= self.spec.min_pulses
                run["p_last"] = now
            try:
                w = self.hopper.read()
            except SensorError as exc:
                logger.warning("%s: hopper weight unreadable during a run: %s", self.name, exc)
                return True, {}  # no verdict from a missing reading; the next check decides
            drop = (run["w_last"] if run["w_last"] is not None else w) - w
            run["w_last"] = w
            return drop >= self.spec.min_weight_drop_g, {"drop_g": round(drop, 1),
                                                         "pulses_turning": turning}
        return True, {}

    def _motor_done(self) -> None:
        report = None
        with self._lock:
            run = self._run
            if run is None or "stopped_at" in run:
                return
            self._stop_motor(run)
            if self.spec.settle_s > 0:
                run["timers"].append(self.clock.call_later(self.spec.settle_s, self._settled))
            else:
                report = self._finish(run, self._final_check(run))
        _report(report)

    def _settled(self) -> None:
        report = None
        with self._lock:
            run = self._run
            if run is not None:
                report = self._finish(run, self._final_check(run))
        _report(report)

    def _final_check(self, run) -> str | None:
        """The stretch after the last check (all of a run shorter than one window) must
        show movement too: at least one pulse, or a third of the grams it should have
        given. Returns the fault, and locks the feeder, when it did not."""
        segment = run["stopped_at"] - run["last_check"]
        if self.spec.confirm_by == "none" or segment < 0.5 * self.spec.confirm_timeout_s:
            return None
        fault = None
        if self.spec.confirm_by == "pulses":
            if self.pulses.count - run["p_last"] < 1:
                fault = "jam"
        elif run["w_last"] is not None:
            expected = segment * run["rate"]
            try:
                drop = run["w_last"] - self.hopper.read()
            except SensorError:
                return None
            if expected >= self.spec.min_weight_drop_g and drop < expected / 3:
                fault = "no_feed"
        if fault is not None:
            self.fault = fault
            logger.warning("%s: %s in the last %.1f s of the run; feeder locked", self.name,
                           fault, segment)
        return fault

    def _stop_motor(self, run) -> None:
        self.motor.off()
        run["stopped_at"] = self.clock.monotonic()

    def _finish(self, run, fault: str | None):
        """End the run; returns ``(done, result)`` for the caller to report once it has
        let go of the feeder's lock (the app's callback takes the app's lock)."""
        for timer in run["timers"]:
            timer.cancel()
        on_s = max(0.0, min(run.get("stopped_at", self.clock.monotonic()) - run["t0"],
                            run["duration_s"]))
        measured, by, pulses = self._measure(run)
        result = FeedResult(
            feeder=self.name, planned_g=round(run["planned_g"], 1),
            commanded_g=round(on_s * run["rate"], 1),
            measured_g=None if measured is None else round(measured, 1), measured_by=by,
            duration_s=round(on_s, 2), pulses=pulses, fault=fault,
        )
        self._run = None
        return run["done"], result

    def _measure(self, run) -> tuple[float | None, str, int | None]:
        pulses = None if self.pulses is None else self.pulses.count - run["p0"]
        if self.hopper is not None and self.hopper.weighs and run["w0"] is not None:
            try:
                return max(0.0, run["w0"] - self.hopper.read()), "weight", pulses
            except SensorError as exc:
                logger.warning("%s: hopper weight unreadable after a run: %s", self.name, exc)
        if pulses is not None and self.spec.g_per_pulse is not None:
            return pulses * self.spec.g_per_pulse, "pulses", pulses
        return None, "none", pulses

    def abort(self, reason: str = "stopped") -> bool:
        """Motor off now and end the run (result with ``fault=reason``); False if idle."""
        with self._lock:
            run = self._run
            if run is None:
                self.motor.off()
                return False
            if "stopped_at" not in run:
                self._stop_motor(run)
            report = self._finish(run, reason)
        _report(report)
        return True

    def clear_fault(self) -> str | None:
        with self._lock:
            fault, self.fault = self.fault, None
            return fault


def _report(report) -> None:
    """Call a run's ``done(result)``; a failing callback must not break the feeder."""
    if report is None:
        return
    done, result = report
    try:
        done(result)
    except Exception:  # noqa: BLE001 - the app's callback must not break the feeder
        logger.exception("%s: result callback failed", result.feeder)
