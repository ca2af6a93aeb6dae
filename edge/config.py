"""Unit config: one TOML file per unit, validated whole before any pin is touched.

The file names its ``kind`` (``irrigation`` or ``fish_feeder``); each app extends
``UnitConfig`` with its own sections. Hardware is declared once, app-agnostic:
``[[outputs]]`` (relays: valves, pumps, motors, each with its own maximum on-time) and
``[[inputs]]`` (digital inputs and pulse counters); the apps refer to them by name. So the
checks that keep a unit safe live in one place: unique names, unique pins, limits in
range, every reference resolved.

``load_config(path)`` returns the app's config model or raises ``ConfigError`` naming
the file, each field (dotted path) and the reason. ``check_files(config, path)`` then
checks the files the config names that must exist on the unit itself (the broker's CA
certificate). ``validate_config(path)`` runs both: it is the one verdict on a unit's
file, given alike by ``smartcity-edge check``, ``selftest`` and ``run``.

Each reason is a ``Reason`` (``edge.errors``): a message code and its parameters, so the
technician tools can say it in Bahasa Indonesia (``edge.words``).
"""

from __future__ import annotations

import difflib
import errno
import importlib
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from protocol import validation
from protocol.ids import KIND_NAMES, Ident  # noqa: F401 - Ident: names of units, zones, ...
from protocol.models import UnitLimits
from protocol.mqtt import CA_FILE_NOT_FOUND, CA_FILE_NOT_PEM, ca_file_problem
from protocol.site import DEFAULT_SITE
from protocol.validation import StrictModel

from .errors import ConfigError, Reason

# Where each kind's config model lives (``edge.<kind>.config.CONFIG_MODEL``); imported only
# when a file asks for it.
CONFIG_MODELS = {kind: f"edge.{kind}.config:CONFIG_MODEL" for kind in KIND_NAMES}

BcmPin = Annotated[int, Field(ge=2, le=27, description="BCM GPIO number (2-27)")]


class FieldProblem(validation.FieldProblem):
    """A check that knows which field is wrong (``""``: the field being validated) and
    why, as a message code and its parameters (``edge.words``), or a ``Reason``. A
    reason in plain words (the protocol's own models) is a ``validation.FieldProblem``."""

    def __init__(self, field: str, code: str | Reason, **params):
        super().__init__(field, code if isinstance(code, Reason) else Reason(code, **params))


class UnitSection(StrictModel):
    device_id: Ident
    opd: Ident = Field(description="the department that owns the unit, e.g. dlh or dp3")
    name: str = Field("", max_length=80, description="human name of the site")


class SiteSection(StrictModel):
    timezone: str = DEFAULT_SITE.timezone
    latitude: float = Field(DEFAULT_SITE.latitude, ge=-90, le=90)
    longitude: float = Field(DEFAULT_SITE.longitude, ge=-180, le=180)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise FieldProblem("", "unknown_time_zone", zone=v) from exc
        return v


