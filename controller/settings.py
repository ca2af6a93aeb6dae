"""Controller settings: one TOML file, validated whole, with environment overrides.

``load_settings(path)`` reads the file (see ``config/controller.example.toml``), applies
every ``SMARTCITY_<SECTION>__<KEY>`` environment variable on top (for example
``SMARTCITY_MQTT__HOST=broker.local`` or ``SMARTCITY_API__PORT=8081``; the double
underscore separates the section from the key), and returns a `Settings` or raises
`SettingsError` naming the file, each field and the reason.

With ``mqtt.tls`` on, ``mqtt.ca_file`` (if given) must be a readable PEM certificate: the
settings are refused otherwise, before anything connects.

Secrets (the controller's MQTT password) are read from a file named in the config
(``mqtt.password_file``) or from ``SMARTCITY_MQTT__PASSWORD``; never write them into the
TOML file itself.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from controller.auth import DEFAULT_TOKEN_TTL_DAYS, MAX_TOKEN_TTL_DAYS
from controller.errors import SettingsError
from protocol.ids import Ident
from protocol.mqtt import ca_file_problem

logger = logging.getLogger(__name__)

ENV_PREFIX = "SMARTCITY_"
ENV_NESTING = "__"

ShareGroup = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{0,64}$")]
MqttUsername = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=True)


class DatabaseSettings(_Section):
    path: Path = Field(Path("/var/lib/smartcity/controller/controller.db"),
                       description="SQLite file (WAL mode; its directory must be writable)")
    url: str | None = Field(
        None, description="a PostgreSQL database instead of the SQLite file: "
        "postgresql://user@host:port/dbname (needs the [postgres] extra; a password is "
        "best given by ~/.pgpass or PGPASSWORD, not here)")
    telemetry_retention_days: int = Field(
        90, ge=1, le=36_500,
        description="raw telemetry older than this is rolled up per day, then deleted")
    maintenance_interval_s: float = Field(
        3600.0, gt=0, le=86_400, description="how often retention and roll-ups run")
    leader_poll_s: float = Field(
        2.0, gt=0, le=60, description="how often an instance that does not lead tries to "
        "take the leadership of the periodic work (and the leader checks it still holds it)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a PostgreSQL URL: postgresql://user@host:port/dbname "
                             f"(not {parts.scheme + '://' if parts.scheme else 'no scheme'})")
        if not parts.path.strip("/") and "dbname=" not in parts.query:
            raise ValueError("names no database: postgresql://user@host:port/dbname")
        return value

    @property
    def target(self) -> str:
        """What `controller.store.Store.open` opens: ``url`` if set, else ``path``."""
        return self.url if self.url else str(self.path)


class MqttSettings(_Section):
    enabled: bool = Field(True, description="false runs the API without a broker (tests)")
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65_535)
    client_id: str | None = Field(
        None, min_length=1, max_length=64,
        description="fixed: the broker keeps this session while we are down. Default: the "
        "username, which is what the shipped broker config makes of any client id "
        "(use_username_as_clientid), so each ingest worker needs its own username")
    username: MqttUsername = "smartcity-controller"
    password: SecretStr | None = Field(None, description="prefer password_file or the env var")
    password_file: Path | None = Field(None, description="file holding the MQTT password")
    tls: bool = False
    ca_file: Path | None = None
    keepalive_s: int = Field(30, ge=5, le=3_600)
    mqtt_version: Literal["5", "3.1.1"] = Field(
        "5", description="5 normally; 3.1.1 for brokers without MQTT 5 (e.g. amqtt): the "
        "session is then kept with clean_session=False and no expiry or receive maximum")
    session_expiry_s: int = Field(
        7 * 86_400, ge=60, le=4_294_967_294,
        description="how long the broker keeps our session and queue while we are away")
    receive_maximum: int = Field(
        2_000, ge=1, le=65_535,
        description="unacknowledged messages the broker may have in flight to us (room "
        "for two batches: one being stored, one being gathered)")
    reconnect_min_s: int = Field(1, ge=1, le=60)
    reconnect_max_s: int = Field(30, ge=1, le=3_600)
    share_group: ShareGroup = Field(
        "", description="MQTT 5 shared-subscription group; set it to run several ingest "
        "workers (one process each, distinct client_id) against one database")

    @model_validator(mode="after")
    def _client_id_is_the_username_by_default(self) -> MqttSettings:
        if self.client_id is None:
            self.client_id = self.username
        return self

    @model_validator(mode="after")
    def _one_password(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give mqtt.password or mqtt.password_file, not both")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("mqtt.reconnect_max_s must be >= mqtt.reconnect_min_s")
        return self

    def read_password(self) -> str | None:
        """The password from ``password`` or ``password_file`` (stripped), or None."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            try:
                return self.password_file.read_text().strip()
            except OSError as exc:
                raise SettingsError(self.password_file, [("mqtt.password_file", str(exc))]
                                    ) from None
        return None


