"""``smartcity-controller``: run the controller and manage its tokens, devices and broker files.

::

    smartcity-controller serve     --config FILE [--no-api | --no-ingest]
    smartcity-controller token     create --config FILE --role admin|operator|viewer [--opd CODE] [--name NAME] [--expires-days N]
    smartcity-controller token     list   --config FILE
    smartcity-controller token     rotate --config FILE --id ID [--expires-days N]
    smartcity-controller token     revoke --config FILE ID
    smartcity-controller device    add    --config FILE --opd CODE --device-id ID [--name NAME] [--kind KIND]
    smartcity-controller device    settle-lost --config FILE [--device-id ID]
    smartcity-controller mqtt-acl  --config FILE [--acl-file PATH] [--password-file PATH]
    smartcity-controller enrol     create --config FILE --opd CODE --device-id ID --kind KIND [--ttl-h H] [--name NAME] [--broker-host HOST] [--broker-port PORT] [--tls|--no-tls]
    smartcity-controller backup    --config FILE [--out DIR] [--keep N]
    smartcity-controller restore   --config FILE BACKUP [--force]
    smartcity-controller release   keygen --out DIR
    smartcity-controller release   build  --key KEY --out DIR [--platform aarch64|host ...] [--wheel FILE] [--find-links DIR] [--no-index]
    smartcity-controller release   add    FILE --config FILE

``--config`` may also come from ``SMARTCITY_CONFIG``; ``release keygen`` and ``build`` need none (they run
on any machine with a checkout: docs/updates.md). Exit codes: 0 done, 1 refused (e.g.
a device id already taken), 2 bad config or arguments, 3 the server could not start.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from controller.auth import MAX_TOKEN_TTL_DAYS, hash_token, new_token
from controller.broker_files import mosquitto_hash, new_password
from controller.enrolment import BrokerFilesError, create_enrolment, write_broker_files
from controller.errors import ControllerError, SettingsError
from controller.settings import Settings, load_settings
from controller.store import Store, iso, utcnow
from protocol.errors import ProtocolError
from protocol.kinds import KINDS
from protocol.topics import validate_id

logger = logging.getLogger(__name__)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=os.environ.get("SMARTCITY_CONFIG"),
                        required="SMARTCITY_CONFIG" not in os.environ,
                        help="controller TOML file (or SMARTCITY_CONFIG)")
    parser = argparse.ArgumentParser(prog="smartcity-controller",
                                     description="Balikpapan Smart City central controller")
    sub = parser.add_subparsers(dest="command", required=True)

    serve_ = sub.add_parser("serve", parents=[common],
                            help="run the MQTT ingest and the HTTP API")
    parts = serve_.add_mutually_exclusive_group()
    parts.add_argument("--no-api", action="store_true",
                       help="ingest and periodic work only, no HTTP server (docs/scaling.md)")
    parts.add_argument("--no-ingest", action="store_true",
                       help="HTTP API only: commands go out on an MQTT connection of its "
                       "own, nothing is subscribed, no periodic work")

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action",
                                                                      required=True)
    expires = argparse.ArgumentParser(add_help=False)
    expires.add_argument("--expires-days", type=_days, metavar="N",
                         help=f"days until the token expires, 1 to {MAX_TOKEN_TTL_DAYS} "
                         "(default: [api] token_ttl_days)")
    create = token.add_parser("create", parents=[common, expires],
                              help="create a token (shown once)")
    create.add_argument("--role", required=True, choices=["admin", "operator", "viewer"])
    create.add_argument("--opd", help="the operator's OPD code")
    create.add_argument("--name", help="user name (default: made from role and OPD)")
    token.add_parser("list", parents=[common], help="list tokens (never their values)")
    rotate = token.add_parser("rotate", parents=[common, expires],
                              help="give a token a new secret (shown once) and a new expiry; "
                              "the old secret stops working at once")
    rotate.add_argument("--id", type=int, required=True, help="the token's id (token list)")
    revoke = token.add_parser("revoke", parents=[common], help="revoke a token")
    revoke.add_argument("id", type=int)

    device = sub.add_parser("device", help="devices").add_subparsers(dest="action",
                                                                     required=True)
    add = device.add_parser("add", parents=[common],
                            help="register a device and print its MQTT credentials once")
    add.add_argument("--opd", required=True)
    add.add_argument("--device-id", required=True)
    add.add_argument("--name", default="")
    add.add_argument("--kind", default="irrigation", choices=list(KINDS))

    settle = device.add_parser(
        "settle-lost", parents=[common],
        help="after a restore: take as lost what units sent between the backup and the "
        "restore (acknowledged then, deleted on the units), so acknowledgements move on")
    settle.add_argument("--device-id", help="only this device (default: every device)")

    acl = sub.add_parser("mqtt-acl", parents=[common],
                         help="write Mosquitto's ACL and password files for every device")
    acl.add_argument("--acl-file", help="default: broker_files.acl_file from the config")
    acl.add_argument("--password-file", help="default: broker_files.password_file")

    enrol = sub.add_parser("enrol", help="one-time enrolment tokens for new units").add_subparsers(
        dest="action", required=True)
    enrol_create = enrol.add_parser("create", parents=[common],
                                    help="make a one-time token for `smartcity-edge provision`")
    enrol_create.add_argument("--opd", required=True)
    enrol_create.add_argument("--device-id", required=True)
    enrol_create.add_argument("--kind", required=True, choices=list(KINDS))
    enrol_create.add_argument("--name", default="", help="site name written into the unit's config")
    enrol_create.add_argument("--ttl-h", type=float, default=48.0, help="hours the token works")
    enrol_create.add_argument("--broker-host", help="the broker as units reach it "
                              "(default: mqtt.host)")
    enrol_create.add_argument("--broker-port", type=int, help="default: mqtt.port")
    enrol_create.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None,
                              help="units use TLS (default: mqtt.tls)")

    backup = sub.add_parser("backup", parents=[common],
                            help="write a backup of the database, delete the oldest ones")
    backup.add_argument("--out", help="directory for the backup (default: [backup] dir)")
    backup.add_argument("--keep", type=_count, metavar="N",
                        help="keep the newest N backups there (default: [backup] keep)")
    restore = sub.add_parser("restore", parents=[common],
                             help="put a backup back into the (empty) database, with the "
                             "controller stopped")
    restore.add_argument("backup", metavar="BACKUP", help="a file `backup` wrote")
    restore.add_argument("--force", action="store_true",
                         help="replace what the database holds")

    release = sub.add_parser("release", help="signed release bundles for the units "
                             "(docs/updates.md)").add_subparsers(dest="action", required=True)
    release_add = release.add_parser(
        "add", parents=[common], help="check a bundle (signature against [releases] "
        "trusted_keys, every hash) and keep it for rollouts")
    release_add.add_argument("file", help="smartcity-<version>.bundle")
    keygen = release.add_parser("keygen", help="make an Ed25519 key pair for signing releases")
    keygen.add_argument("--out", required=True, help="directory for release.key and release.pub")
    build = release.add_parser("build", help="build and sign smartcity-<version>.bundle")
    build.add_argument("--key", required=True, help="the private key (release keygen's "
                       "release.key)")
    build.add_argument("--out", required=True, help="directory the bundle is written to")
    build.add_argument("--platform", action="append", dest="platforms",
                       choices=["aarch64", "armv7l", "host"],
                       help="platforms of the wheelhouse; repeat for several (default: "
                       "aarch64; host: this machine's, for tests; armv7l is refused with "
                       "the reason)")
    build.add_argument("--source", default=None, help="the checkout to build from "
                       "(default: the one this program runs from)")
    build.add_argument("--wheel", help="the project's wheel, built already (default: built "
                       "from the checkout)")
    build.add_argument("--find-links", action="append", default=[],
                       help="a directory of wheels for pip to use; repeat for several")
    build.add_argument("--no-index", action="store_true",
                       help="use only --find-links (an offline build)")
    return parser


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_TOKEN_TTL_DAYS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of days from 1 to {MAX_TOKEN_TTL_DAYS}")
    return days


def _count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 up")
    return count


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "release" and args.action != "add":
        return _release(args)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    from protocol.logs import configure  # the units' set-up too (journal priorities)

    configure(settings.log_level)
    if args.command == "device" and args.device_id in settings.controller_usernames():
        print(f"error: --device-id {args.device_id} is the controller's MQTT login; "
              "choose another id", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            return serve(settings, api=not args.no_api, ingest=not args.no_ingest)
        if args.command in ("backup", "restore"):
            return _backup(settings, args)
        with Store.open(settings.database.target) as store:
            if args.command == "token":
                return _token(store, settings, args)
            if args.command == "enrol":
                return _enrol_create(store, settings, args)
            if args.command == "device" and args.action == "settle-lost":
                return _settle_lost(store, args)
            if args.command == "device":
                return _device_add(store, args)
            if args.command == "release":
                return _release_add(store, settings, args)
            return _mqtt_acl(store, settings, args)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ControllerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def end_streams_on_exit(server: Any, app: Any) -> None:
    """End the open live-update streams (GET /api/v1/stream) the moment SIGTERM or SIGINT
    arrives: uvicorn waits for responses in progress before it stops, and a stream would
    otherwise only end with its client."""
    handle_exit = server.handle_exit

    def on_exit_signal(sig: int, frame: Any) -> None:
        handle_exit(sig, frame)
        state = getattr(app.state, "controller", None)
        if state is not None and state.live is not None and state.loop is not None:
            state.loop.call_soon_threadsafe(state.live.end_streams)

    server.handle_exit = on_exit_signal


def serve(settings: Settings, *, api: bool = True, ingest: bool = True) -> int:
    """Run the controller until SIGTERM or SIGINT: the ingest and the API, or one of them
    (``api`` False: no HTTP server; ``ingest`` False: no subscription, no periodic work)."""
    import uvicorn

    from controller.api.main import create_app
    from controller.service import Headless, ServiceNotifier

    # Fail early, with a clear message, on a bad database path or password file.
    Store.open(settings.database.target).close()
    if settings.mqtt.enabled:
        settings.mqtt.read_password()
    if not ingest and not settings.mqtt.enabled:
        logger.warning("--no-ingest with mqtt.enabled = false: commands go nowhere")
    app = create_app(settings, ingest=ingest, http=api)
    server: Any
    if api:
        config = uvicorn.Config(app, host=settings.api.host, port=settings.api.port,
                                log_config=None, lifespan="on", access_log=False,
                                proxy_headers=False,  # the app trusts [api] trusted_proxies
                                timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)
        end_streams_on_exit(server, app)
    else:
        server = Headless(app)
    status = ("ingest and API running" if api and ingest else
              "ingest running (no API)" if ingest else "API running (no ingest)")
    notifier = ServiceNotifier(server, app, status=status)  # READY, WATCHDOG, STOPPING
    notifier.watch_exit_signals()
    notifier.start()
    try:
        server.run()
    finally:
        notifier.stop()
    return 0 if server.started else 3


def _token(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "list":
        now = iso(utcnow())
        for row in store.list_tokens():
            state = (f"revoked {row['revoked_at']}" if row["revoked_at"] else
                     f"expired {row['expires_at']}" if row["expires_at"] <= now else
                     f"live until {row['expires_at']}")
            print(f"{row['id']:>5}  {row['user']:<24} {row['role']:<8} {row['opd'] or '-':<8} "
                  f"{row['created_at']}  {state}  last used {row['last_used_at'] or 'never'}")
        return 0
    if args.action == "revoke":
        row = store.revoke_token(args.id, actor=_actor())
        print(f"token {row['id']} revoked at {row['revoked_at']}")
        return 0
    token = new_token()
    expires_at = utcnow() + timedelta(days=args.expires_days or settings.api.token_ttl_days)
    if args.action == "rotate":
        row = store.rotate_token(args.id, token_hash=hash_token(token), actor=_actor(),
                                 expires_at=expires_at)
        print(f"token {args.id} revoked; its replacement, token id {row['id']} for "
              f"{row['user']} ({_who(row)}), valid until {row['expires_at']}:")
    else:
        opd = args.opd if args.role == "operator" else None
        if args.role != "operator" and args.opd:
            print("error: --opd is only for operators", file=sys.stderr)
            return 2
        row = store.create_token(name=args.name or f"{args.role}-{opd or 'all'}",
                                 role=args.role, opd=opd, token_hash=hash_token(token),
                                 actor=_actor(), expires_at=expires_at)
        print(f"token id {row['id']} for {row['user']} ({_who(row)}), "
              f"valid until {row['expires_at']}:")
    print(token)
    print("This token is shown once; only its hash is stored.")
    return 0


def _who(row: dict) -> str:
    return row["role"] + (" " + row["opd"] if row["opd"] else "")


def _device_add(store: Store, args: argparse.Namespace) -> int:
    try:
        validate_id(args.opd, "--opd")
        validate_id(args.device_id, "--device-id")
    except ProtocolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    password = new_password()
    store.add_device(args.device_id, args.opd, kind=args.kind, name=args.name,
                     mqtt_password_hash=mosquitto_hash(password, args.device_id),
                     actor=_actor())
    print(f"device {args.device_id} registered under {args.opd}.")
    print(f"MQTT username: {args.device_id}")
    print(f"MQTT password: {password}")
    print("The password is shown once. Put it in the unit's password file, then run "
          "`smartcity-controller mqtt-acl` and reload Mosquitto.")
    return 0


def _settle_lost(store: Store, args: argparse.Namespace) -> int:
    settled = store.settle_lost_seqs(actor=_actor(), device_id=args.device_id)
    for device_id, first, last in settled:
        print(f"{device_id}: seq {first}..{last} taken as lost ({last - first + 1} "
              "message(s)); its acknowledgement moves on at its next message")
    if not settled:
        print("nothing to settle: no unit's acknowledgement waits below messages stored "
              "after it")
    return 0


def _mqtt_acl(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    password = settings.mqtt.read_password()
    if password is None:
        print("error: the controller's own MQTT password is needed: set mqtt.password_file "
              "or SMARTCITY_MQTT__PASSWORD", file=sys.stderr)
        return 2
    try:
        pw_path, acl_path, devices = write_broker_files(
            store, settings, acl_path=args.acl_file, password_path=args.password_file)
    except BrokerFilesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {pw_path} and {acl_path} for {devices} device(s) and "
          f"{', '.join(settings.controller_usernames())}.")
    print("Reload Mosquitto to apply them: systemctl reload mosquitto (or kill -HUP).")
    return 0


def _enrol_create(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    token, row = create_enrolment(
        store, settings, device_id=args.device_id, opd=args.opd, kind=args.kind,
        name=args.name, ttl_h=args.ttl_h, broker_host=args.broker_host,
        broker_port=args.broker_port, broker_tls=args.tls, actor=_actor())
    print(f"enrolment token {row['id']} for {row['device_id']} ({row['kind']}, "
          f"OPD {row['opd']}), valid until {row['expires_at']}, once:")
    print(token)
    print(f"On the unit: sudo smartcity-edge provision --controller URL --token {token}")
    print(f"Units will connect to {row['broker_host']}:{row['broker_port']}"
          f"{' with TLS' if row['broker_tls'] else ''}.")
    if row["broker_host"] in ("127.0.0.1", "localhost", "::1"):
        print("Note: that broker address is this machine's loopback; pass --broker-host "
              "with the address units reach, unless they run on this machine.")
    return 0


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from controller.backup import BackupError, make_backup, prune, restore

    database = settings.database.target
    try:
        if args.command == "restore":
            done = restore(database, Path(args.backup), force=args.force)
            print(f"restored {args.backup} into {done.database} in {done.seconds:.1f} s "
                  f"(schema version {done.schema_version}"
                  + (f", migrated to {done.migrated_to}" if done.migrated_to !=
                     done.schema_version else "") + ").")
            print("Start the controller again: systemctl start smartcity-controller")
            return 0
        out = Path(args.out) if args.out else settings.backup.dir
        made = make_backup(database, out, compress=settings.backup.compress)
        size = (f"{made.size_bytes / 1e6:.1f} MB" if made.size_bytes >= 100_000 else
                f"{made.size_bytes / 1e3:.1f} kB")
        print(f"wrote {made.path}: {size} in {made.seconds:.1f} s")
        for old in prune(out, args.keep or settings.backup.keep):
            print(f"deleted {old}")
        return 0
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _release_add(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from controller.release.keep import bundle_path, keep_bundle

    source = Path(args.file)
    if not source.is_file():
        print(f"error: {source}: no such file", file=sys.stderr)
        return 2
    row = keep_bundle(store, settings, source, _actor())  # ReleaseRefused: exit 1
    print(f"release {row['version']} added: {bundle_path(settings, row['version'])}, "
          f"{row['size']} bytes, sha256 {row['sha256']}, for {', '.join(row['platforms'])}, "
          f"signed by key {row['key_id']}")
    print("Start a rollout: POST /api/v1/rollouts, or the dashboard's Updates page.")
    return 0


def _release(args: argparse.Namespace) -> int:
    from pathlib import Path

    from controller.release.bundle import ReleaseError, build_bundle, keygen
    from controller.release.wheelhouse import REPO
    from protocol.logs import configure

    configure(logging.INFO)
    try:
        if args.action == "keygen":
            private, public, text = keygen(Path(args.out))
            print(f"wrote {private} (private: keep it safe, off the units) and {public}")
            print("Units trust it with this line in their config:")
            print(f'[update]\ntrusted_keys = ["{text}"]')
            return 0
        built = build_bundle(
            Path(args.key), Path(args.out), platforms=args.platforms or ["aarch64"],
            source=Path(args.source) if args.source else REPO,
            project_wheel=Path(args.wheel) if args.wheel else None,
            find_links=[Path(p) for p in args.find_links], no_index=args.no_index)
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size_mb = built.path.stat().st_size / 1e6
    print(f"wrote {built.path}: version {built.manifest.version} for "
          f"{', '.join(built.manifest.platforms)}, {len(built.manifest.files)} files, "
          f"{size_mb:.1f} MB, signed by key {built.key_id}")
    return 0


if __name__ == "__main__":  # python -m controller.cli
    sys.exit(main())