class BrokerSection(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    tls: bool = False
    ca_file: Path | None = None
    username: str | None = None
    password_file: Path | None = Field(None, description="file holding the MQTT password")
    keepalive_s: int = Field(30, ge=5, le=600)
    mqtt_version: Literal["5", "3.1.1"] = Field(
        "5", description="5 normally; 3.1.1 for brokers without MQTT 5 (e.g. amqtt)")


class HardwareSection(StrictModel):
    pin_factory: Literal["auto", "mock", "lgpio"] = "auto"


class OutputSpec(StrictModel):
    name: Ident
    pin: BcmPin
    active_high: bool = Field(True, description="false for relay boards that switch on low")
    max_on_s: float = Field(gt=0, le=86_400, description="hard limit: forced off after this")


class InputSpec(StrictModel):
    name: Ident
    pin: BcmPin
    kind: Literal["digital", "pulse"] = "digital"
    pull_up: bool = False
    active_high: bool | None = None
    bounce_s: float | None = Field(None, ge=0, le=10)


class TelemetrySection(StrictModel):
    interval_s: float = Field(60, ge=1, le=3600)


class ClockSection(StrictModel):
    sync_check: Literal["timesyncd", "assume_synced", "never_synced"] = Field(
        "timesyncd",
        description="how the unit learns whether its clock is right (see docs/operations.md)",
    )


class UpdateSection(StrictModel):
    """``[update]``: which release bundles the unit installs (docs/updates.md)."""

    trusted_keys: list[str] = Field(
        default_factory=list, max_length=16,
        description="Ed25519 public keys (raw 32 bytes, base64) whose bundles are trusted")
    health_timeout_s: float = Field(90.0, ge=5, le=3600, description="time the new version "
                                    "has to pass its health gate")
    wait_idle_s: float = Field(3600.0, ge=0, le=86_400, description="time an update waits "
                               "for a run or feeding to end before it gives up")
    window: str = Field("00:00-24:00", description="maintenance window, unit local time "
                        "(HH:MM-HH:MM, may wrap midnight): a release the controller offers "
                        "is downloaded and installed only inside it")
    launcher: list[str] | None = Field(
        default=None, min_length=1, max_length=32,
        description="argv run (detached) to start an offered update, instead of only "
        "leaving the request for smartcity-update@<kind>.path; placeholders {request}, "
        "{bundle}, {id}, {version}, {python}, {config}")

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        from .offer import WindowError, parse_window

        try:
            parse_window(v)
        except WindowError as exc:
            raise FieldProblem("", "update_window", why=str(exc)) from None
        return v

    @field_validator("trusted_keys")
    @classmethod
    def _keys(cls, v: list[str]) -> list[str]:
        from protocol.release import BundleError, decode_key

        for i, text in enumerate(v):
            try:
                decode_key(text)
            except BundleError as exc:
                raise FieldProblem(str(i), "pydantic", msg=str(exc), type="value_error"
                                   ) from None
        return v


class UnitConfig(StrictModel):
    kind: str
    unit: UnitSection
    site: SiteSection = SiteSection()
    broker: BrokerSection = BrokerSection()
    hardware: HardwareSection = HardwareSection()
    clock: ClockSection = ClockSection()
    telemetry: TelemetrySection = TelemetrySection()
    update: UpdateSection = UpdateSection()
    state_dir: Path = Path("/var/lib/smartcity")
    outputs: list[OutputSpec] = Field(default_factory=list)
    inputs: list[InputSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _hardware_is_consistent(self):
        names: dict[str, str] = {}
        pins: dict[int, str] = {}
        specs = [("outputs", s) for s in self.outputs] + [("inputs", s) for s in self.inputs]
        counters = {"outputs": 0, "inputs": 0}
        for section, spec in specs:
            where = f"{section}.{counters[section]}"
            counters[section] += 1
            if spec.name in names:
                raise FieldProblem(f"{where}.name", "name_used", name=spec.name,
                                   other=names[spec.name])
            names[spec.name] = f"{section}[#{counters[section]}]"
            if spec.pin in pins:
                raise FieldProblem(f"{where}.pin", "pin_used", pin=spec.pin,
                                   other=pins[spec.pin])
            pins[spec.pin] = f"{section}[{spec.name}]"
        return self

    def unit_limits(self) -> UnitLimits | None:
        """What commands and schedules may name on this unit, with its local limits (the
        status reports it); each kind overrides this."""
        return None

    def output(self, name: str) -> OutputSpec:
        return next(o for o in self.outputs if o.name == name)

    def input(self, name: str) -> InputSpec:
        return next(i for i in self.inputs if i.name == name)

    def check_refs(self, refs, section: str, wanted: str):
        """Raise FieldProblem when a ``(field, name)`` in ``refs`` names no ``section`` entry."""
        known = {s.name: s for s in getattr(self, section)}
        for field, name in refs:
            if name is None:
                continue
            if name not in known:
                raise FieldProblem(field, f"no_{section[:-1]}", name=name, role=wanted)
            spec = known[name]
            if section == "inputs" and wanted in ("pulse", "digital") and spec.kind != wanted:
                raise FieldProblem(field, "input_kind", name=name, wanted=wanted)


def _model_for(kind, path):
    target = CONFIG_MODELS.get(kind) if isinstance(kind, str) else None
    if target is None:
        raise ConfigError(path, [("kind", Reason("unknown_kind", choices=sorted(CONFIG_MODELS),
                                                 value=kind))])
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def problems(exc: ValidationError, data=None, model=None):
    """``(field, reason)`` pairs of a pydantic error, one per mistake; a reason is a
    ``Reason`` where the problem has a message code.

    With the file's ``data`` (and its ``model``), a technician reads the file's own words:
    an entry of a list is named by its ``name`` (``outputs[valve-bunga].max_on_s``, or
    ``outputs[#3]`` counting from 1 when it has none), an unknown key says which known key
    it resembles ("did you mean max_on_s?"), and a misspelt required key is one problem,
    not "unknown" plus "required".
    """
    errors = exc.errors()
    extra = {tuple(e["loc"]) for e in errors if e["type"] == "extra_forbidden"}
    typos: dict[tuple, str] = {}  # the missing key's loc -> the misspelt key found instead
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] != "missing" or not loc:
            continue
        near = [k[-1] for k in extra if k[:-1] == loc[:-1] and isinstance(k[-1], str)
                and difflib.get_close_matches(k[-1], [str(loc[-1])], n=1, cutoff=0.6)]
        if near and near[0] not in typos.values():
            typos[loc] = near[0]
    for err in errors:
        loc = tuple(err["loc"])
        field = _field_name(loc, data)
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, validation.FieldProblem):
            reason = cause.reason
            if cause.code is not None and not isinstance(reason, Reason):
                reason = Reason(cause.code, **cause.params)  # the protocol's models
            inner = tuple(int(p) if p.isdigit() else p for p in cause.field.split(".") if p)
            yield _field_name(loc + inner, data) or "(file)", reason
        elif loc in typos:
            continue  # said once, at the misspelt key
        elif err["type"] == "extra_forbidden" and loc:
            wanted = next((m[-1] for m, k in typos.items() if m[:-1] + (k,) == loc), None)
            if wanted is None:
                known = _known_keys(model, loc[:-1]) - {k[-1] for k in extra}
                close = difflib.get_close_matches(str(loc[-1]), sorted(known), n=1, cutoff=0.6)
                wanted = close[0] if close else None
            yield field, (Reason("unknown_key_did_you_mean", key=loc[-1], suggestion=wanted)
                          if wanted else pydantic_reason(err))
        else:
            yield field or "(file)", pydantic_reason(err)