class IngestSettings(_Section):
    batch_max: int = Field(1_000, ge=1, le=100_000, description="messages per transaction")
    batch_window_ms: int = Field(50, ge=0, le=10_000,
                                 description="longest wait to fill a batch")
    ack_interval_s: float = Field(0.5, ge=0, le=60,
                                  description="at most one ack per device this often")
    sweep_interval_s: float = Field(2.0, gt=0, le=3_600,
                                    description="how often unanswered commands expire "
                                    "and offline and stale units are looked for")
    writer: Literal["process", "thread"] = Field(
        "process", description="where batches are validated and committed: a writer "
        "process of their own (receiving and storing then run side by side), or a thread "
        "of the controller's process (always so for an in-memory database)")


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65_535)
    command_ttl_s: int = Field(300, ge=1, le=7 * 86_400,
                               description="default lifetime of a command")
    max_page: int = Field(1_000, ge=1, le=100_000, description="largest history page")
    token_ttl_days: int = Field(
        DEFAULT_TOKEN_TTL_DAYS, ge=1, le=MAX_TOKEN_TTL_DAYS,
        description="lifetime of an API token unless its creator gives another")
    login_failures_max: int = Field(
        10, ge=1, le=100_000,
        description="failed logins from one client address within login_window_s before "
        "that address is answered 429")
    login_window_s: int = Field(60, ge=1, le=86_400,
                                description="the window failed logins are counted in")
    trusted_proxies: list[str] = Field(
        ["127.0.0.1", "::1"],
        description="reverse proxies (addresses or networks) whose X-Forwarded-For names "
        "the client; from any other peer the header is ignored")

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value
    live_poll_s: float = Field(
        0.5, ge=0.05, le=10,
        description="how often the API looks in the database for changes to push to open "
        "dashboards (GET /api/v1/stream); one query round for all of them")
    health_broker_grace_s: float = Field(
        60.0, ge=0, le=86_400,
        description="/healthz answers 503 once the broker has been unreachable this long")
    public_url: str | None = Field(
        None, description="the address people open the dashboard at (behind the reverse "
        "proxy), e.g. https://smartcity.balikpapan.go.id; notifications link a unit's page "
        "under it. Default: http://<host>:<port>")

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value)

    def base_url(self) -> str:
        """Where the dashboard is reached: ``public_url``, or this host and port."""
        return self.public_url or f"http://{self.host}:{self.port}"


