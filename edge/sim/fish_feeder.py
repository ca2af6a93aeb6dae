"""A field simulator for the fish feeder: pond water, feeders, hoppers and the serial probes.

It stands in for the hardware only; the daemon under test is the real
``FishFeederApp`` on gpiozero's mock pins. Everything is driven by the ``VirtualClock``,
so a simulated day takes a second or two.

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

The probes
    ``SimEzoPort`` answers the EZO text protocol, ``SimModbusPort`` is a Modbus RTU bus
    with probe slaves (real frames and CRCs, parsed and answered), ``SimLoadCellPort``
    streams the load-cell line protocol, ``SimDistance`` stands in for the ultrasonic
    sensor. Each adds realistic noise, and can garble a share of its answers
    (``garble_rate``): junk bytes, cut frames, and (on the checksummed Modbus and
    load-cell lines) flipped bits. They are serial-like objects handed to the app through its
    ``ports`` argument; ``PtyBridge`` puts any of them behind a real pseudo-terminal so a
    daemon can open it by path.

Usage::

    clock = VirtualClock(start=...)
    sim = FishFeederSim(config, clock, seed=1)
    app = FishFeederApp(config, pin_factory=factory, clock=clock, publisher=pub,
                        **sim.app_kwargs())
    sim.attach(app)
    app.start()
    sim.run(24 * 3600)          # advances the clock, steps the physics, ticks the app

For a daemon on the real clock (the demo), pass ``**sim.app_kwargs()`` to the app class
(e.g. with ``functools.partial``), ``attach`` the built app, and ``start_realtime()``.
"""

from __future__ import annotations

import logging
import math
import os
import random
import select
import struct
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from ..sensors.hopper import format_weight_line

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


# -- serial stand-ins ----------------------------------------------------------------------
class _SimPort:
    """The part of ``serial.Serial`` the drivers use; answers appear at once."""

    def __init__(self, name: str):
        self.port = name
        self.is_open = True
        self.timeout = 0.05
        self.baudrate = 1_000_000  # a simulated line: no 3.5-character waits in minimalmodbus
        self._rx = bytearray()
        self.writes = 0

    def open(self):
        self.is_open = True

    def close(self):
        self.is_open = False

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def reset_input_buffer(self):
        self._rx.clear()

    def reset_output_buffer(self):
        pass

    def flush(self):
        pass

    def read(self, size: int = 1) -> bytes:
        out = bytes(self._rx[:size])
        del self._rx[:size]
        return out

    def write(self, data: bytes) -> int:
        self.writes += 1
        self._answer(bytes(data))
        return len(data)

    def _answer(self, data: bytes) -> None:
        raise NotImplementedError


def _garble(rng: random.Random, frame: bytes, kinds=("junk", "cut", "flip")) -> bytes:
    """Line noise: junk bytes, a cut, or a flipped bit."""
    kind = rng.choice(kinds)
    if kind == "junk":
        at = rng.randrange(len(frame) + 1)
        junk = bytes(rng.choice(b"\x00\xff\xfe#@!~\x1b") for _ in range(rng.randint(1, 4)))
        return frame[:at] + junk + frame[at:]
    if kind == "cut":
        return frame[: rng.randrange(max(1, len(frame) - 1))]
    at = rng.randrange(len(frame))
    return frame[:at] + bytes([frame[at] ^ (1 << rng.randrange(8))]) + frame[at + 1:]


class SimEzoPort(_SimPort):
    """An EZO circuit: answers ``R`` with ``value()`` plus noise, then ``*OK``."""

    def __init__(self, name: str, value, *, decimals: int = 2, noise: float = 0.02,
                 garble_rate: float = 0.0, silent: bool = False,
                 rng: random.Random | None = None):
        super().__init__(name)
        self.value = value
        self.decimals = decimals
        self.noise = noise
        self.garble_rate = garble_rate
        self.silent = silent
        self.rng = rng or random.Random(0)
        self._cmd = bytearray()
        self.sent_values: list[float] = []

    def _answer(self, data: bytes) -> None:
        self._cmd += data
        while b"\r" in self._cmd:
            cmd, _, rest = bytes(self._cmd).partition(b"\r")
            self._cmd = bytearray(rest)
            if self.silent:
                continue
            if cmd == b"R":
                v = round(self.value() + self.rng.gauss(0, self.noise), self.decimals)
                self.sent_values.append(v)
                frame = f"{v:.{self.decimals}f}\r*OK\r".encode()
                if self.rng.random() < self.garble_rate:
                    # No bit flips here: the EZO protocol has no checksum, so a flipped
                    # bit that turns one digit into another cannot be caught by anyone
                    # (docs/fish_feeder.md). Noise bursts and dropouts can.
                    frame = _garble(self.rng, frame, ("junk", "cut"))
                self._rx += frame
            elif cmd in (b"C,0", b"*OK,1") or cmd.startswith(b"T,"):
                self._rx += b"*OK\r"
            else:
                self._rx += b"*ER\r"


