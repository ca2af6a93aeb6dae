"""Species presets: water-quality limits and feeding rates for the ponds around Balikpapan.

Each preset gives the defaults a pond starts from; every value can be overridden per pond
in the unit's config (``[ponds.thresholds]``) or by the controller's remote config. The
sources behind each value are listed in docs/species-presets.md; read that before
changing a number here.

The water-quality rules work in three bands for temperature:

- inside ``temp_min_c`` .. ``temp_max_c``: the full dose;
- outside that band but inside ``temp_stop_below_c`` .. ``temp_stop_above_c``: the
  preset's ``temp_rule``: ``reduce`` (dose x ``temp_reduce_factor``) or ``skip``;
- beyond the stop limits: no feeding.

pH outside ``ph_min`` .. ``ph_max`` follows ``ph_rule`` (``reduce``, ``skip`` or
``ignore``). Dissolved oxygen below ``do_min_mg_l`` postpones a feeding (see
``edge.fish_feeder.rules``).

Feeding rates are in percent of body weight per day, by average weight: the table is a
list of ``[up_to_weight_g, rate_pct]`` rows, smallest weight first; the last row's weight
may be ``null`` (no upper bound).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from protocol.kinds.fish_feeder import SpeciesName, ThresholdOverrides
from protocol.validation import FieldProblem, StrictModel

__all__ = ["PRESETS", "SpeciesName", "SpeciesPreset", "ThresholdOverrides", "Thresholds",
           "thresholds_for"]


class Thresholds(StrictModel):
    """Water-quality limits and feeding rates of one pond (a preset plus overrides)."""

    do_min_mg_l: float = Field(gt=0, le=20, description="below this, feedings are postponed")
    temp_min_c: float = Field(ge=0, le=45)
    temp_max_c: float = Field(ge=0, le=45)
    temp_stop_below_c: float = Field(ge=0, le=45, description="no feeding below this")
    temp_stop_above_c: float = Field(ge=0, le=45, description="no feeding above this")
    temp_rule: Literal["reduce", "skip"] = "reduce"
    temp_reduce_factor: float = Field(0.5, gt=0, le=1)
    ph_min: float = Field(ge=0, le=14)
    ph_max: float = Field(ge=0, le=14)
    ph_rule: Literal["reduce", "skip", "ignore"] = "reduce"
    ph_reduce_factor: float = Field(0.5, gt=0, le=1)
    feeding_rate_table: list[tuple[float | None, float]] = Field(
        min_length=1, description="[[up_to_weight_g, rate_pct_body_weight_per_day], ...]"
    )

    @model_validator(mode="after")
    def _ordered(self):
        if not self.temp_stop_below_c <= self.temp_min_c < self.temp_max_c <= self.temp_stop_above_c:
            raise FieldProblem("temp_min_c", "temp_order")
        if not self.ph_min < self.ph_max:
            raise FieldProblem("ph_min", "ph_order")
        last = 0.0
        for i, (up_to, rate) in enumerate(self.feeding_rate_table):
            where = f"feeding_rate_table.{i}"
            if not 0 < rate <= 30:
                raise FieldProblem(where, "rate_range", rate=rate)
            if up_to is None:
                if i != len(self.feeding_rate_table) - 1:
                    raise FieldProblem(where, "last_row_only")
                continue
            if up_to <= last:
                raise FieldProblem(where, "weights_increase")
            last = up_to
        return self


class SpeciesPreset(StrictModel):
    code: SpeciesName
    latin: str
    name_id: str
    name_en: str
    water: Literal["fresh", "brackish"]
    default_times: list[str]
    thresholds: Thresholds


PRESETS: dict[str, SpeciesPreset] = {
    "nila": SpeciesPreset(
        code="nila", latin="Oreochromis niloticus", name_id="ikan nila",
        name_en="Nile tilapia", water="fresh",
        default_times=["07:00", "11:00", "16:00"],
        thresholds=Thresholds(
            do_min_mg_l=3.0,
            temp_min_c=25.0, temp_max_c=32.0,
            temp_stop_below_c=20.0, temp_stop_above_c=35.0,
            temp_rule="reduce", temp_reduce_factor=0.5,
            ph_min=6.5, ph_max=8.5, ph_rule="reduce", ph_reduce_factor=0.5,
            feeding_rate_table=[(5, 8.0), (20, 5.0), (100, 3.5), (250, 2.5), (None, 1.8)],
        ),
    ),
    "lele": SpeciesPreset(
        code="lele", latin="Clarias gariepinus (and hybrids)", name_id="ikan lele",
        name_en="African catfish", water="fresh",
        default_times=["08:00", "17:00", "21:00"],
        thresholds=Thresholds(
            do_min_mg_l=3.0,
            temp_min_c=25.0, temp_max_c=32.0,
            temp_stop_below_c=20.0, temp_stop_above_c=35.0,
            temp_rule="reduce", temp_reduce_factor=0.5,
            ph_min=6.5, ph_max=8.5, ph_rule="reduce", ph_reduce_factor=0.5,
            feeding_rate_table=[(10, 6.0), (50, 4.0), (200, 3.0), (None, 2.0)],
        ),
    ),
    "bandeng": SpeciesPreset(
        code="bandeng", latin="Chanos chanos", name_id="ikan bandeng",
        name_en="milkfish", water="brackish",
        default_times=["07:00", "16:00"],
        thresholds=Thresholds(
            do_min_mg_l=3.0,
            temp_min_c=25.0, temp_max_c=32.0,
            temp_stop_below_c=20.0, temp_stop_above_c=36.0,
            temp_rule="reduce", temp_reduce_factor=0.5,
            ph_min=7.0, ph_max=9.0, ph_rule="reduce", ph_reduce_factor=0.5,
            feeding_rate_table=[(10, 6.0), (50, 4.0), (150, 3.0), (None, 2.0)],
        ),
    ),
    "vaname": SpeciesPreset(
        code="vaname", latin="Penaeus vannamei (Litopenaeus vannamei)",
        name_id="udang vaname", name_en="whiteleg shrimp", water="brackish",
        default_times=["06:00", "10:00", "14:00", "18:00", "22:00"],
        thresholds=Thresholds(
            do_min_mg_l=4.0,
            temp_min_c=28.0, temp_max_c=32.0,
            temp_stop_below_c=24.0, temp_stop_above_c=34.0,
            temp_rule="reduce", temp_reduce_factor=0.5,
            ph_min=7.5, ph_max=8.5, ph_rule="reduce", ph_reduce_factor=0.5,
            feeding_rate_table=[(1, 9.0), (3, 6.0), (7, 4.5), (12, 3.5), (18, 2.8), (None, 2.3)],
        ),
    ),
}


def thresholds_for(species: str, overrides: ThresholdOverrides | dict | None = None) -> Thresholds:
    """The preset's thresholds with ``overrides`` applied and the whole re-checked.

    Raises ``pydantic.ValidationError`` (via ``Thresholds``) when the result is
    inconsistent, e.g. an override ``temp_min_c`` above the preset's ``temp_max_c``.
    """
    base = PRESETS[species].thresholds.model_dump()
    if isinstance(overrides, ThresholdOverrides):
        overrides = overrides.given()
    base.update(overrides or {})
    return Thresholds.model_validate(base)
