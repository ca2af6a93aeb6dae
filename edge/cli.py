"""``smartcity-edge``: the unit's command line."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from .errors import ConfigError, EdgeError

logger = logging.getLogger(__name__)

KIND_CHOICES = ("fish_feeder", "irrigation")
"""The unit kinds, for ``--kind`` (the parser loads no protocol models; a test holds this
equal to ``protocol.kinds.KINDS``)."""


def app_class(kind: str):
    """The app of a unit kind: ``edge.<kind>.app.APP``, imported only when needed."""
    return importlib.import_module(f"edge.{kind}.app").APP


def _setup_logging(verbose: bool) -> None:
    from protocol.logs import configure  # the controller's set-up too (journal priorities)

    configure(logging.DEBUG if verbose else logging.INFO)


def cmd_run(args) -> int:
    from .daemon import run_unit

    return run_unit(args.config, pin_factory=args.pin_factory)


def cmd_simulate(args) -> int:
    from .config import load_config

    config = load_config(args.config)
    if config.kind == "irrigation":
        from .sim.irrigation import simulate

        print(simulate(args.config, days=args.days, seed=args.seed).format_table())
        return 0
    from .sim.fish_feeder import simulate as simulate_ponds

    print(simulate_ponds(args.config, days=args.days, seed=args.seed).format_table())
    return 0


def cmd_check(args) -> int:
    from .config import validate_config
    from .words import Words

    w = Words(args.lang)
    try:
        config = validate_config(args.config)
    except ConfigError as exc:
        lines = [w("config_invalid", path=exc.path)] + [f"  {p}" for p in w.problems(exc)]
        print("smartcity-edge: " + "\n".join(lines), file=sys.stderr)
        return 2
    print(w("check_ok", path=args.config, kind=config.kind, device=config.unit.device_id,
            opd=config.unit.opd))
    return 0


def cmd_calibrate(args) -> int:
    from .fish_feeder.calibrate import run

    return run(args)


def cmd_provision(args) -> int:
    from dataclasses import fields

    from .provision import Options, provision

    provision(Options(**{f.name: getattr(args, f.name) for f in fields(Options)
                         if hasattr(args, f.name)}))
    return 0


def cmd_selftest(args) -> int:
    from .selftest import config_checklist, selftest, verdict

    # The checklist is the only thing on stdout: log records and library warnings
    # (gpiozero's fallbacks, a sensor's missing echo) go to the log, on stderr.
    logging.captureWarnings(True)
    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        checks, text = selftest(args.config, pin_factory=args.pin_factory, lang=args.lang,
                                pulse_s=args.pulse_s, outputs=not args.no_outputs)
    except ConfigError as exc:  # refused as `check` refuses it, before any pin
        print(config_checklist(exc, lang=args.lang))
        return 2
    print(text)
    return 0 if verdict(checks) else 1


def cmd_update(args) -> int:
    import re

    from protocol.fields import COMMAND_ID_PATTERN

    from .update import Options, UpdateError, Updater, take_request

    if sum(map(bool, (args.bundle, args.resume, args.request))) != 1:
        print("smartcity-edge update: give --bundle FILE, --request FILE or --resume",
              file=sys.stderr)
        return 2
    if args.update_id is not None and not re.fullmatch(COMMAND_ID_PATTERN, args.update_id):
        print("smartcity-edge update: --update-id: 1-64 of A-Z a-z 0-9 _ -", file=sys.stderr)
        return 2
    bundle, update_id = args.bundle, args.update_id
    if args.request:
        try:
            bundle, update_id = take_request(args.request)
        except UpdateError as exc:
            print(f"smartcity-edge update: {exc.reason}", file=sys.stderr)
            return 1
    opts = Options(bundle=bundle, resume=args.resume, config=args.config,
                   root=args.root, systemctl=args.systemctl, python=args.python,
                   health_timeout_s=args.health_timeout_s, wait_idle_s=args.wait_idle_s,
                   update_id=update_id)
    try:
        updater = Updater(opts)
        return updater.resume() if args.resume else updater.run()
    except UpdateError as exc:
        print(f"smartcity-edge update: {exc.reason}", file=sys.stderr)
        return 1


def add_lang(parser) -> None:
    """``--lang``, the same on every technician command."""
    from .words import DEFAULT_LANG, LANGS

    parser.add_argument("--lang", choices=LANGS, default=DEFAULT_LANG,
                        help="id: Bahasa Indonesia (default), en: English")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smartcity-edge", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the unit's daemon (irrigation or fish feeder)")
    run.add_argument("--config", required=True, help="the unit's TOML config file")
    run.add_argument("--pin-factory", choices=["mock", "lgpio"], help="override the config")
    run.set_defaults(func=cmd_run)
    sim = sub.add_parser("simulate", help="run a unit's config in a simulated park or pond")
    sim.add_argument("--config", required=True)
    sim.add_argument("--days", type=int, default=14)
    sim.add_argument("--seed", type=int, default=11)
    sim.set_defaults(func=cmd_simulate)
    check = sub.add_parser("check", help="validate a config file and exit")
    check.add_argument("--config", required=True)
    add_lang(check)
    check.set_defaults(func=cmd_check)
    cal = sub.add_parser("calibrate", help="measure a feeder's grams per second and write it "
                                           "to the config",
                         description="Measure a fish feeder's dosing rate and write it into "
                                     "the config (see docs/fish_feeder.md).")
    cal.add_argument("--config", required=True, help="the unit's TOML config file")
    cal.add_argument("--feeder", required=True, help="feeder name as in the config")
    cal.add_argument("--run-s", type=float, default=30.0, help="motor run time (default 30)")
    cal.add_argument("--grams", type=float, help="weighed grams; no prompt")
    cal.add_argument("--no-run", action="store_true",
                     help="do not run the motor: compute from --grams and --run-s")
    cal.add_argument("--pin-factory", choices=["mock", "lgpio"], help="override the config")
    cal.set_defaults(func=cmd_calibrate)
    prov = sub.add_parser("provision", help="write the unit's config and credentials, "
                                            "enable its systemd unit")
    prov.add_argument("--controller", help="controller URL, e.g. https://smartcity.example")
    prov.add_argument("--token", help="one-time enrolment token (smartcity-controller enrol)")
    prov.add_argument("--device-id", help="offline: the unit's device id")
    prov.add_argument("--opd", help="offline: the unit's OPD")
    prov.add_argument("--kind", choices=KIND_CHOICES, help="offline: irrigation or fish_feeder")
    prov.add_argument("--name", help="site name for the config")
    prov.add_argument("--broker-host", help="MQTT broker host (overrides the controller's)")
    prov.add_argument("--broker-port", type=int, help="MQTT broker port")
    prov.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None)
    prov.add_argument("--mqtt-password-file", type=Path, help="offline: file with the password")
    prov.add_argument("--ca-file", type=Path, help="broker CA certificate to install")
    prov.add_argument("--template", type=Path, help="config template (default: the example)")
    prov.add_argument("--root", type=Path, default=Path("/"), help="install into this tree")
    prov.add_argument("--dry-run", action="store_true", help="print the steps, write nothing")
    prov.add_argument("--no-start", dest="start", action="store_false",
                      help="enable the service but do not start it now")
    prov.set_defaults(func=cmd_provision)
    up = sub.add_parser("update", help="install a signed release bundle, switch to it and "
                                       "keep it only if healthy (docs/updates.md)")
    up.add_argument("--bundle", type=Path, help="the release bundle (smartcity-<version>.bundle)")
    up.add_argument("--request", type=Path, help="the request a daemon wrote for a release "
                    "the controller offered (<state_dir>/update-request.json; removed)")
    up.add_argument("--update-id", help="the update's id in its journal and events "
                    "(the controller's command id)")
    up.add_argument("--resume", action="store_true",
                    help="finish or undo an update a power cut or kill interrupted")
    up.add_argument("--config", type=Path, help="the unit's config, as on the unit "
                    "(default: the one in /etc/smartcity)")
    up.add_argument("--root", type=Path, default=Path("/"), help="update the tree at DIR")
    up.add_argument("--systemctl", default="systemctl", help="the systemctl program")
    up.add_argument("--python", help="the Python a new environment is made with "
                    "(default: the one running this)")
    up.add_argument("--health-timeout-s", type=float,
                    help="time the new version has to pass its health gate "
                    "(default: [update] health_timeout_s)")
    up.add_argument("--wait-idle-s", type=float, help="time to wait for a run or feeding "
                    "to end (default: [update] wait_idle_s)")
    up.set_defaults(func=cmd_update)
    st = sub.add_parser("selftest", help="pulse each output, read each sensor, check the "
                                         "broker, clock and disk")
    st.add_argument("--config", required=True)
    st.add_argument("--pin-factory", choices=["mock", "lgpio"], help="override the config")
    st.add_argument("--pulse-s", type=float, default=0.5, help="how long each output is on")
    add_lang(st)
    st.add_argument("--no-outputs", action="store_true", help="switch no output")
    st.set_defaults(func=cmd_selftest)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"smartcity-edge: {exc}", file=sys.stderr)
        return 2
    except EdgeError as exc:
        print(f"smartcity-edge: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
