"""Enrolment: a new unit trades a one-time token for its identity and MQTT credentials.

An admin makes the token on the controller::

    smartcity-controller enrol create --config FILE --opd dlh --device-id dlh-taman-01 \\
        --kind irrigation [--name "Taman ..."] [--ttl-h 48] [--broker-host mqtt.example]

and gives it to the technician, who runs ``smartcity-edge provision --controller URL
--token TOKEN`` on the unit. The unit posts the token to ``POST /api/v1/enrol``; the
controller then, in one database transaction:

1. checks the token: known, not used, not expired (else it refuses, changing nothing);
2. registers the device (or, if it is already registered, replaces its MQTT password:
   re-enrolling a replaced unit is how its old password stops working);
3. marks the token used (when and from which address) and writes the audit entry;
4. rewrites Mosquitto's password and ACL files from the database, exactly as
   ``smartcity-controller mqtt-acl`` does (`write_broker_files`); if that fails, nothing
   of the above is stored.

It answers the device id, OPD, kind and the MQTT host, port, TLS flag, username (the
device id) and the new password. The password exists only in that answer; the database
keeps its hash. Mosquitto reads the rewritten files when it is reloaded
(``systemctl reload mosquitto``; docs/provisioning.md shows a path unit that does it
whenever the file changes).

Only the token's SHA-256 hash is stored. A token is 128 random bits, lives ``ttl_h``
hours (48 by default) and works once; ``check_only`` tells a unit what it would get
without using the token (``provision --dry-run``).
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from controller.auth import hash_token, random_token
from controller.broker_files import (
    acl_text,
    mosquitto_hash,
    new_password,
    password_file_text,
    verify_pbkdf2,
    write_private,
)
from controller.errors import ControllerError, Invalid
from controller.settings import Settings
from controller.store import Store, iso, utcnow
from protocol.errors import ProtocolError
from protocol.kinds import KINDS
from protocol.topics import validate_id

logger = logging.getLogger(__name__)

TOKEN_BYTES = 16
DEFAULT_TTL_H = 48.0
MAX_TTL_H = 30 * 24.0


class EnrolmentRefused(ControllerError, PermissionError):
    """An enrolment that cannot go ahead; ``reason`` says why.

    ``unknown`` (no such token), ``used``, ``expired``, ``not_ready`` (the controller
    cannot write the broker's files), ``conflict`` (the device id is registered
    differently)."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


class BrokerFilesError(ControllerError, RuntimeError):
    """Mosquitto's password and ACL files cannot be written (no controller password, or
    a path the controller may not write)."""


@dataclass(frozen=True)
class Enrolment:
    """What a unit gets for its token (``password`` is None for a check only)."""

    device_id: str
    opd: str
    kind: str
    name: str
    broker_host: str
    broker_port: int
    broker_tls: bool
    password: str | None

    @property
    def username(self) -> str:
        return self.device_id


def new_enrolment_token() -> str:
    """A fresh one-time enrolment token (22 URL-safe characters)."""
    return random_token(TOKEN_BYTES)


