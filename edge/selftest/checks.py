"""The checks of ``smartcity-edge selftest`` (the package docstring says what each does)."""

from __future__ import annotations

import logging
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from protocol.kinds import KINDS

from ..errors import HardwareError
from ..words import DEFAULT_LANG, Words
from .checklist import FAIL, OK, WARN, Check

logger = logging.getLogger(__name__)

MIN_FREE_MB = 50
LOW_FREE_MB = 500
UNITS = {kind: spec.service for kind, spec in KINDS.items()}


def _secs(value: float) -> str:
    return f"{value:g}"


class Selftest:
    """One run over one unit's config; ``run()`` returns the checks in order."""

    def __init__(self, config, *, pin_factory, clock, lang: str = DEFAULT_LANG,
                 pulse_s: float = 0.5,
                 outputs: bool = True, sync_check: Callable[[], bool] | None = None,
                 broker_timeout_s: float = 5.0, app_kwargs: dict | None = None,
                 config_path: str | Path | None = None):
        self.config = config
        self.pin_factory = pin_factory
        self.clock = clock
        self.w = Words(lang)
        self.pulse_s = pulse_s
        self.outputs_on = outputs
        self.sync_check = sync_check
        self.broker_timeout_s = broker_timeout_s
        self.app_kwargs = dict(app_kwargs or {})
        self.config_path = config_path
        self.checks: list[Check] = []
        self.app = None

    def add(self, status: str, text: str, advice: str = "") -> None:
        self.checks.append(Check(status, text, advice))

    def run(self) -> list[Check]:
        if self.config_path is not None:
            self.add(OK, self.w("config_ok", path=self.config_path))
        try:
            self.hardware()
        finally:
            self._close()
        self.broker()
        self.clock_check()
        self.disk()
        return self.checks

    # -- hardware ------------------------------------------------------------------------
    def hardware(self) -> None:
        from ..cli import app_class
        from ..publisher import MemoryPublisher

        try:
            self.app = app_class(self.config.kind)(
                self.config, pin_factory=self.pin_factory, clock=self.clock,
                publisher=MemoryPublisher(self.clock), clock_synced=lambda: True,
                **self.app_kwargs)
        except HardwareError as exc:
            self.add(FAIL, self.w("gpio_busy", error=exc),
                     self.w("gpio_busy_do", unit=UNITS[self.config.kind]))
            return
        if self.config.kind == "irrigation":
            flow_before = self.app.devices.flow.count if self.app.devices.flow else 0
            if self.outputs_on:
                self.irrigation_outputs()
                self.flow(self.app.devices.flow.count - flow_before
                          if self.app.devices.flow else None)
            self.irrigation_sensors()
        else:
            if self.outputs_on:
                self.feeder_outputs()
            self.feeder_sensors()
        self.inputs()
        still_on = [o.name for o in self.app.outputs if o.is_active]
        if still_on:
            self.add(FAIL, self.w("still_on", names=", ".join(still_on)), self.w("still_on_do"))

    def _close(self) -> None:
        if self.app is not None:
            self.app.close()  # every output off, pins released

    def _pulse(self, what: str, name: str, *, with_valve: str | None = None) -> None:
        out = self.app.outputs[name]
        pin = self.config.output(name).pin
        secs = min(self.pulse_s, out.max_on_s)
        try:
            out.on(for_s=secs)
            was_on = out.is_active
            self.clock.sleep(secs)
        except Exception as exc:  # noqa: BLE001 - a relay fault is a line, never a crash
            logger.exception("pulsing %s", name)
            self.add(FAIL, self.w("pulse_fail", what=what, name=name, pin=pin, error=exc),
                     self.w("pulse_fail_do"))
            return
        finally:
            out.off()
        if not was_on:
            self.add(FAIL, self.w("pulse_fail", what=what, name=name, pin=pin,
                                  error=self.w("stayed_off")), self.w("pulse_fail_do"))
        elif with_valve:
            self.add(OK, self.w("pulsed_with", what=what, name=name, pin=pin,
                                secs=_secs(secs), valve=with_valve))
        else:
            self.add(OK, self.w("pulsed", what=what, name=name, pin=pin, secs=_secs(secs)))

    def irrigation_outputs(self) -> None:
        config = self.config
        done = set()
        for zone in config.zones:
            self._pulse(self.w("valve"), zone.valve)
            done.add(zone.valve)
        master = config.master
        extra = [o.name for o in config.outputs
                 if o.name not in done and (master is None or o.name != master.output)]
        for name in extra:
            self._pulse(self.w("output"), name)
        if master is None:
            return
        if master.kind == "valve":
            self._pulse(self.w("master_valve"), master.output)
            return
        # A pump never runs against closed valves: first zone's valve open around it.
        valve = self.app.outputs[config.zones[0].valve]
        valve.on(for_s=self.pulse_s + 3.0)
        try:
            self.clock.sleep(min(master.pre_s, self.pulse_s))
            self._pulse(self.w("pump"), master.output, with_valve=config.zones[0].valve)
            self.clock.sleep(min(master.post_s, self.pulse_s))
        finally:
            valve.off()

    def flow(self, pulses: int | None) -> None:
        if pulses is None or self.config.flow is None:
            return
        spec = self.config.input(self.config.flow.input)
        if pulses > 0:
            self.add(OK, self.w("flow_ok", name=spec.name, pin=spec.pin, n=pulses))
        else:
            self.add(WARN, self.w("flow_none", name=spec.name, pin=spec.pin),
                     self.w("flow_none_do"))

    def irrigation_sensors(self) -> None:
        config, devices = self.config, self.app.devices
        if devices.rain is not None:
            spec = config.input(config.rain.input)
            if devices.rain.wet:
                self.add(WARN, self.w("rain_wet", name=spec.name, pin=spec.pin),
                         self.w("rain_wet_do"))
            else:
                self.add(OK, self.w("rain_dry", name=spec.name, pin=spec.pin))
        for zone in config.zones:
            reader = devices.soil.get(zone.name)
            if reader is None:
                continue
            spec = config.soil_sensor(zone.soil_sensor) if zone.soil_sensor else None
            name = spec.name if spec is not None else zone.name
            try:
                value = reader.read()
            except Exception as exc:  # noqa: BLE001 - a probe fault is a line, never a crash
                self._sensor_failed(self.w("soil", name=name), spec, exc)
                continue
            self.add(OK, self.w("soil_ok", name=name, zone=zone.name, value=f"{value:.1f}"))

    def _sensor_failed(self, what: str, spec, exc: BaseException) -> None:
        """A FAIL line for a probe that did not answer, with advice for its kind."""
        logger.info("%s: %s", what, exc)
        kind = getattr(spec, "kind", None) or getattr(spec, "driver", None)
        port = getattr(spec, "port", None) or getattr(spec, "port_url", None)
        text = str(exc)
        if port and "cannot open serial port" in text:
            self.add(FAIL, self.w("no_port", what=what, port=port), self.w("no_port_do"))
        elif kind == "modbus":
            self.add(FAIL, self.w("modbus_none", what=what, slave=spec.slave, port=port),
                     self.w("modbus_none_do"))
        elif kind == "mcp3008":
            self.add(FAIL, self.w("adc_fail", what=what, channel=spec.channel),
                     self.w("adc_fail_do"))
        elif kind == "ezo":
            self.add(FAIL, self.w("no_answer", what=what, port=port), self.w("ezo_do"))
        elif port and ("no line" in text or "no answer" in text or "timeout" in text):
            self.add(FAIL, self.w("no_answer", what=what, port=port), self.w("no_answer_do"))
        elif port:
            self.add(FAIL, self.w("bad_answer", what=what, port=port, error=text),
                     self.w("bad_answer_do"))
        else:
            self.add(FAIL, self.w("sensor_fail", what=what, error=text), self.w("no_answer_do"))

    def feeder_outputs(self) -> None:
        motors = set()
        for name, feeder in self.app.feeders.items():
            motors.add(feeder.spec.motor)
            self._feeder(name, feeder)
        for out in self.config.outputs:
            if out.name not in motors:
                self._pulse(self.w("output"), out.name)

    def _feeder(self, name: str, feeder) -> None:
        spec, motor = feeder.spec, feeder.motor
        if feeder.pulses is None:
            self._pulse(self.w("motor"), spec.motor)
            if self.checks[-1].status == OK:
                self.checks[-1] = Check(OK, self.w("feeder_blind", name=name,
                                                   secs=_secs(self.pulse_s)))
            return
        limit_s = min(max(spec.confirm_timeout_s, self.pulse_s), motor.max_on_s)
        start_count = feeder.pulses.count
        t0 = self.clock.monotonic()
        n = 0
        try:
            motor.on(for_s=limit_s)
            while True:
                self.clock.sleep(0.05)
                n = feeder.pulses.count - start_count
                elapsed = self.clock.monotonic() - t0
                if (n >= spec.min_pulses and elapsed >= self.pulse_s) or elapsed >= limit_s:
                    break
        finally:
            motor.off()
        elapsed = round(self.clock.monotonic() - t0, 1)
        pin = self.config.input(spec.rotation_input).pin
        if n >= spec.min_pulses:
            self.add(OK, self.w("feeder_ok", name=name, n=n, secs=_secs(elapsed)))
        else:
            self.add(FAIL, self.w("feeder_stuck", name=name, secs=_secs(elapsed), pin=pin),
                     self.w("feeder_stuck_do"))

    def feeder_sensors(self) -> None:
        from ..fish_feeder.config import LoadCellHopperSpec

        for spec in self.config.sensors:
            what = self.w("water", name=spec.name)
            try:
                values = self.app.sensors[spec.name].read()
            except Exception as exc:  # noqa: BLE001 - a probe fault is a line, never a crash
                self._sensor_failed(what, spec, exc)
                continue
            if not isinstance(values, dict):
                values = {spec.quantity: values}
            shown = ", ".join(f"{q} {v:g}" for q, v in values.items())
            self.add(OK, self.w("water_ok", name=spec.name, values=shown))
        for fname, gauge in self.app.hoppers.items():
            h = gauge.spec
            what = self.w("hopper", name=fname)
            try:
                self._wait_for_echo(gauge)
                gauge.read()
                pct = gauge.pct()
            except Exception as exc:  # noqa: BLE001 - a probe fault is a line, never a crash
                logger.info("%s: %s", what, exc)
                if isinstance(h, LoadCellHopperSpec):
                    self.add(FAIL, self.w("weight_fail", what=what, port=h.port_url),
                             self.w("weight_fail_do"))
                else:
                    self.add(FAIL, self.w("echo_fail", what=what),
                             self.w("echo_fail_do", trigger=h.trigger_pin, echo=h.echo_pin))
                continue
            self.add(OK, self.w("hopper_ok", name=fname, pct=f"{pct:.0f}"))

    def _wait_for_echo(self, gauge, wait_s: float = 1.0) -> None:
        """An ultrasonic sensor needs a moment for its first echo after start."""
        source = getattr(gauge.device, "source", None)
        if source is None or not hasattr(source, "last_echo_s"):
            return
        waited = 0.0
        while source.last_echo_s is None and waited < wait_s:
            self.clock.sleep(0.1)
            waited += 0.1

    def inputs(self) -> None:
        """Digital inputs no other check read (pulse inputs are counted elsewhere)."""
        used = set()
        if self.config.kind == "irrigation":
            used |= {x.input for x in (self.config.rain, self.config.flow) if x is not None}
        else:
            used |= {f.rotation_input for f in self.config.feeders if f.rotation_input}
        from gpiozero import DigitalInputDevice

        for spec in self.config.inputs:
            if spec.name in used or spec.kind != "digital":
                continue
            try:
                device = DigitalInputDevice(spec.pin, pull_up=spec.pull_up,
                                            pin_factory=self.pin_factory)
            except Exception as exc:  # noqa: BLE001 - a pin problem is a line, not a crash
                self.add(FAIL, self.w("gpio_busy", error=exc),
                         self.w("gpio_busy_do", unit=UNITS[self.config.kind]))
                continue
            try:
                high = bool(device.value) != bool(spec.pull_up)
            finally:
                device.close()
            self.add(OK, self.w("input", name=spec.name, pin=spec.pin,
                                level=self.w("high" if high else "low")))

    # -- broker, clock, disk ---------------------------------------------------------------
    def broker(self) -> None:
        b, w = self.config.broker, self.w
        host, port = b.host, b.port
        password = None
        if b.password_file is not None:
            try:
                password = Path(b.password_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                self.add(FAIL, w("broker_secret", path=b.password_file,
                                 error=w.os_error(exc)), w("broker_secret_do"))
                return
        try:
            socket.create_connection((host, port), timeout=self.broker_timeout_s).close()
        except OSError as exc:
            self.add(FAIL, w("broker_down", host=host, port=port,
                             error=w.os_error(exc)), w("broker_down_do"))
            return
        result = mqtt_login(b, client_id=f"selftest-{self.config.unit.device_id}-"
                                         f"{secrets.token_hex(3)}",
                            password=password, timeout_s=self.broker_timeout_s)
        user = b.username or w("anonymous")
        if result is None:
            self.add(FAIL, w("broker_silent", host=host, port=port,
                             secs=_secs(self.broker_timeout_s)), w("broker_silent_do"))
        elif result != "Success":
            self.add(FAIL, w("broker_refused", host=host, port=port,
                             reason=w.mqtt_reason(result)),
                     w("broker_refused_do"))
        else:
            self.add(OK, w("broker_ok", host=host, port=port, user=user))

    def clock_check(self) -> None:
        from ..timesync import make_sync_check

        check = self.sync_check or make_sync_check(self.config.clock.sync_check)
        zone = ZoneInfo(self.config.site.timezone)
        local = self.clock.now().astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        if check():
            self.add(OK, self.w("clock_ok", local=local))
        else:
            self.add(WARN, self.w("clock_bad", local=local), self.w("clock_bad_do"))

    def disk(self) -> None:
        path = Path(self.config.state_dir)
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free_mb = shutil.disk_usage(probe).free // (1024 * 1024)
        if free_mb < LOW_FREE_MB:
            self.add(FAIL if free_mb < MIN_FREE_MB else WARN,
                     self.w("disk_low", free=free_mb, path=path), self.w("disk_low_do"))
        if not path.is_dir():
            self.add(WARN, self.w("state_missing", path=path), self.w("state_missing_do"))
            return
        try:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".selftest-"):
                pass
        except OSError as exc:
            self.add(FAIL, self.w("state_locked", path=path, error=self.w.os_error(exc)),
                     self.w("state_locked_do", path=path))
            return
        if free_mb >= LOW_FREE_MB:
            self.add(OK, self.w("disk_ok", free=free_mb, path=path))


def mqtt_login(broker, *, client_id: str, password: str | None,
               timeout_s: float = 5.0) -> str | None:
    """Log in to the broker once; returns the CONNACK reason ("Success", "Not authorized",
    ...) or None when no answer came within ``timeout_s``."""
    from protocol.mqtt import make_client

    answered = threading.Event()
    reason: list[str] = []

    def on_connect(client, userdata, flags, reason_code, properties):
        reason.append(str(reason_code))
        answered.set()

    try:  # loads the CA file: OSError (ssl.SSLError) when it cannot
        client = make_client(broker, client_id=client_id, password=password)
        client.on_connect = on_connect
        client.connect(broker.host, broker.port, keepalive=10)
    except (OSError, ValueError) as exc:
        return f"connect failed: {exc}"
    client.loop_start()
    try:
        answered.wait(timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return reason[0] if reason else None
