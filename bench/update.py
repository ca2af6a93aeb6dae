"""How big is a release bundle, and how long does a unit take to update with one?

Everything real on this machine, with no network: ``smartcity-controller release build``
makes two bundles for this machine's platform (dependency wheels rebuilt from this
interpreter's installed packages, as tests/update does), and ``smartcity-edge update
--root`` installs them into a unit's tree whose daemon (mock pins, a private Mosquitto)
a stand-in systemctl starts and stops. Measured: bundle size and build time, a first
install, an update from one version to the next (verify to health gate), and the
daemon's downtime in it (from the restart to the new version's health file saying ready
with its link up).

    .venv/bin/python bench/update.py [--quick] [--json FILE]

A Pi bundle (aarch64) holds that platform's compiled wheels instead of the host's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.release import make_kit, make_tree  # noqa: E402

from bench.common import Figure, machine, print_figures, start_broker, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one update (the default too)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    print(machine())
    os.environ["PIP_CONFIG_FILE"] = os.devnull
    with tempfile.TemporaryDirectory(prefix="bench-update-") as tmp:
        base = Path(tmp)
        broker = start_broker(workdir=base / "broker")
        tree = None
        try:
            (base / "release").mkdir()
            kit = make_kit(base / "release")
            t0 = time.monotonic()
            first = kit.bundle("90.0.1")
            build_s = time.monotonic() - t0
            second = kit.bundle("90.0.2")
            tree = make_tree(base / "unit", kit, broker)
            t0 = time.monotonic()
            result = tree.update("--bundle", str(first))
            install_s = time.monotonic() - t0
            assert result.returncode == 0, result.stdout + result.stderr
            t0 = time.monotonic()
            result = tree.update("--bundle", str(second))
            update_s = time.monotonic() - t0
            assert result.returncode == 0, result.stdout + result.stderr
            journal, health = tree.journal(), tree.health()
            downtime_s = health["ts"] - journal["restarted_at"] if health else float("nan")
            size_mb = first.stat().st_size / 1e6
        finally:
            if tree is not None:
                tree.stop()
            broker.close()
    figures = [
        Figure("bundle size (host only)", "-", f"{size_mb:.1f} MB", None),
        Figure("bundle build (offline)", "-", f"{build_s:.1f} s", None),
        Figure("first install", "-", f"{install_s:.1f} s", None),
        Figure("update, verify to health gate", "< 120 s", f"{update_s:.1f} s",
               update_s < 120),
        Figure("daemon downtime in it", "< 15 s", f"{downtime_s:.1f} s", downtime_s < 15),
    ]
    print_figures("Figures", figures)
    write_json(args.json, {"figures": figures, "bundle_mb": size_mb, "update_s": update_s,
                           "downtime_s": downtime_s})
    return 0


if __name__ == "__main__":
    sys.exit(main())
