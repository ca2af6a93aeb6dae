"""The deployment test: scripts/deploy-test (the script a person runs) in a booted Debian
bookworm under systemd-nspawn. It installs the controller and a unit as the docs say and
checks them under a real systemd; see the script's docstring for every step.

It needs root, debootstrap and systemd-nspawn (``scripts/bootstrap --deploy``, which
``scripts/test`` runs). Where they are missing it fails and says so: a deployment that
was not tested must not pass as tested.
"""

from __future__ import annotations

import pytest
from rig_support import run_rig

EXPECTED = [
    "controller service active",
    "/healthz answers 200",
    "controller NRestarts is 0",
    "second install-controller run changes nothing",
    "MQTT secret root:smartcity 0640",
    "database in the state directory, owned by smartcity",
    "backup timer enabled; the backup service writes a backup as smartcity",
    "admin token from `token create` works",
    "controller alive past WatchdogSec=3 (pings)",
    "SIGSTOPped controller killed and restarted by the watchdog",
    "unit service active",
    "unit online in the API",
    "provision again changes nothing",
    "unit's offline install from requirements.lock: edge only, config valid",
    "command stop_all through the API comes back done",
    "interrupted run recorded (run_interrupted in the API)",
    "every output off within 2 s of the restart",
    "after a reboot: controller active, /healthz 200",
    "after a reboot: unit active and online",
    "after a reboot: no restarts",
    "after a reboot: device and history kept",
]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the first run also builds the Debian root (a few minutes)
def test_deploy_nspawn_docs_steps_run_under_systemd(tmp_path, capsys):
    report, passed = run_rig("deploy-test", tmp_path)
    assert passed == EXPECTED
    with capsys.disabled():  # shown in a quiet run too (CI's): the run time and figures
        print(f"\ndeployment test run time: {report['run_s']} s; "
              f"figures: {report['figures']}")