def http_url(value: str) -> str:
    """``value`` if it is an absolute http(s) URL with a host (a trailing / dropped)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
        raise ValueError(f"{value!r} is not an http:// or https:// address")
    return value.rstrip("/")


Severity = Literal["critical", "warning", "info"]
ChannelName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
MailAddress = Annotated[str, StringConstraints(pattern=r"^[^@\s<>,]+@[^@\s<>,]+$")]
ClockTime = r"([01][0-9]|2[0-3]):[0-5][0-9]"


class _Channel(_Section):
    """What every notification channel has: a name and its filters."""

    name: ChannelName | None = Field(
        None, description="keys the channel's outbox rows (default: <type>-<n>, n from 1 "
        "in the file's order); keep it when editing the file")
    opd: list[Ident] | None = Field(
        None, description="only alarms of these OPDs (one code or a list; default: all)")
    min_severity: Severity = Field("info", description="only alarms at least this severe")
    escalation: Literal[0, 1] = Field(
        0, description="0: every change at once; 1: the next contact, told only of an alarm "
        "nobody acknowledged within notify.escalate_after_s (and of its end)")

    @field_validator("opd", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class WebhookChannel(_Channel):
    url: str = Field(description="receives a JSON POST per notification")
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra request headers (e.g. Authorization); "
        "never shown by the API")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)


class TelegramChannel(_Channel):
    chat_id: str = Field(min_length=1, max_length=64, pattern=r"^(-?[0-9]+|@[A-Za-z0-9_]+)$",
                         description="a chat's number or @channelname")
    bot_token_file: Path = Field(description="file holding the bot's token (one line)")
    api_base: str = Field("https://api.telegram.org", description="the Bot API's address")

    @field_validator("api_base")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)


class EmailChannel(_Channel):
    model_config = ConfigDict(populate_by_name=True)

    host: str = Field(min_length=1, description="the SMTP server")
    port: int = Field(587, ge=1, le=65_535)
    starttls: bool = Field(True, description="upgrade the connection with STARTTLS (the "
                           "server's certificate checked); false only for a relay on this "
                           "host without a login")
    ca_file: Path | None = Field(None, description="CA of the server's certificate "
                                 "(default: the system's)")
    username: str | None = Field(None, min_length=1)
    password_file: Path | None = Field(None, description="file holding the SMTP password")
    from_: MailAddress = Field(alias="from", description="sender address")
    to: list[MailAddress] = Field(min_length=1, description="recipients")

    @model_validator(mode="after")
    def _login_only_encrypted(self) -> EmailChannel:
        if self.username is not None and not self.starttls:
            raise ValueError("a username needs starttls = true (the password would travel "
                             "in clear)")
        if (self.username is None) != (self.password_file is None):
            raise ValueError("give username and password_file together")
        return self


class NotifySettings(_Section):
    """``[notify]``: who is told of alarm changes, and when (docs/notifications.md)."""

    timezone: str = Field("Asia/Makassar", description="the city's zone: quiet hours and "
                          "the times in the texts")
    quiet_hours: str = Field(
        "", pattern=rf"^({ClockTime}-{ClockTime})?$",
        description='e.g. "22:00-06:00" (local time): only critical alarms go out then, the '
        'rest at its end; "" for none')
    flap_hold_s: float = Field(
        60.0, ge=0, le=86_400,
        description="a raise waits this long before it goes out; cleared within it, the "
        "alarm is told as one summary (later flaps of the same alarm fold into it while it "
        "waits); 0 sends at once")
    escalate_after_s: float = Field(
        900.0, gt=0, le=7 * 86_400,
        description="escalation-1 channels are told of an alarm nobody acknowledged or "
        "cleared within this time")
    retry_min_s: float = Field(10.0, gt=0, le=86_400, description="first retry after this")
    retry_max_s: float = Field(3_600.0, gt=0, le=7 * 86_400,
                               description="retries back off, doubling, up to this")
    max_attempts: int = Field(12, ge=1, le=1_000,
                              description="attempts before a notification is failed")
    send_timeout_s: float = Field(
        15.0, gt=0, le=600, description="longest a send may take; a notification being "
        "sent is retried after this if the controller died while sending it")
    poll_interval_s: float = Field(1.0, gt=0, le=60,
                                   description="how often the outbox is read")
    keep_days: int = Field(90, ge=1, le=36_500,
                           description="sent, failed and cancelled notifications are "
                           "deleted from the outbox this long after they were made")
    webhooks: list[WebhookChannel] = Field(default_factory=list)
    telegram: list[TelegramChannel] = Field(default_factory=list)
    email: list[EmailChannel] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone") from None
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _not_empty_range(cls, value: str) -> str:
        if value and value[:5] == value[6:]:
            raise ValueError("quiet hours must start and end at different times")
        return value

    @model_validator(mode="after")
    def _names(self) -> NotifySettings:
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("notify.retry_max_s must be >= notify.retry_min_s")
        seen: set[str] = set()
        for kind, channels in self.channel_lists():
            for n, channel in enumerate(channels, 1):
                if channel.name is None:
                    channel.name = f"{kind}-{n}"
                if channel.name in seen:
                    raise ValueError(f"two channels are named {channel.name!r}")
                seen.add(channel.name)
        return self

    def channel_lists(self) -> list[tuple[str, list]]:
        return [("webhook", self.webhooks), ("telegram", self.telegram),
                ("email", self.email)]

    def channels(self) -> list[tuple[str, WebhookChannel | TelegramChannel | EmailChannel]]:
        """Every channel as (type, channel), in the file's order per type."""
        return [(kind, c) for kind, channels in self.channel_lists() for c in channels]