def _existing_hashes(path: Path) -> dict[str, str]:
    """``username -> hash`` of a password file already written (empty when there is none),
    so a controller login whose password did not change keeps its hash and the file its
    bytes: rewriting it then changes nothing, and nothing reloads or restarts the broker."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in lines if ":" in line)


CHANGED_FLAG = "changed"
"""Made beside the broker files once both are written; the path unit watches for it."""


@contextmanager
def _broker_files_lock(pw_path: Path) -> Iterator[None]:
    pw_path.parent.mkdir(parents=True, exist_ok=True)
    with open(pw_path.parent / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_broker_files(store: Store, settings: Settings, *, acl_path: str | Path | None = None,
                       password_path: str | Path | None = None) -> tuple[Path, Path, int]:
    """Write Mosquitto's password and ACL files for every registered device and the
    controller's own user; returns ``(password_path, acl_path, devices)``.

    Paths default to ``[broker_files]`` of the settings. Raises `BrokerFilesError`.
    """
    password = settings.mqtt.read_password()
    if password is None:
        raise BrokerFilesError("the controller's own MQTT password is needed: set "
                               "mqtt.password_file or SMARTCITY_MQTT__PASSWORD")
    acl_path = Path(acl_path or settings.broker_files.acl_file)
    pw_path = Path(password_path or settings.broker_files.password_file)
    controllers = settings.controller_usernames()
    try:
        # One writer at a time (enrolments run in parallel, in several instances too), and
        # the devices read under the lock: the files last written hold every device.
        with _broker_files_lock(pw_path):
            accounts = store.mqtt_accounts()
            taken = sorted({a["mqtt_username"] for a in accounts} & set(controllers))
            if taken:
                raise BrokerFilesError(f"device {taken[0]!r} has the MQTT username of a "
                                       "controller login; remove it and register the unit "
                                       "under another id")
            kept = _existing_hashes(pw_path)
            users = [(user, kept[user] if verify_pbkdf2(password, kept.get(user, "")) else
                      mosquitto_hash(password, user)) for user in controllers]
            users += [(a["mqtt_username"], a["mqtt_password_hash"]) for a in accounts]
            write_private(pw_path, password_file_text(users))
            write_private(acl_path, acl_text([(a["opd"], a["device_id"]) for a in accounts],
                                             controllers))
            # Both files are complete: tell smartcity-broker-files.path (PathExists=). Its
            # service removes the flag before it copies, so a change made while it runs
            # leaves the flag behind and systemd starts it again: none is lost.
            (pw_path.parent / CHANGED_FLAG).touch()
    except OSError as exc:
        raise BrokerFilesError(f"cannot write the broker files: {exc}") from exc
    return pw_path, acl_path, len(accounts)


def create_enrolment(store: Store, settings: Settings, *, device_id: str, opd: str, kind: str,
                     name: str = "", ttl_h: float = DEFAULT_TTL_H,
                     broker_host: str | None = None, broker_port: int | None = None,
                     broker_tls: bool | None = None, actor: str,
                     now: datetime | None = None) -> tuple[str, dict]:
    """Make a one-time enrolment token; returns ``(token, stored row)``.

    The broker address handed to the unit defaults to the controller's own ``[mqtt]``
    host, port and TLS flag: pass the address the units reach when it differs.
    Raises `Invalid` for a bad argument, `Conflict` for a device registered differently.
    """
    try:
        validate_id(device_id, "device_id")
        validate_id(opd, "opd")
    except ProtocolError as exc:
        raise Invalid(str(exc)) from None
    if device_id in settings.controller_usernames():
        raise Invalid(f"{device_id} is the controller's MQTT login", field="device_id")
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}", field="kind")
    if not 0 < ttl_h <= MAX_TTL_H:
        raise Invalid(f"ttl_h must be above 0 and at most {MAX_TTL_H:g}", field="ttl_h")
    if len(name) > 80:
        raise Invalid("name is longer than 80 characters", field="name")
    host = broker_host or settings.mqtt.host
    port = broker_port or settings.mqtt.port
    if not 1 <= port <= 65_535:
        raise Invalid("broker port must be 1-65535", field="broker_port")
    now = now or utcnow()
    token = new_enrolment_token()
    row = store.create_enrolment(
        token_hash=hash_token(token), device_id=device_id, opd=opd, kind=kind, name=name,
        broker_host=host, broker_port=port,
        broker_tls=settings.mqtt.tls if broker_tls is None else broker_tls,
        expires_at=now + timedelta(hours=ttl_h), actor=actor, now=now)
    return token, row


def _refusal(outcome: str, row: dict | None) -> EnrolmentRefused:
    if outcome == "used":
        return EnrolmentRefused("used", f"enrolment token already used at {row['used_at']} "
                                        f"(device {row['device_id']}); ask for a new one")
    if outcome == "expired":
        return EnrolmentRefused("expired", f"enrolment token expired at {row['expires_at']}; "
                                           "ask for a new one")
    return EnrolmentRefused("unknown", "unknown enrolment token")


def _result(row: dict, password: str | None) -> Enrolment:
    return Enrolment(device_id=row["device_id"], opd=row["opd"], kind=row["kind"],
                     name=row["name"], broker_host=row["broker_host"],
                     broker_port=row["broker_port"], broker_tls=bool(row["broker_tls"]),
                     password=password)


def enrol(store: Store, settings: Settings, token: str, *, used_from: str,
          check_only: bool = False, now: datetime | None = None) -> Enrolment:
    """Trade ``token`` for the unit's identity and a new MQTT password (see the module
    doc). ``check_only``: answer what the token is for, without using it (no password).
    Raises `EnrolmentRefused`."""
    now = now or utcnow()
    token_hash = hash_token(token)
    row = store.find_enrolment(token_hash)
    outcome = ("unknown" if row is None else "used" if row["used_at"] is not None
               else "expired" if row["expires_at"] <= iso(now) else "ok")
    if outcome != "ok":
        logger.warning("enrolment refused (%s) from %s", outcome, used_from)
        raise _refusal(outcome, row)
    if check_only:
        return _result(row, None)
    if settings.mqtt.read_password() is None:
        raise EnrolmentRefused("not_ready", "the controller cannot write the broker's "
                               "password file: its own MQTT password is not set "
                               "(mqtt.password_file)")
    password = new_password()
    hashed = mosquitto_hash(password, row["device_id"])

    def broker_files() -> None:
        write_broker_files(store, settings)

    try:
        outcome, row = store.claim_enrolment(token_hash, mqtt_password_hash=hashed,
                                             used_from=used_from, now=now,
                                             before_commit=broker_files)
    except BrokerFilesError as exc:
        logger.error("enrolment of %s failed: %s", row["device_id"], exc)
        raise EnrolmentRefused("not_ready", str(exc)) from None
    except ControllerError as exc:  # Conflict: registered under another OPD or kind
        raise EnrolmentRefused("conflict", str(exc)) from None
    if outcome != "claimed":  # used or expired by a concurrent request just now
        raise _refusal(outcome, row)
    logger.info("device %s (%s, %s) enrolled from %s", row["device_id"], row["opd"],
                row["kind"], used_from)
    return _result(row, password)