def modbus_crc(frame: bytes) -> bytes:
    crc = 0xFFFF
    for b in frame:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


class SimModbusPort(_SimPort):
    """An RS-485 bus with probe slaves; ``slaves[addr]()`` gives ``{register: raw}``."""

    def __init__(self, name: str, slaves: dict, *, garble_rate: float = 0.0,
                 rng: random.Random | None = None):
        super().__init__(name)
        self.slaves = slaves
        self.garble_rate = garble_rate
        self.rng = rng or random.Random(0)
        self.bad_requests = 0

    def _answer(self, data: bytes) -> None:
        if len(data) != 8 or modbus_crc(data[:6]) != data[6:]:
            self.bad_requests += 1
            return
        addr, fc, start, count = struct.unpack(">BBHH", data[:6])
        if addr not in self.slaves:
            return  # no such slave: silence, as on a real bus
        if fc not in (3, 4):
            body = bytes([addr, fc | 0x80, 1])
        else:
            regs = self.slaves[addr]()
            if any(r not in regs for r in range(start, start + count)):
                body = bytes([addr, fc | 0x80, 2])
            else:
                values = [regs[r] & 0xFFFF for r in range(start, start + count)]
                body = bytes([addr, fc, 2 * count]) + struct.pack(f">{count}H", *values)
        frame = body + modbus_crc(body)
        if self.rng.random() < self.garble_rate:
            frame = _garble(self.rng, frame)
        self._rx += frame


class SimLoadCellPort(_SimPort):
    """A load-cell board streaming ``W,<grams>*<crc>`` lines; one fresh line per read."""

    def __init__(self, name: str, weight_g, *, noise_g: float = 2.0, garble_rate: float = 0.0,
                 rng: random.Random | None = None):
        super().__init__(name)
        self.weight_g = weight_g
        self.noise_g = noise_g
        self.garble_rate = garble_rate
        self.rng = rng or random.Random(0)

    def read(self, size: int = 1) -> bytes:
        if not self._rx:
            line = format_weight_line(self.weight_g() + self.rng.gauss(0, self.noise_g))
            if self.rng.random() < self.garble_rate:
                line = _garble(self.rng, line[:-1]) + b"\n"
            self._rx += line
        return super().read(size)

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def _answer(self, data: bytes) -> None:
        pass  # the board only talks


class SimDistance:
    """Stands in for gpiozero's ``DistanceSensor``: ``distance`` in metres to the feed."""

    def __init__(self, feeder: FeederSim, *, capacity_g: float, full_distance_m: float,
                 empty_distance_m: float, noise_m: float = 0.005,
                 rng: random.Random | None = None):
        self.feeder = feeder
        self.capacity_g = capacity_g
        self.full_distance_m = full_distance_m
        self.empty_distance_m = empty_distance_m
        self.noise_m = noise_m
        self.rng = rng or random.Random(0)
        self.broken = False  # an unplugged sensor: every read fails

    @property
    def distance(self) -> float:
        if self.broken:
            raise OSError("no echo received")
        fill = max(0.0, min(1.0, self.feeder.hopper_g / self.capacity_g))
        d = self.empty_distance_m - fill * (self.empty_distance_m - self.full_distance_m)
        return max(0.0, d + self.rng.gauss(0, self.noise_m))

    def close(self) -> None:
        pass


class PtyBridge:
    """Put a simulated serial device behind a pseudo-terminal (``path``), for a daemon
    or a driver that opens ports by name. A thread moves bytes both ways."""

    def __init__(self, device: _SimPort, *, poll_s: float = 0.02):
        import tty

        self.device = device
        self._master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name=f"pty:{device.port}",
                                        daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], self._poll_s)
            try:
                if ready:
                    data = os.read(self._master, 4096)
                    if data:
                        self.device.write(data)
                out = self.device.read(4096) if (ready or isinstance(
                    self.device, SimLoadCellPort)) else b""
                if out:
                    os.write(self._master, out)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