class AlarmsSettings(_Section):
    """When the controller raises its own alarms (``controller.alarms``)."""

    offline_after_s: float = Field(
        900.0, ge=1, le=30 * 86_400,
        description="a unit not heard from for this long gets a unit_offline alarm")
    stale_after_s: float = Field(
        1800.0, ge=1, le=30 * 86_400,
        description="a unit online whose latest telemetry is this old gets a data_stale "
        "alarm")


class BrokerFilesSettings(_Section):
    """Where ``smartcity-controller mqtt-acl`` writes Mosquitto's files."""

    acl_file: Path = Path("/etc/mosquitto/smartcity.acl")
    password_file: Path = Path("/etc/mosquitto/smartcity.passwd")
    worker_usernames: list[MqttUsername] = Field(
        default_factory=list, max_length=64,
        description="more controller logins, one per extra ingest worker (its "
        "mqtt.username; docs/scaling.md); each gets the controller's rights and password")


class BackupSettings(_Section):
    """Where ``smartcity-controller backup`` writes, and how many it keeps
    (docs/operations.md, "Backups")."""

    dir: Path = Field(Path("/var/lib/smartcity/backups"),
                      description="backups go here (created if missing); copy them off the "
                      "machine too")
    keep: int = Field(14, ge=1, le=10_000,
                      description="the newest this many backups are kept, older ones deleted")
    compress: bool = Field(True, description="gzip a SQLite backup (.db.gz); a PostgreSQL "
                           "dump is compressed anyway")


