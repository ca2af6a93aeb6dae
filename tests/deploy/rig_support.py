"""Running a booted-container script (scripts/deploy-test, scripts/rollout-test) from the
suite: the script as a person runs it, with ``--report``, and its report read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_rig(script: str, tmp_path: Path) -> tuple[dict, list[str]]:
    """Run ``scripts/<script>``; its report (which must say ok) and the checks that passed,
    in order."""
    report_path = tmp_path / "report.json"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--report",
                             str(report_path)], capture_output=True, text=True, timeout=1450)
    print(result.stdout[-20000:], result.stderr[-5000:])
    assert report_path.exists(), result.stdout[-5000:] + result.stderr[-5000:]
    report = json.loads(report_path.read_text())
    assert result.returncode == 0 and report["ok"], report.get("error")
    return report, [c["check"] for c in report["checks"] if c["ok"]]