# -- the whole site -----------------------------------------------------------------------
class FishFeederSim:
    """Ponds, feeders and probes for one unit's config, stepped with the app's clock.

    ``ponds`` and ``feeders`` map names to keyword overrides of ``PondSim`` and
    ``FeederSim`` (e.g. ``{"kolam-nila": {"photosynthesis": 0.1}}``);
    ``garble_rate`` applies to every serial probe.
    """

    def __init__(self, config, clock, *, seed: int = 1, ponds: dict | None = None,
                 feeders: dict | None = None, garble_rate: float = 0.0):
        self.config = config
        self.clock = clock
        self.rng = random.Random(seed)
        ponds = ponds or {}
        feeders = feeders or {}
        self.ponds: dict[str, PondSim] = {}
        for p in config.ponds:
            brackish = p.species in ("vaname", "bandeng")
            # Brackish tambak: salt lowers oxygen solubility; paddle-wheel aerators help.
            kwargs = {"salinity_ppt": 15.0 if brackish else 0.0,
                      "ph_base": 7.9 if brackish else 7.4,
                      "reaeration_per_h": 0.3 if brackish else 0.15}
            kwargs.update(ponds.get(p.name, {}))
            self.ponds[p.name] = PondSim(p.name, tz=config.site.timezone,
                                         rng=random.Random(self.rng.random()), **kwargs)
            self.ponds[p.name].spin_up(clock.now())
        self.feeders: dict[str, FeederSim] = {}
        for f in config.feeders:
            capacity = f.hopper.capacity_g if f.hopper is not None else 40_000.0
            kwargs = {"hopper_g": 0.8 * capacity}
            kwargs.update(feeders.get(f.name, {}))
            self.feeders[f.name] = FeederSim(f.name, rng=random.Random(self.rng.random()),
                                             **kwargs)
        self.ports: dict[str, _SimPort] = {}
        self.distance_sources: dict[str, SimDistance] = {}
        self._build_ports(garble_rate)
        self.app = None

    def _pond_of_sensor(self, name: str) -> PondSim:
        for p in self.config.ponds:
            if name in p.sensors:
                return self.ponds[p.name]
        return next(iter(self.ponds.values()))

    def _build_ports(self, garble_rate: float) -> None:
        modbus: dict[str, dict] = {}
        for s in self.config.sensors:
            pond = self._pond_of_sensor(s.name)
            rng = random.Random(self.rng.random())
            if s.driver == "ezo":
                decimals = {"do_mg_l": 2, "temp_c": 3, "ph": 2}[s.quantity]
                noise = {"do_mg_l": 0.03, "temp_c": 0.02, "ph": 0.01}[s.quantity]
                self.ports[s.port_url] = SimEzoPort(
                    s.port_url, lambda p=pond, q=s.quantity: getattr(p, q),
                    decimals=decimals, noise=noise, garble_rate=garble_rate, rng=rng)
            else:
                def registers(p=pond, regs=s.registers, r=rng):
                    out = {}
                    for q, spec in regs.items():
                        v = getattr(p, q) + r.gauss(0, 0.02)
                        raw = round(v * 10 ** spec.decimals)
                        out[spec.address] = raw & 0xFFFF
                    return out

                modbus.setdefault(s.port_url, {})[s.slave] = registers
        for url, slaves in modbus.items():
            self.ports[url] = SimModbusPort(url, slaves, garble_rate=garble_rate,
                                            rng=random.Random(self.rng.random()))
        for f in self.config.feeders:
            h = f.hopper
            if h is None:
                continue
            fs = self.feeders[f.name]
            if h.driver == "loadcell":
                self.ports[h.port_url] = SimLoadCellPort(
                    h.port_url, lambda fs=fs, tare=h.tare_g: tare + fs.hopper_g,
                    garble_rate=garble_rate, rng=random.Random(self.rng.random()))
            else:
                self.distance_sources[f.name] = SimDistance(
                    fs, capacity_g=h.capacity_g, full_distance_m=h.full_distance_m,
                    empty_distance_m=h.empty_distance_m, rng=random.Random(self.rng.random()))

    def app_kwargs(self) -> dict:
        """Keyword arguments that plug this simulator into ``FishFeederApp``."""
        return {"ports": self.ports, "distance_sources": self.distance_sources}

    def attach(self, app) -> None:
        self.app = app
        for f in self.config.feeders:
            pin = None
            if f.rotation_input is not None:
                pin = app.pin_factory.pin(self.config.input(f.rotation_input).pin)
            self.feeders[f.name].attach(app.outputs[f.motor], pin)

    def step(self, dt_s: float) -> None:
        """Physics only, for ``dt_s`` that have just passed on the clock."""
        now = self.clock.now()
        for f in self.config.feeders:
            grams = self.feeders[f.name].step(dt_s)
            if grams:
                self.ponds[f.pond].add_feed(grams)
        for pond in self.ponds.values():
            pond.step(now, dt_s)

    def motors_on(self) -> bool:
        return any(fs.output is not None and fs.output.is_active for fs in self.feeders.values())

    def run(self, seconds: float, *, step_s: float = 60.0, fast_step_s: float = 0.25) -> None:
        """Advance the clock by ``seconds``: physics, then the app's ``tick()``, each step.

        Steps are ``fast_step_s`` while a motor runs or a feeding is being measured (so
        pulses arrive as they would), else ``step_s``, shortened so the app ticks when
        its next scheduled job is due.
        """
        end = self.clock.monotonic() + seconds
        while True:
            left = end - self.clock.monotonic()
            if left <= 1e-9:
                break
            busy = self.motors_on() or (self.app is not None and any(
                f.busy for f in self.app.feeders.values()))
            dt = min(left, fast_step_s if busy else step_s)
            if not busy and self.app is not None:
                idle = self.app.idle_s()
                if idle is not None and 0 < idle < dt:
                    dt = idle + 1e-3
            self.clock.advance(dt)
            self.step(dt)
            if self.app is not None:
                self.app.tick()

    def start_realtime(self, *, step_s: float = 0.1) -> threading.Event:
        """Step the physics from a background thread on the real clock, for a daemon on
        ``SystemClock`` (the demo); the app ticks itself. Set the returned event to stop."""
        stop = threading.Event()

        def loop():
            last = time.monotonic()
            while not stop.wait(step_s):
                now = time.monotonic()
                try:
                    self.step(now - last)
                except Exception:  # noqa: BLE001 - a simulator hiccup must not end the demo
                    logger.exception("simulator step failed")
                last = now

        threading.Thread(target=loop, name="fish-feeder-sim", daemon=True).start()
        return stop

    def run_until(self, when: datetime, **kwargs) -> None:
        self.run((when - self.clock.now()).total_seconds(), **kwargs)


