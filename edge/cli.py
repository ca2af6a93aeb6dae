"""``smartcity-edge``: the unit's command line."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import ConfigError, EdgeError

logger = logging.getLogger(__name__)

APPS = {
    "irrigation": "edge.irrigation.app:IrrigationApp",
    "fish_feeder": "edge.fish_feeder.app:FishFeederApp",
}


def app_class(kind: str):
    module, _, name = APPS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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
    from .config import load_config

    config = load_config(args.config)
    print(f"{args.config}: OK ({config.kind}, unit {config.unit.device_id}, OPD {config.unit.opd})")
    return 0


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
    check.set_defaults(func=cmd_check)
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