_NAME_KEYS = ("name", "zone", "feeder", "pond")  # what names a list's entry


def field_name(field: str, data) -> str:
    """A dotted field path with list indexes (``programs.0.zones.1.zone``) in the file's
    terms (``programs[pagi].zones[z2].zone``), as `problems` names them."""
    return _field_name(tuple(int(p) if p.isdigit() else p for p in field.split(".") if p),
                       data) or field


def _field_name(loc: tuple, data) -> str:
    """A pydantic location in the file's terms: list entries by their ``name``."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and parts:
            entry = node[part] if 0 <= part < len(node) else None
            name = next((entry[k] for k in _NAME_KEYS if isinstance(entry, dict)
                         and isinstance(entry.get(k), str)), None)
            parts[-1] += f"[{name}]" if isinstance(name, str) and name else f"[#{part + 1}]"
            node = entry
        elif isinstance(node, dict) and part not in node and isinstance(part, str) \
                and parts and data is not None:
            continue  # a union's tag (``inputs[x].pulse.pin``): not a key of the file
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


def _known_keys(model, loc: tuple) -> set[str]:
    """The keys a table at ``loc`` of ``model`` may hold (empty when unknown)."""
    types = [model] if model is not None else []
    for part in loc:
        found = []
        for kind in types:
            if isinstance(part, int):
                found += [a for a in _inner(kind) if a is not None]
            elif isinstance(kind, type) and issubclass(kind, BaseModel):
                info = kind.model_fields.get(part)
                if info is not None:
                    found += _inner(info.annotation)
                else:  # a union's tag: the member model is among the candidates
                    found.append(kind)
            else:
                found += [a for a in _inner(kind)]
        types = found
    return {name for kind in types if isinstance(kind, type) and issubclass(kind, BaseModel)
            for name in kind.model_fields}


def _inner(annotation) -> list:
    """The types inside an annotation: list/dict items, union members, Annotated's type."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _inner(get_args(annotation)[0])
    if origin is None:
        return [annotation]
    args = get_args(annotation)
    if origin is dict:
        args = args[1:]
    return [t for a in args for t in _inner(a)]


