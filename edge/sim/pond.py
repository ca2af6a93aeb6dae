"""A pond and its feeders for the fish feeder simulator (``edge.sim.fish_feeder``).

The pond (``PondSim``)
    Temperature follows the day (coolest before dawn, warmest mid-afternoon). Dissolved
    oxygen is integrated from a simple pond budget: algae produce oxygen in daylight
    (``max_production_mg_l_h`` x light x ``photosynthesis``), fish, plankton and mud use
    it day and night (``respiration_mg_l_h``, faster when warm), and the surface and any
    aerator move it towards saturation (``reaeration_per_h``). So DO sags through the
    night to a low around dawn and recovers once the sun is up; a cloudy day
    (``photosynthesis`` near 0) keeps it low. Feed adds an oxygen demand as it is eaten
    and decomposes, so a feeding lowers DO slightly over the next hours. pH rises and
    falls with photosynthesis.

A feeder (``FeederSim``)
    While its motor output is on, the auger turns at ``rev_per_s`` (with speed noise) and
    each revolution carries ``g_per_rev`` grams (with noise) out of the hopper, until the
    hopper is empty (then the auger turns and nothing comes). A hall sensor gives
    ``pulses_per_rev`` pulses per revolution on the rotation input (driven on the mock
    pin). A jammed auger does not turn: no pulses, no feed.
"""

from __future__ import annotations

import logging
import math
import random
from datetime import datetime
from zoneinfo import ZoneInfo

logger = logging.getLogger(__name__)


def do_saturation_mg_l(temp_c: float, salinity_ppt: float = 0.0) -> float:
    """Oxygen solubility (mg/L) at sea level: a standard polynomial fit, minus salt."""
    t = temp_c
    fresh = 14.652 - 0.41022 * t + 0.007991 * t**2 - 0.000077774 * t**3
    return fresh * (1 - 0.0053 * salinity_ppt)  # ~ -0.5 % per ppt of salt


class PondSim:
    """Water quality of one pond over the day."""

    def __init__(self, name: str, *, tz: str = "Asia/Makassar", volume_m3: float = 800.0,
                 temp_mean_c: float = 29.0, temp_amp_c: float = 1.5,
                 salinity_ppt: float = 0.0, photosynthesis: float = 1.0,
                 max_production_mg_l_h: float = 2.2, respiration_mg_l_h: float = 0.9,
                 reaeration_per_h: float = 0.15, ph_base: float = 7.4,
                 feed_o2_g_per_g: float = 0.3, rng: random.Random | None = None):
        self.name = name
        self.tz = ZoneInfo(tz)
        self.volume_m3 = volume_m3
        self.temp_mean_c = temp_mean_c
        self.temp_amp_c = temp_amp_c
        self.salinity_ppt = salinity_ppt
        self.photosynthesis = photosynthesis
        self.max_production_mg_l_h = max_production_mg_l_h
        self.respiration_mg_l_h = respiration_mg_l_h
        self.reaeration_per_h = reaeration_per_h
        self.ph_base = ph_base
        self.feed_o2_g_per_g = feed_o2_g_per_g
        self.rng = rng or random.Random(0)
        self.do_mg_l = 6.0
        self.temp_c = temp_mean_c
        self.ph = ph_base
        self.bod_mg_l = 0.0  # oxygen still to be used by feed eaten and decomposing
        self.fed_g = 0.0

    def _hour(self, now: datetime) -> float:
        local = now.astimezone(self.tz)
        return local.hour + local.minute / 60 + local.second / 3600

    def spin_up(self, now: datetime, days: float = 2.0) -> None:
        """Run the water model over the days before ``now`` so it starts in its daily cycle."""
        dt_s = 300.0
        steps = int(days * 86400 / dt_s)
        for i in range(steps, 0, -1):
            self._advance(self._hour_at(now, -i * dt_s), dt_s)
        self._advance(self._hour(now), 0.0)

    def _hour_at(self, now: datetime, offset_s: float) -> float:
        return (self._hour(now) + offset_s / 3600) % 24

    def step(self, now: datetime, dt_s: float) -> None:
        self._advance(self._hour(now), dt_s)

    def _advance(self, hour: float, dt_s: float) -> None:
        self.temp_c = self.temp_mean_c + self.temp_amp_c * math.sin(2 * math.pi * (hour - 9) / 24)
        light = max(0.0, math.sin(math.pi * (hour - 6) / 12))
        dt_h = dt_s / 3600
        bod_use = min(self.bod_mg_l, 0.5 * self.bod_mg_l * dt_h)
        self.bod_mg_l -= bod_use
        rate = (self.max_production_mg_l_h * light * self.photosynthesis
                - self.respiration_mg_l_h * 1.07 ** (self.temp_c - 28)
                + self.reaeration_per_h * (do_saturation_mg_l(self.temp_c, self.salinity_ppt)
                                           - self.do_mg_l))
        self.do_mg_l = max(0.1, self.do_mg_l + rate * dt_h - bod_use)
        self.ph = min(9.5, max(6.0, self.ph_base + 0.12 * (self.do_mg_l - 5.0)))

    def add_feed(self, grams: float) -> None:
        """Feed put in the pond: an oxygen demand spread over the next hours."""
        self.fed_g += grams
        self.bod_mg_l += grams * self.feed_o2_g_per_g / self.volume_m3  # g/m3 == mg/L