class ReleasesSettings(_Section):
    """Release bundles the controller keeps and offers to units (docs/updates.md)."""

    dir: Path = Field(Path("/var/lib/smartcity/controller/releases"),
                      description="where added bundles are kept (smartcity-<version>.bundle)")
    trusted_keys: list[str] = Field(
        default_factory=list, max_length=16,
        description="the release keys (base64, as release keygen prints them; the ones the "
        "units list in [update] trusted_keys); a bundle signed by none is refused")
    max_bundle_mb: int = Field(600, ge=1, le=4_096,
                               description="largest bundle file accepted, in MB")

    @field_validator("trusted_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        from protocol.release import BundleError, decode_key

        for i, text in enumerate(value):
            try:
                decode_key(text)
            except BundleError as exc:
                raise ValueError(f"trusted_keys[{i}]: {exc}") from None
        return value

    @property
    def max_bundle_bytes(self) -> int:
        return self.max_bundle_mb * 1_000_000


class Settings(_Section):
    """Everything the controller reads from its config file."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    broker_files: BrokerFilesSettings = Field(default_factory=BrokerFilesSettings)
    alarms: AlarmsSettings = Field(default_factory=AlarmsSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    releases: ReleasesSettings = Field(default_factory=ReleasesSettings)
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    def controller_usernames(self) -> list[str]:
        """Every MQTT login of the controller: its own and its extra workers' (once each)."""
        return list(dict.fromkeys([self.mqtt.username, *self.broker_files.worker_usernames]))


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested dict from ``SMARTCITY_SECTION__KEY=value`` variables (keys lowercased)."""
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split(ENV_NESTING)]
        if not all(path):
            continue
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_settings(data: Mapping[str, Any], path: object = "<settings>",
                   environ: Mapping[str, str] | None = None) -> Settings:
    """Validate a settings dict (plus environment overrides) or raise `SettingsError`."""
    merged = _merge(dict(data), env_overrides(os.environ if environ is None else environ))
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        problems = [(".".join(str(p) for p in err["loc"]) or "(file)",
                     err["msg"].removeprefix("Value error, "))
                    for err in exc.errors(include_url=False, include_input=False)]
        raise SettingsError(path, problems) from None
    base = Path(str(path)).parent if path != "<settings>" else Path.cwd()
    settings = _resolve_paths(settings, base)
    mqtt = settings.mqtt
    if mqtt.enabled and mqtt.tls and mqtt.ca_file is not None:
        problem = ca_file_problem(mqtt.ca_file)
        if problem is not None:
            raise SettingsError(path, [("mqtt.ca_file", f"{problem}: {mqtt.ca_file}")])
    problems = _notify_file_problems(settings.notify)
    if problems:
        raise SettingsError(path, problems)
    return settings


def _notify_file_problems(notify: NotifySettings) -> list[tuple[str, str]]:
    """Each notification channel's secret and CA files must be readable now, not at the
    first alarm."""
    problems = []
    for field, channels, names in (("telegram", notify.telegram, ("bot_token_file",)),
                                   ("email", notify.email, ("password_file", "ca_file"))):
        for n, channel in enumerate(channels):
            for name in names:
                file = getattr(channel, name)
                if file is None:
                    continue
                try:
                    text = file.read_text().strip()
                except (OSError, UnicodeDecodeError) as exc:
                    problems.append((f"notify.{field}.{n}.{name}",
                                     f"{getattr(exc, 'strerror', None) or exc}: {file}"))
                    continue
                if name == "ca_file" and (problem := ca_file_problem(file)) is not None:
                    problems.append((f"notify.{field}.{n}.{name}", f"{problem}: {file}"))
                elif not text:
                    problems.append((f"notify.{field}.{n}.{name}", f"empty file: {file}"))
    return problems


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    """Relative paths in the file are relative to the file's directory (SQLite's
    ``:memory:`` is no path and stays as it is)."""
    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() or str(p) == ":memory:" else (base / p)

    settings.database.path = fix(settings.database.path)
    settings.mqtt.password_file = fix(settings.mqtt.password_file)
    settings.mqtt.ca_file = fix(settings.mqtt.ca_file)
    settings.broker_files.acl_file = fix(settings.broker_files.acl_file)
    settings.broker_files.password_file = fix(settings.broker_files.password_file)
    settings.backup.dir = fix(settings.backup.dir)
    settings.releases.dir = fix(settings.releases.dir)
    for channel in settings.notify.telegram:
        channel.bot_token_file = fix(channel.bot_token_file)
    for channel in settings.notify.email:
        channel.password_file = fix(channel.password_file)
        channel.ca_file = fix(channel.ca_file)
    return settings


def load_settings(path: str | os.PathLike, environ: Mapping[str, str] | None = None
                  ) -> Settings:
    """Read and validate the TOML file at ``path``; raise `SettingsError` if it is bad."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SettingsError(path, [("(file)", exc.strerror or str(exc))]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(path, [("(file)", f"not valid TOML: {exc}")]) from None
    return parse_settings(data, path, environ)