# -- smartcity-edge simulate -----------------------------------------------------------------
class PondSimulationResult:
    """What ``simulate`` saw, day by day: feed, feedings, interlocks, water, hoppers."""

    def __init__(self, config, days: list[dict], events: list):
        self.config = config
        self.days = days
        self.events = events  # the unit's events (edge.publisher.Record)

    def format_table(self) -> str:
        ponds = [p.name for p in self.config.ponds]
        head1 = f"{'':<10}"
        head2 = f"{'date':<10}"
        for p in ponds:
            head1 += f"  {p[:26]:<26}"
            head2 += f"  {'feed kg':>7} {'n':>2} {'wait':>4} {'skip':>4} {'DO mg/L':>9}"
        head1 += f"  {'alarms':>6}"
        head2 += f"  {'':>6}"
        rule = "-" * len(head1)
        lines = [head1, head2, rule]
        for d in self.days:
            row = f"{d['date']:<10}"
            for p in ponds:
                f = d["ponds"][p]
                row += (f"  {f['feed_g'] / 1000:7.2f} {f['feedings']:>2} {f['postponed']:>4} "
                        f"{f['skipped']:>4} {f['do_min']:4.1f}-{f['do_max']:4.1f}")
            row += f"  {d['alarms']:>6}"
            lines.append(row)
        lines.append(rule)
        for p in ponds:
            total = sum(d["ponds"][p]["feed_g"] for d in self.days) / 1000
            reasons: dict[str, int] = {}
            for e in self.events:
                if e.type == "feeding_skipped" and e.data.get("pond") == p:
                    reasons[e.data["reason"]] = reasons.get(e.data["reason"], 0) + 1
            why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"
            lines.append(f"{p}: {total:.1f} kg of feed in {len(self.days)} days; "
                         f"skipped: {why}")
        return "\n".join(lines)