class FeederSim:
    """An auger or spinner with its hopper and rotation sensor."""

    def __init__(self, name: str, *, g_per_rev: float = 6.0, rev_per_s: float = 3.0,
                 pulses_per_rev: int = 2, hopper_g: float = 40_000.0,
                 speed_noise: float = 0.02, grams_noise: float = 0.03,
                 run_noise: float = 0.01, jammed: bool = False,
                 rng: random.Random | None = None):
        self.name = name
        self.g_per_rev = g_per_rev
        self.rev_per_s = rev_per_s
        self.pulses_per_rev = pulses_per_rev
        self.hopper_g = hopper_g
        self.speed_noise = speed_noise
        self.grams_noise = grams_noise
        self.run_noise = run_noise
        self.jammed = jammed
        self.rng = rng or random.Random(0)
        self.dispensed_g = 0.0  # the truth, for the tests to compare against
        self.pulses_sent = 0
        self.output = None
        self.pin = None
        self._last_on_s = 0.0
        self._pulse_frac = 0.0
        self._run_factor = 1.0
        self._was_on = False

    @property
    def nominal_rate_g_per_s(self) -> float:
        return self.g_per_rev * self.rev_per_s

    def attach(self, output, pin) -> None:
        """``output``: the motor's ``Output``; ``pin``: the rotation input's mock pin."""
        self.output = output
        self.pin = pin
        self._last_on_s = output.total_on_s + output.on_for_s

    def step(self, dt_s: float) -> float:
        """Advance by ``dt_s``; returns the grams that fell into the pond."""
        if self.output is None:
            return 0.0
        on_total = self.output.total_on_s + self.output.on_for_s
        on_s = max(0.0, on_total - self._last_on_s)
        self._last_on_s = on_total
        if self.output.is_active and not self._was_on:
            self._run_factor = self.rng.gauss(1.0, self.run_noise)  # supply voltage, load
        self._was_on = self.output.is_active
        if on_s <= 0 or self.jammed:
            return 0.0
        speed = max(0.0, self.rng.gauss(1.0, self.speed_noise)) * self._run_factor
        revs = on_s * self.rev_per_s * speed
        self._pulse_frac += revs * self.pulses_per_rev
        pulses = int(self._pulse_frac)
        self._pulse_frac -= pulses
        for _ in range(pulses):
            if self.pin is not None:
                self.pin.drive_high()
                self.pin.drive_low()
        self.pulses_sent += pulses
        grams = revs * self.g_per_rev * max(0.0, self.rng.gauss(1.0, self.grams_noise))
        grams = min(grams, self.hopper_g)
        self.hopper_g -= grams
        self.dispensed_g += grams
        return grams
