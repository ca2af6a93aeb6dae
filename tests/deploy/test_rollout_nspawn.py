"""The rollout test: scripts/rollout-test (the script a person runs) in three booted
Debian bookworm containers under systemd-nspawn sharing one loopback: the controller and
three units installed as the docs say, a release rolled out canary first, one unit that
cannot run it rolling back by itself and the rollout stopping; see the script's
docstring for every step.

It needs what tests/deploy/test_deploy_nspawn.py needs (root, debootstrap,
systemd-nspawn) and iproute2. Where they are missing it fails and says so: a rollout
that was not tested must not pass as tested.
"""

from __future__ import annotations

import pytest
from rig_support import run_rig

UNITS = ["dlh-rollout-01", "dlh-rollout-02", "dlh-rollout-03"]
EXPECTED = [
    "controller active, /healthz 200, with the release key",
    *[check for device in UNITS for check in (
        f"{device}: provisioned, smartcity-update@irrigation.path active",
        f"{device}: update --bundle 9.0.1 applied, the daemon active on it")],
    "the API shows the three units online on 9.0.1",
    "release add of a bundle with one byte changed: exit 1, nothing kept",
    "release add 9.0.2",
    "the canary applied",
    "the rollout stopped itself: failure_threshold",
    "the rollout shows the marked unit failed at step restart",
    "the marked unit rolled back by itself: update_failed step restart, rolled back",
    "the marked unit's daemon active on 9.0.1 (systemd)",
]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the first run also builds the Debian root and the bundles
def test_rollout_nspawn_canary_then_a_unit_rolls_back_and_the_rollout_stops(
        tmp_path, capsys):
    report, passed = run_rig("rollout-test", tmp_path)
    assert passed[:len(EXPECTED)] == EXPECTED
    # Then: the two other units on 9.0.2, one offer each, the tampered bundle on a unit,
    # and the update service SIGKILLed while installing on the unit that rolled back.
    rest = passed[len(EXPECTED):]
    assert len(rest) == 7 and all("runs 9.0.2" in c for c in rest[:2]), rest
    assert rest[2] == "every unit offered exactly once", rest
    assert rest[3].endswith("update --bundle of the tampered bundle refused, "
                            "/opt/smartcity unchanged"), rest
    assert [c.split(": ", 1)[1] for c in rest[4:]] == [
        "update service SIGKILLed while installing 9.0.2: the daemon still active on 9.0.1",
        "update --resume: cut short after step verified, staging removed, the unit runs "
        "9.0.1 and reports it",
        "the update run again applies 9.0.2"], rest
    assert {"canary_offered_to_applied_s", "rollout_created_to_finished_s"} <= set(
        report["figures"])
    with capsys.disabled():  # shown in a quiet run too (CI's): the run time and figures
        print(f"\nrollout test run time: {report['run_s']} s; figures: {report['figures']}")
