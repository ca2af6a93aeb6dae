"""What the controller checks before it stores or sends a schedule or a command.

The same checks the unit makes (``protocol.checks``: the protocol's models, then the
names and limits the unit last reported in its status), with each problem in the
caller's language (``id`` or ``en``, from ``Accept-Language``; ``id`` when absent).
Before a unit has reported, only the model checks apply. Refusals that depend on the
unit's moment (its clock, water already used today) stay with the unit.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import ValidationError

from protocol.checks import Problem, command_problems, model_problems, schedule_problems
from protocol.models import Command, UnitLimits

logger = logging.getLogger(__name__)

Lang = Literal["id", "en"]
DEFAULT_LANG: Lang = "id"

# Indonesian words for the problems' codes (pydantic's error types and ours); English is
# the reason itself. ``{...}`` are the problem's ``ctx`` values.
_ID: dict[str, str] = {
    "missing": "wajib diisi",
    "extra_forbidden": "tidak dikenal di sini",
    "greater_than": "harus lebih dari {gt}",
    "greater_than_equal": "harus paling sedikit {ge}",
    "less_than": "harus kurang dari {lt}",
    "less_than_equal": "harus paling banyak {le}",
    "too_short": "terlalu sedikit (paling sedikit {min_length})",
    "too_long": "terlalu banyak (paling banyak {max_length})",
    "string_pattern_mismatch": "bentuknya tidak sah (pola {pattern})",
    "string_type": "harus berupa teks",
    "list_type": "harus berupa daftar",
    "dict_type": "harus berupa objek",
    "model_type": "harus berupa objek",
    "model_attributes_type": "harus berupa objek",
    "int_type": "harus berupa bilangan bulat",
    "int_parsing": "harus berupa bilangan bulat",
    "int_from_float": "harus berupa bilangan bulat",
    "float_type": "harus berupa angka",
    "float_parsing": "harus berupa angka",
    "bool_type": "harus true atau false",
    "bool_parsing": "harus true atau false",
    "literal_error": "harus salah satu dari {expected}",
    "date_from_datetime_parsing": "bukan tanggal yang sah",
    "finite_number": "harus berupa angka terhingga",
    "unknown_name": "nama ini tidak ada di unit ini",
    "no_soil_probe": "zona ini tidak punya sensor kelembapan tanah",
    "action_not_for_kind": "unit {kind} tidak menerima perintah {action}",
    "not_for_kind": "tidak berlaku untuk unit {kind}",
    "pause_too_long": "unit ini menjeda paling lama {days:g} hari",
    "update_by_rollout": "pembaruan hanya dikirim oleh rollout (POST /api/v1/rollouts)",
}
_ID_FALLBACK = "tidak sah: {reason}"


def request_lang(accept_language: str | None) -> Lang:
    """``id`` or ``en`` from an ``Accept-Language`` header (by weight); ``id`` when absent
    or when it names neither."""
    best: tuple[float, Lang] | None = None
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        lang = {"id": "id", "in": "id", "en": "en"}.get(  # "in": Indonesian's old code
            tag.strip().lower().split("-")[0])
        if lang is None:
            continue
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if weight > 0 and (best is None or weight > best[0]):
            best = (weight, lang)  # type: ignore[assignment]
    return best[1] if best else DEFAULT_LANG


def message(problem: Problem, lang: Lang) -> str:
    """The problem's reason in ``lang``."""
    if lang == "en":
        return problem.reason
    template = _ID.get(problem.code, _ID_FALLBACK)
    ctx = {k: int(v) if isinstance(v, float) and v.is_integer() else v
           for k, v in problem.ctx.items()}
    try:
        return template.format(reason=problem.reason, **ctx)
    except (KeyError, ValueError, IndexError):
        return _ID_FALLBACK.format(reason=problem.reason)


def detail(problems: list[Problem], lang: Lang, prefix: tuple[str, ...] = ("body",)
           ) -> list[dict[str, Any]]:
    """FastAPI's 422 ``detail`` shape: ``[{"loc", "msg", "type"}]`` naming each field."""
    return [{"loc": [*prefix, *p.field.split(".")], "msg": message(p, lang), "type": p.code}
            for p in problems]


def unit_limits(device: dict) -> UnitLimits | None:
    """What the unit last reported it has, or None (never reported, or unreadable)."""
    raw = device.get("limits")
    if raw is None:
        return None
    try:
        return UnitLimits.model_validate(raw)
    except ValidationError:
        logger.warning("stored limits of %s are unreadable: ignored", device["device_id"])
        return None


def check_schedule(device: dict, body: Any) -> list[Problem]:
    """Problems of a schedule body for this device (empty: the unit would take it)."""
    return schedule_problems(device["kind"], body, unit_limits(device))


def check_command(device: dict, **fields: Any) -> tuple[Command | None, list[Problem]]:
    """Build the command from ``fields`` and check it for this device."""
    try:
        command = Command(**fields)
    except ValidationError as exc:
        return None, model_problems(exc)
    return command, command_problems(device["kind"], command, unit_limits(device))