def pydantic_reason(err) -> Reason:
    """A pydantic error as a ``Reason``: coded by its error type, in pydantic's English."""
    from .words import table

    code = f"pydantic.{err['type']}"
    if code not in table("en"):
        code = "pydantic"
    params = {k: f"{v:g}" if isinstance(v, float) else v  # 86400, as pydantic says it
              for k, v in (err.get("ctx") or {}).items() if k != "error"}
    if "expected" in params:  # "'valve' or 'pump'": the choices, without the English "or"
        params["expected"] = str(params["expected"]).replace(" or ", ", ")
    if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
        params["input"] = repr(err["input"])
    return Reason(code, msg=err["msg"], type=err["type"], **params)


def parse_config(data: dict, path="<config>", model=None):
    """Validate a dict already read from TOML; ``model`` defaults to the file's kind."""
    model = model or _model_for(data.get("kind"), path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, list(problems(exc, data, model))) from None


_FILE_ERRORS = {errno.ENOENT: "file_missing", errno.EACCES: "file_denied",
                errno.EISDIR: "file_is_dir"}


def load_config(path, model=None):
    """Read and validate a unit config file; raises ``ConfigError``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        code = _FILE_ERRORS.get(exc.errno, "file_unreadable")
        reason = Reason(code, error=exc.strerror or str(exc))
        raise ConfigError(path, [("(file)", reason)]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        reason = Reason("not_utf8", error=str(exc), start=exc.start)
        raise ConfigError(path, [("(file)", reason)]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [("(syntax)", _syntax_reason(exc))]) from None
    return parse_config(data, path, model)


def _syntax_reason(exc: tomllib.TOMLDecodeError) -> Reason:
    # tomllib names the place only in its message: "... (at line 3, column 9)".
    at = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
    if at is None:
        return Reason("toml_syntax", error=str(exc))
    return Reason("toml_syntax_at", error=str(exc), line=int(at[1]), column=int(at[2]))


def check_files(config, path="<config>") -> None:
    """Raise ``ConfigError`` when a file the unit needs at run time is missing or unusable:
    with ``[broker] tls = true``, the ``ca_file`` (read relative to the working directory,
    as the daemon does)."""
    broker = config.broker
    if broker.tls and broker.ca_file is not None:
        reason = ca_file_problem(broker.ca_file)
        if reason is not None:
            code = ("ca_file_missing" if reason == CA_FILE_NOT_FOUND
                    else "ca_file_not_pem" if reason.startswith(CA_FILE_NOT_PEM)
                    else "ca_file_unusable")
            raise ConfigError(path, [("broker.ca_file", Reason(code, error=reason,
                                                               path=broker.ca_file))])


def validate_config(path, model=None):
    """The verdict on a unit's config file: it reads, it validates, and the files it
    names are usable (``load_config`` then ``check_files``). Returns the config or raises
    ``ConfigError``. ``check``, ``selftest`` and ``run`` all ask this, so they agree."""
    config = load_config(path, model)
    check_files(config, path)
    return config