def simulate(config_path, days: int = 14, *, start: datetime | None = None, seed: int = 11,
             ponds: dict | None = None, feeders: dict | None = None,
             garble_rate: float = 0.0) -> PondSimulationResult:
    """Run a fish-feeder config at simulated ponds for ``days`` and return the figures.

    Each day's sky is drawn from ``seed`` (mostly sunny, sometimes overcast, when the
    oxygen stays low in the morning), and the pond keeper tops up a hopper that is below
    its low mark at 08:00. Mock pins, a ``VirtualClock``, an in-memory state store:
    nothing touches the machine. Raises ``ConfigError`` for a bad or non-fish-feeder file.
    """
    from datetime import timedelta

    from ..clock import VirtualClock
    from ..config import load_config
    from ..errors import ConfigError
    from ..fish_feeder.app import FishFeederApp
    from ..fish_feeder.config import FishFeederConfig
    from ..hardware import make_pin_factory
    from ..publisher import MemoryPublisher
    from ..state import StateStore

    config = config_path if isinstance(config_path, FishFeederConfig) else load_config(config_path)
    if not isinstance(config, FishFeederConfig):
        raise ConfigError(config_path, [("kind", "the pond simulator needs kind = "
                                                 f"'fish_feeder', got {config.kind!r}")])
    tz = ZoneInfo(config.site.timezone)
    start = start or datetime(2026, 9, 1, tzinfo=tz)
    start = start.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    clock = VirtualClock(start)
    sim = FishFeederSim(config, clock, seed=seed, ponds=ponds, feeders=feeders,
                        garble_rate=garble_rate)
    publisher = MemoryPublisher(clock)
    app = FishFeederApp(config, pin_factory=make_pin_factory("mock"), clock=clock,
                        publisher=publisher, state=StateStore(":memory:"), **sim.app_kwargs())
    sim.attach(app)
    sky = random.Random(seed)
    figures = []
    try:
        app.start()
        for i in range(days):
            day = start + timedelta(days=i)
            for pond in sim.ponds.values():
                pond.photosynthesis = (sky.uniform(0.15, 0.5) if sky.random() < 0.15
                                       else sky.uniform(0.8, 1.1))
            do_range = {p: [99.0, 0.0] for p in sim.ponds}
            t = day
            while t < day + timedelta(days=1):
                nxt = min(day + timedelta(days=1), t + timedelta(minutes=10))
                sim.run_until(nxt)
                t = nxt
                for name, pond in sim.ponds.items():
                    do_range[name][0] = min(do_range[name][0], pond.do_mg_l)
                    do_range[name][1] = max(do_range[name][1], pond.do_mg_l)
                if t.astimezone(tz).hour == 8 and t.astimezone(tz).minute == 0:
                    _refill_hoppers(config, sim)
            figures.append(_day_figures(config, publisher.events(), day, tz, do_range))
    finally:
        app.close()
    return PondSimulationResult(config, figures, publisher.events())


def _refill_hoppers(config, sim: FishFeederSim) -> None:
    for f in config.feeders:
        if f.hopper is None:
            continue
        fs = sim.feeders[f.name]
        if fs.hopper_g < f.hopper.low_pct / 100 * f.hopper.capacity_g:
            fs.hopper_g = 0.9 * f.hopper.capacity_g


def _day_figures(config, events, day: datetime, tz, do_range) -> dict:
    date = day.date()
    mine = [e for e in events if e.ts.astimezone(tz).date() == date]
    out = {"date": date.isoformat(), "ponds": {}, "alarms": sum(
        1 for e in mine if e.type == "alarm")}
    for p in config.ponds:
        fed = [e for e in mine if e.type == "feed_dispensed" and e.data.get("pond") == p.name]
        out["ponds"][p.name] = {
            "feed_g": sum((e.data["measured_g"] if e.data["measured_g"] is not None
                           else e.data["commanded_g"]) for e in fed),
            "feedings": len(fed),
            "postponed": sum(1 for e in mine if e.type == "feeding_postponed"
                             and e.data.get("pond") == p.name),
            "skipped": sum(1 for e in mine if e.type == "feeding_skipped"
                           and e.data.get("pond") == p.name),
            "do_min": do_range[p.name][0], "do_max": do_range[p.name][1],
        }
    return out
