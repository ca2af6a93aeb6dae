"""What ``smartcity-edge`` loads: the parser alone loads no app, and an irrigation unit
built the way ``smartcity-edge run`` builds it loads nothing of the fish feeder. A unit's
memory is mostly the modules it imports (docs/benchmarks.md, Edge unit), so each is
checked in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from edge import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "irrigation.example.toml"

RUN = """
import sys
from edge import cli
cli.build_parser()
if len(sys.argv) > 1:
    from edge.daemon import build_unit
    from edge.config import load_config
    from edge.hardware import make_pin_factory
    unit = build_unit(load_config(sys.argv[1]), pin_factory=make_pin_factory("mock"))
    unit.close()
print(" ".join(sorted(sys.modules)))
"""


def loaded_modules(*argv: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", RUN, *argv], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_parser_alone_loads_no_app_and_no_pydantic():
    modules = loaded_modules()
    assert {"edge.cli", "argparse"} <= modules
    assert not {m for m in modules if m.startswith(("edge.fish_feeder", "edge.irrigation",
                                                    "edge.config", "pydantic"))}


def test_irrigation_unit_loads_nothing_of_the_fish_feeder(tmp_path):
    config = tmp_path / "irrigation.toml"
    config.write_text(re.sub(r'(?m)^state_dir = .*$', f'state_dir = "{tmp_path / "state"}"',
                             EXAMPLE.read_text()))
    modules = loaded_modules(str(config))
    assert {"edge.irrigation.app", "edge.link", "gpiozero", "pydantic"} <= modules
    assert not {m for m in modules if m.startswith("edge.fish_feeder")}


def test_calibrate_is_still_a_subcommand_with_its_arguments():
    args = cli.build_parser().parse_args(["calibrate", "--config", "f.toml", "--feeder",
                                          "pakan-nila", "--no-run", "--grams", "380"])
    assert args.func is cli.cmd_calibrate
    assert (args.config, args.feeder, args.no_run, args.grams, args.run_s,
            args.pin_factory) == ("f.toml", "pakan-nila", True, 380.0, 30.0, None)
