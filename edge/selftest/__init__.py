"""``smartcity-edge selftest``: is this unit fit to run? A checklist for the field.

Run it on the unit with the daemon stopped (it needs the GPIO pins)::

    sudo systemctl stop smartcity-irrigation
    sudo smartcity-edge selftest --config /etc/smartcity/irrigation.toml [--lang en]
    sudo systemctl start smartcity-irrigation

What it does, in this order:

1. **Outputs**, one at a time, each on for ``--pulse-s`` (0.5 s) and off again, so the
   technician hears each relay click. Irrigation: every zone valve alone, then the
   master: a master valve alone; a pump only with the first zone's valve open (a pump
   never runs against closed valves), as the daemon sequences them. A flow meter counts
   meanwhile. Fish feeder: each feeder motor runs until its rotation sensor shows
   ``min_pulses`` (at most ``confirm_timeout_s``), like the daemon's jam check.
2. **Sensors**: the rain switch and other digital inputs, soil probes (MCP3008, serial
   line, Modbus), water-quality probes (EZO, Modbus), hopper levels, read through the
   same drivers the daemons use.
3. **Broker**: a TCP connect, then an MQTT login with the unit's own username and
   password file (a separate client id, so a running daemon is not disturbed).
4. **Clock**: synchronised or not (``[clock] sync_check``).
5. **Disk**: the state directory exists and is writable, and its file system has room.

Before all of that, the config: ``validate_config``, the same verdict as ``smartcity-edge
check`` (and ``run``). A config that ``check`` refuses (a bad value, a missing CA file)
is one ``FAIL`` line per problem, naming file, field and reason, and nothing else is
tried: no pin is touched, as ``run`` would not touch one (``config_checklist``).

Each result is a line ``OK``, ``WARN`` or ``FAIL`` (``GAGAL``, ``AWAS`` in Bahasa
Indonesia, the default; ``--lang en``) with what to do, wrapped to 40 columns so it reads
on a phone over SSH. Exit status 0 when there is no FAIL, 1 otherwise, 2 for a config
that ``check`` refuses (as ``check`` exits).

The checklist is the only thing on standard output: log records and library warnings
(gpiozero's, for instance) go to the log on standard error.

Safety: the outputs are the app's own (``App``/``OutputBank``): off when built, each
pulse has its own off-timer (``Output.on(for_s=...)``), and ``App.close()`` in a
``finally`` turns everything off whatever happens, Ctrl-C included.

The package: ``checks`` runs the checks (``Selftest``), ``checklist`` words and lays out
the result; ``selftest()`` below loads a config and does both.
"""

from __future__ import annotations

import logging

from ..errors import EdgeError, HardwareError
from ..words import DEFAULT_LANG, Words
from .checklist import FAIL, OK, WARN, WIDTH, Check, config_checklist, format_checklist, verdict
from .checks import LOW_FREE_MB, MIN_FREE_MB, UNITS, Selftest, mqtt_login

__all__ = ["FAIL", "LOW_FREE_MB", "MIN_FREE_MB", "OK", "UNITS", "WARN", "WIDTH", "Check",
           "Selftest", "config_checklist", "format_checklist", "mqtt_login", "selftest",
           "verdict"]

logger = logging.getLogger(__name__)


def selftest(config_path, *, pin_factory: str | None = None, lang: str = DEFAULT_LANG,
             pulse_s: float = 0.5, outputs: bool = True, clock=None, factory=None,
             **kwargs) -> tuple[list[Check], str]:
    """Load the config and run every check; returns ``(checks, checklist text)``.

    ``pin_factory`` ("mock", "lgpio") overrides the config's; ``factory`` is a gpiozero
    factory object to use instead (tests); other keywords go to `Selftest` (e.g.
    ``app_kwargs`` with simulated ports, ``sync_check``). Raises ``ConfigError``, before
    any pin is touched, for a config that ``smartcity-edge check`` refuses (the same
    ``validate_config``); ``config_checklist`` shows it."""
    from ..clock import SystemClock
    from ..config import validate_config
    from ..hardware import make_pin_factory

    config = validate_config(config_path)
    clock = clock or SystemClock()
    if factory is None:
        try:
            factory = make_pin_factory(pin_factory or config.hardware.pin_factory)
        except HardwareError as exc:
            raise EdgeError(f"{exc}; run with --pin-factory mock to test off a Pi") from None
    run = Selftest(config, pin_factory=factory, clock=clock, lang=lang, pulse_s=pulse_s,
                   outputs=outputs, config_path=config_path, **kwargs)
    checks = run.run()
    w = Words(lang)
    header = [w("title", device=config.unit.device_id), f"{config.kind}, OPD {config.unit.opd}"]
    return checks, format_checklist(header, checks, lang=lang)
