"""The hardware layer: outputs that fail closed, and the inputs the rules read.

Everything here sits on gpiozero with the pin factory passed in (never gpiozero's
process-wide default): the real factory on a Raspberry Pi, ``MockFactory`` elsewhere or
when the config asks for it, so the same code runs in the field, in tests and in the
simulator.

Safety lives in ``Output`` itself, not in the scheduler or the apps:

- an output is driven off the moment it is constructed (``initial_value=False``), so a
  daemon restarted after a crash switches everything off before it does anything else;
- ``on()`` arms a timer on the injected clock that forces the output off after its
  configured maximum on-time, whatever asked for it to be on;
- ``close()`` (and ``OutputBank.close()``) turns it off and releases the pin; both are
  idempotent and context managers, so a ``finally`` or ``with`` always leaves it off.

Relays must be wired so that a floating pin means off (docs/wiring.md): GPIO lines float
when the process dies, and no software can help then.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from gpiozero import DigitalInputDevice, DigitalOutputDevice

from .errors import HardwareError

logger = logging.getLogger(__name__)


def on_raspberry_pi() -> bool:
    try:
        with open("/proc/device-tree/model", encoding="ascii", errors="replace") as f:
            return "Raspberry Pi" in f.read()
    except OSError:
        return False


def make_pin_factory(kind: str = "auto"):
    """Return a gpiozero pin factory: ``mock``, ``lgpio`` or ``auto`` (lgpio on a Pi).

    ``SMARTCITY_PIN_FACTORY=mock`` in the environment forces the mock factory, so a
    unit's real config can be tried on a laptop.
    """
    kind = os.environ.get("SMARTCITY_PIN_FACTORY", kind)
    if kind == "auto":
        kind = "lgpio" if on_raspberry_pi() else "mock"
    if kind == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)
    if kind == "lgpio":
        try:
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        except Exception as exc:  # noqa: BLE001 - any import or chip error means no GPIO
            raise HardwareError(f"cannot open the GPIO chip with lgpio: {exc}") from exc
    raise HardwareError(f"unknown pin factory {kind!r} (use auto, mock or lgpio)")


class Output:
    """A valve, pump or motor relay that is off unless proven otherwise.

    ``on(for_s=None)`` switches on; the output switches itself off after ``for_s`` (if
    given) and in any case after ``max_on_s``. When the maximum cuts it off,
    ``on_limit(output, on_s)`` is called so the app can raise an alarm.
    """

    def __init__(
        self,
        name: str,
        pin,
        *,
        pin_factory,
        clock,
        max_on_s: float,
        active_high: bool = True,
        on_limit: Callable[[Output, float], None] | None = None,
    ):
        if max_on_s <= 0:
            raise HardwareError(f"output {name}: max_on_s must be positive")
        self.name = name
        self.max_on_s = float(max_on_s)
        self._clock = clock
        self._on_limit = on_limit
        self._lock = threading.RLock()
        self._timers: list = []
        self._on_since: float | None = None
        self.total_on_s = 0.0
        try:
            self._device = DigitalOutputDevice(
                pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
            )
        except Exception as exc:  # noqa: BLE001 - gpiozero raises many kinds here
            raise HardwareError(f"output {name}: cannot claim pin {pin}: {exc}") from exc

    # -- the gpiozero vocabulary -------------------------------------------------
    @property
    def is_active(self) -> bool:
        with self._lock:
            return self._device is not None and bool(self._device.is_active)

    @property
    def value(self) -> int:
        return int(self.is_active)

    @property
    def on_for_s(self) -> float:
        """Seconds the output has been on now (0 when off)."""
        with self._lock:
            if self._on_since is None:
                return 0.0
            return self._clock.monotonic() - self._on_since

    def on(self, for_s: float | None = None) -> None:
        with self._lock:
            if self._device is None:
                raise HardwareError(f"output {self.name} is closed")
            if self._on_since is None:
                self._on_since = self._clock.monotonic()
                self._device.on()
                self._timers.append(self._clock.call_later(self.max_on_s, self._limit))
                logger.info("%s on", self.name)
            if for_s is not None:
                remaining = self.max_on_s - self.on_for_s
                self._timers.append(
                    self._clock.call_later(min(for_s, remaining), self._timed_off)
                )

    def off(self) -> None:
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            if self._device is not None:
                self._device.off()
            if self._on_since is not None:
                self.total_on_s += self._clock.monotonic() - self._on_since
                self._on_since = None
                logger.info("%s off", self.name)

    def close(self) -> None:
        with self._lock:
            if self._device is None:
                return
            self.off()
            self._device.close()
            self._device = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- timers --------------------------------------------------------------------
    def _timed_off(self) -> None:
        self.off()

    def _limit(self) -> None:
        with self._lock:
            if self._on_since is None:
                return
            on_s = self.on_for_s
            self.off()
        logger.warning("%s forced off after its maximum on-time (%.1f s)", self.name, on_s)
        if self._on_limit is not None:
            self._on_limit(self, on_s)


class OutputBank:
    """All outputs of a unit; ``all_off()`` and ``close()`` never skip one."""

    def __init__(self, *, pin_factory, clock, on_limit=None):
        self._factory = pin_factory
        self._clock = clock
        self._on_limit = on_limit
        self._outputs: dict[str, Output] = {}
        self._closed = False

    def add(self, name: str, pin, *, max_on_s: float, active_high: bool = True) -> Output:
        if name in self._outputs:
            raise HardwareError(f"output {name} defined twice")
        out = Output(
            name, pin, pin_factory=self._factory, clock=self._clock, max_on_s=max_on_s,
            active_high=active_high, on_limit=self._on_limit,
        )
        self._outputs[name] = out
        return out

    def __getitem__(self, name: str) -> Output:
        return self._outputs[name]

    def __iter__(self):
        return iter(self._outputs.values())

    def __len__(self):
        return len(self._outputs)

    def states(self) -> dict[str, bool]:
        return {name: out.is_active for name, out in self._outputs.items()}

    def any_on(self) -> bool:
        return any(out.is_active for out in self._outputs.values())

    def all_off(self) -> None:
        errors = []
        for out in self._outputs.values():
            try:
                out.off()
            except Exception as exc:  # noqa: BLE001 - keep switching the others off
                logger.exception("could not switch %s off", out.name)
                errors.append(exc)
        if errors:
            raise HardwareError(f"{len(errors)} output(s) could not be switched off")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for out in self._outputs.values():
            try:
                out.close()
            except Exception:  # noqa: BLE001 - keep closing the others
                logger.exception("could not close %s", out.name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PulseCounter:
    """Counts rising edges on an input: flow-meter or auger rotation pulses."""

    def __init__(self, pin, *, pin_factory, pull_up: bool = False):
        self._lock = threading.Lock()
        self._count = 0
        self._device = DigitalInputDevice(pin, pull_up=pull_up, pin_factory=pin_factory)
        self._device.when_activated = self._pulse

    def _pulse(self, *_):
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def add(self, n: int) -> None:
        """Add ``n`` pulses at once (the simulator's shortcut for a fast meter)."""
        with self._lock:
            self._count += n

    def close(self) -> None:
        self._device.close()
