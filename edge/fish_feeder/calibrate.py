"""``smartcity-edge calibrate``: measure a feeder's dosing rate and write it into the config.

A technician, with the daemon stopped (it owns the GPIO pins)::

    sudo systemctl stop smartcity-fish-feeder
    smartcity-edge calibrate --config /etc/smartcity/fish_feeder.toml --feeder pakan-nila
    # put a bucket under the feeder, press Enter: the motor runs 30 s;
    # weigh the feed, type the grams: rate_g_per_s (and g_per_pulse) are written back
    sudo systemctl start smartcity-fish-feeder

Non-interactive: ``--grams 540`` takes the weight from the command line (the motor still
runs first, no prompt); ``--no-run --run-s 30 --grams 540`` only computes and writes, for
a run timed by hand.

The file is edited as text, not re-written from a parsed copy (the standard library has
no TOML writer, and a technician's comments and layout must survive): only the
``rate_g_per_s`` (and ``g_per_pulse``) line of that feeder's ``[[feeders]]`` table is
changed, or added after its ``name`` line. The result is then parsed and validated in
full (``load_config`` rules), checked to differ from the old file in exactly those
values, and only then replaces the file atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..config import load_config, parse_config
from ..errors import ConfigError, EdgeError

logger = logging.getLogger(__name__)

_HEADER = re.compile(r"^\s*\[")
_ARRAY_FEEDERS = re.compile(r"^\s*\[\[\s*feeders\s*\]\]\s*(#.*)?$")
_NAME = re.compile(r"""^\s*name\s*=\s*(["'])(?P<v>[^"']*)\1\s*(#.*)?$""")


class CalibrationError(EdgeError, ValueError):
    """The calibration could not be done or its result could not be written."""


@dataclass(frozen=True)
class Calibration:
    feeder: str
    grams: float
    on_s: float
    pulses: int | None
    rate_g_per_s: float
    g_per_pulse: float | None


def compute(feeder: str, grams: float, on_s: float, pulses: int | None) -> Calibration:
    """Rate (g/s) and grams per rotation pulse from one weighed run."""
    if not (math.isfinite(grams) and grams > 0):
        raise CalibrationError(f"weighed grams must be a positive number, got {grams!r}")
    if not on_s > 0:
        raise CalibrationError("the motor did not run")
    rate = round(grams / on_s, 3)
    per_pulse = round(grams / pulses, 4) if pulses else None
    return Calibration(feeder, grams, round(on_s, 3), pulses, rate, per_pulse)


def _format(value: float) -> str:
    text = repr(float(value))
    return text if "e" not in text else f"{value:.6f}"


def update_feeder_text(text: str, feeder: str, values: dict[str, float]) -> str:
    """Set ``key = value`` lines of one ``[[feeders]]`` table; the rest stays as it was."""
    lines = text.splitlines(keepends=True)
    block = _find_feeder_block(lines, feeder)
    if block is None:
        raise CalibrationError(f"no [[feeders]] table with name = {feeder!r} in the file "
                               "(inline tables are not edited: change the value by hand)")
    start, end, name_line = block
    for key, value in values.items():
        pattern = re.compile(rf"^(\s*{re.escape(key)}\s*=\s*)([^#\r\n]*?)(\s*(#.*)?)(\r?\n)?$")
        for i in range(start, end):
            m = pattern.match(lines[i])
            if m:
                lines[i] = (m.group(1) + _format(value) + (m.group(3) or "")
                            + (m.group(5) or ""))
                break
        else:
            newline = "\r\n" if lines[name_line].endswith("\r\n") else "\n"
            indent = re.match(r"^\s*", lines[name_line]).group(0)
            if not lines[name_line].endswith(("\n", "\r")):
                lines[name_line] += newline
            lines.insert(name_line + 1, f"{indent}{key} = {_format(value)}{newline}")
            end += 1
    return "".join(lines)


def _find_feeder_block(lines: list[str], feeder: str):
    """(first line, end line, name line) of the feeder's own keys, or None."""
    i = 0
    while i < len(lines):
        if _ARRAY_FEEDERS.match(lines[i]):
            start = i + 1
            end = start
            while end < len(lines) and not _HEADER.match(lines[end]):
                end += 1
            for j in range(start, end):
                m = _NAME.match(lines[j])
                if m and m.group("v") == feeder:
                    return start, end, j
            i = end
        else:
            i += 1
    return None


def write_calibration(path, cal: Calibration) -> tuple[float | None, float | None]:
    """Write ``cal`` into the config file atomically; returns the old (rate, g_per_pulse)."""
    path = Path(path)
    old_text = path.read_text(encoding="utf-8")
    old_data = tomllib.loads(old_text)
    old_feeder = next((f for f in old_data.get("feeders", []) if f.get("name") == cal.feeder),
                      None)
    if old_feeder is None:
        raise CalibrationError(f"{path}: no feeder named {cal.feeder!r}")
    values = {"rate_g_per_s": cal.rate_g_per_s}
    if cal.g_per_pulse is not None and old_feeder.get("rotation_input"):
        values["g_per_pulse"] = cal.g_per_pulse
    new_text = update_feeder_text(old_text, cal.feeder, values)
    try:
        new_data = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:
        raise CalibrationError(f"the edited file would not parse ({exc}); nothing written") from exc
    expected = tomllib.loads(old_text)
    next(f for f in expected["feeders"] if f.get("name") == cal.feeder).update(values)
    if new_data != expected:
        raise CalibrationError("the edit would change more than the calibrated values; "
                               "nothing written (edit the file by hand)")
    try:
        parse_config(new_data, path)
    except ConfigError as exc:
        raise CalibrationError(f"the calibrated config is not valid, nothing written:\n{exc}") from exc
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(new_text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        logger.debug("could not fsync %s", path.parent, exc_info=True)
    return old_feeder.get("rate_g_per_s"), old_feeder.get("g_per_pulse")


def measure_run(output, counter, clock, run_s: float, wait=None) -> tuple[float, int | None]:
    """Run the motor ``run_s`` seconds; returns (seconds it was on, rotation pulses).

    ``wait(seconds)`` lets time pass (default ``clock.sleep``); the simulator passes its
    own so the feed falls while the clock moves. The output's own timer stops the motor.
    """
    p0 = counter.count if counter is not None else None
    on0 = output.total_on_s
    try:
        output.on(for_s=run_s)
        (wait or clock.sleep)(run_s + 0.5)
    finally:
        output.off()
    pulses = counter.count - p0 if counter is not None else None
    return output.total_on_s - on0, pulses


def _ask_grams(input_fn, out) -> float:
    for _ in range(3):
        raw = input_fn("Weigh the feed that came out and type the grams: ").strip()
        try:
            grams = float(raw.replace(",", "."))
        except ValueError:
            grams = float("nan")
        if math.isfinite(grams) and grams > 0:
            return grams
        print(f"  {raw!r} is not a weight in grams, try again", file=out)
    raise CalibrationError("no valid weight given")


def calibrate(config_path, feeder: str, *, run_s: float = 30.0, grams: float | None = None,
              no_run: bool = False, pin_factory=None, clock=None, wait=None,
              input_fn=input, out=None) -> Calibration:
    """The whole flow; see the module docstring. Returns what was written."""
    out = out or sys.stdout
    config = load_config(config_path)
    if config.kind != "fish_feeder":
        raise CalibrationError(f"{config_path} is a {config.kind} unit, not a fish feeder")
    spec = next((f for f in config.feeders if f.name == feeder), None)
    if spec is None:
        raise CalibrationError(f"no feeder named {feeder!r}; this unit has "
                               f"{', '.join(f.name for f in config.feeders)}")
    motor = config.output(spec.motor)
    if not 1 <= run_s <= motor.max_on_s:
        raise CalibrationError(f"--run-s must be between 1 and the motor's max_on_s "
                               f"({motor.max_on_s:g} s)")
    if no_run:
        if grams is None:
            raise CalibrationError("--no-run needs --grams (and --run-s of the timed run)")
        cal = compute(feeder, grams, run_s, None)
    else:
        from ..clock import SystemClock
        from ..hardware import Output, PulseCounter, make_pin_factory

        clock = clock or SystemClock()
        factory = pin_factory or make_pin_factory(config.hardware.pin_factory)
        if grams is None:
            input_fn(f"Put a container under feeder {feeder} ({spec.kind}, motor "
                     f"{spec.motor} on GPIO{motor.pin}) and press Enter to run it for "
                     f"{run_s:g} s (Ctrl-C to cancel) ")
        output = Output(spec.motor, motor.pin, pin_factory=factory, clock=clock,
                        max_on_s=motor.max_on_s, active_high=motor.active_high)
        counter = None
        try:
            if spec.rotation_input:
                inp = config.input(spec.rotation_input)
                counter = PulseCounter(inp.pin, pin_factory=factory, pull_up=inp.pull_up)
            print(f"running {spec.motor} for {run_s:g} s ...", file=out)
            on_s, pulses = measure_run(output, counter, clock, run_s, wait)
        finally:
            output.close()
            if counter is not None:
                counter.close()
        print(f"motor ran {on_s:.2f} s" + (f", {pulses} rotation pulses"
                                          if pulses is not None else ""), file=out)
        if pulses == 0:
            print("warning: no rotation pulses: check the rotation sensor before trusting "
                  "jam detection; g_per_pulse not changed", file=out)
        if grams is None:
            grams = _ask_grams(input_fn, out)
        cal = compute(feeder, grams, on_s, pulses or None)
    old_rate, old_pp = write_calibration(config_path, cal)
    print(f"{feeder}: rate_g_per_s {old_rate} -> {cal.rate_g_per_s}", file=out)
    if cal.g_per_pulse is not None and spec.rotation_input:
        print(f"{feeder}: g_per_pulse {old_pp} -> {cal.g_per_pulse}", file=out)
    print(f"a 1000 g dose now runs the motor {1000 / cal.rate_g_per_s:.1f} s; "
          f"written to {config_path}", file=out)
    return cal


def run(args) -> int:
    """``smartcity-edge calibrate`` (its arguments are defined in ``edge.cli``)."""
    factory = None
    if getattr(args, "pin_factory", None):
        from ..hardware import make_pin_factory

        factory = make_pin_factory(args.pin_factory)
    try:
        calibrate(args.config, args.feeder, run_s=args.run_s, grams=args.grams,
                  no_run=args.no_run, pin_factory=factory)
    except (KeyboardInterrupt, EOFError):
        print("calibration cancelled; nothing written", file=sys.stderr)
        return 1
    return 0
