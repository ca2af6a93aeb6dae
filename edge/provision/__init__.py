"""``smartcity-edge provision``: turn a freshly flashed Raspberry Pi into a working unit.

Two ways to say who the unit is:

- **enrolment** (the usual way): ``--controller URL --token TOKEN``. The token comes from
  ``smartcity-controller enrol create``; the controller answers the device id, OPD, kind,
  site name and the MQTT broker address and credentials (``POST /api/v1/enrol``).
- **offline**: ``--device-id --opd --kind --broker-host [--broker-port] [--tls]
  --mqtt-password-file FILE`` (the password printed by ``smartcity-controller device add``).

Then, step by step, each reported as written / updated / unchanged:

1. identity (enrolment call, or the flags);
2. the service user ``smartcity`` (created on a real system, never in a ``--root`` tree);
3. the unit's config ``/etc/smartcity/<kind>.toml``: made from the example config of
   its kind (``config/<kind>.example.toml``, or ``--template``), or, when it already
   exists, edited in place (only identity and broker lines change, the technician's pins,
   zones and comments stay);
4. the MQTT password in the file ``broker.password_file`` names (mode 0600, owned by the
   service user), plus a small record of the enrolment
   (``/etc/smartcity/provision-<kind>.json``: identity and the token's SHA-256);
5. the state directory (``state_dir``);
6. the systemd unit, copied from ``systemd/`` to ``/etc/systemd/system/``;
7. enabling it: ``systemctl daemon-reload`` and ``systemctl enable --now`` on a real
   system; under ``--root`` the ``multi-user.target.wants`` symlink is made directly.

Running it again with the same inputs changes nothing and says so. An enrolment token
works once: on the second run the record shows the unit already holds that token's
identity and password, so the controller is not asked again. ``--dry-run`` prints the
same steps and writes nothing (the controller is only asked what the token is for; the
token stays unused). ``--root DIR`` provisions into a directory tree instead of ``/``
(tests, or preparing an SD card's root file system).

The package: ``options`` (what to do, the shipped files), ``files`` (TOML edited in place,
files written only when different), ``steps`` (the controller's enrolment call and the
steps above, ``Provisioner``).
"""

from __future__ import annotations

from collections.abc import Callable

from .files import Owner, put_file, set_toml_values, toml_scalar
from .options import (
    CONFIG_DIR,
    DEFAULT_PASSWORD_FILE,
    SERVICE_USER,
    STEPS,
    SYSTEMD_UNITS,
    UNIT_DIR,
    Identity,
    Options,
    ProvisionError,
    shipped_file,
    template_for,
)
from .steps import Provisioner, enrol, token_digest, which_edge

__all__ = ["CONFIG_DIR", "DEFAULT_PASSWORD_FILE", "SERVICE_USER", "STEPS", "SYSTEMD_UNITS",
           "UNIT_DIR", "Identity", "Options", "Owner", "ProvisionError", "Provisioner",
           "enrol", "provision", "put_file", "set_toml_values", "shipped_file",
           "template_for", "toml_scalar", "token_digest", "which_edge"]


def provision(opts: Options, out: Callable[[str], None] = print) -> int:
    """Provision a unit as ``opts`` say; returns how many steps changed something.
    Raises ``ProvisionError`` (nothing half-done is reported as done)."""
    return Provisioner(opts, out).run()
