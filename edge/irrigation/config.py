"""Config of an irrigation unit: zones on valve outputs, and the site's hard limits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..config import Ident, StrictModel, UnitConfig


class ZoneSpec(StrictModel):
    name: Ident
    valve: Ident = Field(description="name of the output that opens this zone's valve")


class IrrigationLimits(StrictModel):
    max_concurrent_zones: int = Field(1, ge=1, le=16)
    max_daily_water_min: float = Field(240, gt=0, le=1440)


class IrrigationConfig(UnitConfig):
    kind: Literal["irrigation"]
    zones: list[ZoneSpec] = Field(min_length=1)
    limits: IrrigationLimits = IrrigationLimits()

    @model_validator(mode="after")
    def _zones_resolve(self):
        self.check_refs(
            [(f"zones.{i}.valve", z.valve) for i, z in enumerate(self.zones)], "outputs", "valve"
        )
        return self
