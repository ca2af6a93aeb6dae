"""Rollouts: a release offered to units in stages, canary first (`controller.rollouts`).

Admins start and stop them; admins and operators read them (an operator sees only the
rollouts with units of its OPD, and only those units). The controller's periodic work
(`controller.rollouts.RolloutEngine`) makes the offers and follows the outcomes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from controller.api.deps import AdminUser, LangDep, StaffUser, StoreDep, not_found
from controller.api.schemas import RolloutIn, RolloutOut, RolloutStopIn
from controller.checks import Lang
from controller.rollouts import PlanError, plan_stages, select_units
from protocol.models import MAX_INT

router = APIRouter(prefix="/api/v1", tags=["rollouts"])

RolloutId = Annotated[int, Path(ge=1, le=MAX_INT)]

_TEXT: dict[str, dict[Lang, str]] = {
    "no_release": {"id": "rilis {version} belum ditambahkan (release add)",
                   "en": "release {version} has not been added (release add)"},
    "no_device": {"id": "perangkat {device} tidak ada",
                  "en": "no device {device}"},
    "no_units": {"id": "OPD {opd} tidak punya unit", "en": "OPD {opd} has no units"},
}


def _invalid(lang: Lang, field: str, code: str, **ctx: object) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[
        {"loc": ["body", *field.split(".")], "msg": _TEXT[code][lang].format(**ctx),
         "type": code}])


@router.post("/rollouts", response_model=RolloutOut, status_code=status.HTTP_201_CREATED)
def start_rollout(store: StoreDep, user: AdminUser, body: RolloutIn, lang: LangDep) -> dict:
    """Start a rollout (one runs at a time: 409 while another does). The canary stage is
    offered at the controller's next sweep."""
    if store.get_release(body.version) is None:
        raise _invalid(lang, "version", "no_release", version=body.version)
    target = body.target.model_dump(exclude_none=True)
    try:
        units = select_units(store.list_devices(), target)
    except PlanError as exc:
        if exc.field == "target.devices":
            missing = next(d for d in target["devices"] if store.get_device(d) is None)
            raise _invalid(lang, exc.field, "no_device", device=missing) from None
        raise _invalid(lang, exc.field, "no_units", opd=target.get("opd")) from None
    stages = plan_stages(units, body.canary, body.stage_percents)
    return store.create_rollout(
        version=body.version, target=target, canary=body.canary,
        stage_percents=body.stage_percents, max_failure_share=body.max_failure_share,
        stage_timeout_s=body.stage_timeout_s, stages=stages, actor=user.actor)


@router.get("/rollouts", response_model=list[RolloutOut])
def list_rollouts(store: StoreDep, user: StaffUser,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
    """Rollouts, newest first, without their units (an operator: those with its units)."""
    return store.list_rollouts(user.opd_scope, limit)


@router.get("/rollouts/{rollout_id}", response_model=RolloutOut)
def get_rollout(store: StoreDep, user: StaffUser,
                rollout_id: RolloutId) -> dict:
    """A rollout and each unit's version running and offered, stage, state and result."""
    row = store.get_rollout(rollout_id, user.opd_scope)
    if row is None:
        raise not_found(f"rollout {rollout_id}")
    return row


@router.post("/rollouts/{rollout_id}/stop", response_model=RolloutOut)
def stop_rollout(store: StoreDep, user: AdminUser, rollout_id: RolloutId,
                 body: RolloutStopIn) -> dict:
    """Stop a running rollout: no further offers (units offered keep their result)."""
    return store.stop_rollout(rollout_id, reason="stopped_by_admin", note=body.reason,
                              actor=user.actor)
