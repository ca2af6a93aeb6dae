"""The remote schedule of a fish-feeder unit: per-pond plans, species and thresholds.

``RemoteBody`` is the ``body`` of a fish-feeder unit's desired config (``config``
channel): ``{"ponds": {name: {"plan": {...}, "species": ..., "thresholds": {...}}}}``. A
pond it does not name runs its local plan. ``PlanSpec`` is also the ``plan`` of a pond in
the unit's local file. Hard limits (grams per feeding and per day) stay local.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from protocol.ids import Ident
from protocol.times import parse_hhmm
from protocol.validation import FieldProblem, StrictModel

__all__ = ["PlanSpec", "RemoteBody", "RemotePond", "SpeciesName", "ThresholdOverrides"]

SpeciesName = Literal["nila", "lele", "bandeng", "vaname"]


class PlanSpec(StrictModel):
    """Feeding times (site local time) with fixed doses, or a ration from biomass."""

    times: list[str] = Field(min_length=1, max_length=24)
    doses_g: list[Annotated[float, Field(gt=0, le=100_000)]] | None = None
    fish_count: int | None = Field(None, ge=1, le=10_000_000)
    avg_weight_g: float | None = Field(None, gt=0, le=20_000)
    feeding_rate_pct: float | None = Field(None, gt=0, le=30,
                                           description="% body weight per day; default "
                                           "from the species table")

    @field_validator("times")
    @classmethod
    def _times(cls, v: list[str]) -> list[str]:
        for t in v:
            try:
                parse_hhmm(t)
            except ValueError as exc:
                raise FieldProblem("", str(exc), code="time_not_hhmm", value=t) from None
        if sorted(set(v)) != v:
            raise FieldProblem("", "times must be in order, each once", code="times_order")
        return v

    @model_validator(mode="after")
    def _one_kind(self):
        biomass = (self.fish_count, self.avg_weight_g)
        if self.doses_g is not None:
            if any(x is not None for x in (*biomass, self.feeding_rate_pct)):
                raise FieldProblem("doses_g", "give doses_g or fish_count/avg_weight_g, not both",
                                   code="doses_or_biomass")
            if len(self.doses_g) != len(self.times):
                raise FieldProblem("doses_g", f"need one dose per time ({len(self.times)})",
                                   code="dose_per_time", n=len(self.times))
        elif None in biomass:
            raise FieldProblem("fish_count", "give doses_g, or fish_count and avg_weight_g",
                               code="needs_doses")
        return self


class ThresholdOverrides(StrictModel):
    """Any subset of ``Thresholds``; what is not given comes from the species preset."""

    do_min_mg_l: float | None = Field(None, gt=0, le=20)
    temp_min_c: float | None = Field(None, ge=0, le=45)
    temp_max_c: float | None = Field(None, ge=0, le=45)
    temp_stop_below_c: float | None = Field(None, ge=0, le=45)
    temp_stop_above_c: float | None = Field(None, ge=0, le=45)
    temp_rule: Literal["reduce", "skip"] | None = None
    temp_reduce_factor: float | None = Field(None, gt=0, le=1)
    ph_min: float | None = Field(None, ge=0, le=14)
    ph_max: float | None = Field(None, ge=0, le=14)
    ph_rule: Literal["reduce", "skip", "ignore"] | None = None
    ph_reduce_factor: float | None = Field(None, gt=0, le=1)
    feeding_rate_table: list[tuple[float | None, float]] | None = Field(None, min_length=1)

    def given(self) -> dict:
        return self.model_dump(exclude_none=True)


class RemotePond(StrictModel):
    species: SpeciesName | None = None
    plan: PlanSpec | None = None
    thresholds: ThresholdOverrides | None = None


class RemoteBody(StrictModel):
    """What the controller may set: per-pond plans, species and thresholds. Nothing else."""

    ponds: dict[Ident, RemotePond] = Field(default_factory=dict)

    def problems(self, ponds) -> list[tuple[str, str]]:
        """Cross-checks against the unit's ponds: ``[(field, reason)]``, empty when fine."""
        return [(f"ponds.{p}", f"no pond named {p!r} on this unit") for p in self.ponds if p not in ponds]
