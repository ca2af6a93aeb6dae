"""The unit kinds, one registry read by every layer (units, controller, reports, dashboard).

Each :class:`UnitKind` says what a kind of unit is on the wire: the model of its remote
schedule (the ``body`` of its desired config), the command actions it takes, the readings
it charts, its systemd service, its Smart City pillar and its dashboard icon::

    from protocol.kinds import KINDS

    spec = KINDS["irrigation"]
    program = spec.schedule.model_validate(body)
    assert CommandAction.RUN_ZONE in spec.actions

One module per kind holds its schedule models: :mod:`protocol.kinds.irrigation`,
:mod:`protocol.kinds.fish_feeder`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import MappingProxyType

from pydantic import BaseModel

from protocol.ids import KIND_NAMES, KindName
from protocol.models import CommandAction

__all__ = ["KINDS", "KIND_NAMES", "KindName", "UnitKind"]


@dataclass(frozen=True)
class UnitKind:
    name: KindName
    schedule_model: str
    """Where the model of its remote schedule (``DesiredConfig.body``) is: ``module:Class``
    (imported when first asked for, so a unit loads only its own kind's models)."""
    actions: frozenset[CommandAction]
    """The command actions a unit of this kind takes; others it refuses."""
    places: tuple[str, ...]
    """What a schedule or command names: the keys of the status's ``limits``."""
    charts: tuple[tuple[str, str], ...]
    """Readings charted over time: ``(quantity, unit)``; reading keys are ``quantity.place``."""
    service: str
    """The unit's systemd service (without ``.service``)."""
    pillar: str
    """The Smart City masterplan pillar its reports count under."""
    icon: str
    """The dashboard's icon for it."""

    @property
    def schedule(self) -> type[BaseModel]:
        """The model of its remote schedule."""
        module, _, name = self.schedule_model.partition(":")
        return getattr(importlib.import_module(module), name)


_SHARED = frozenset({CommandAction.STOP_ALL, CommandAction.SKIP_NEXT, CommandAction.PAUSE,
                     CommandAction.RESUME, CommandAction.UPDATE})

KINDS: MappingProxyType[str, UnitKind] = MappingProxyType({
    "irrigation": UnitKind(
        name="irrigation", schedule_model="protocol.kinds.irrigation:IrrigationProgramConfig",
        actions=_SHARED | {CommandAction.RUN_ZONE, CommandAction.STOP_ZONE,
                            CommandAction.RAIN_DELAY},
        places=("zones",), charts=(("moisture_pct", "%"),),
        service="smartcity-irrigation", pillar="Smart Environment", icon="drop"),
    "fish_feeder": UnitKind(
        name="fish_feeder", schedule_model="protocol.kinds.fish_feeder:RemoteBody",
        actions=_SHARED | {CommandAction.FEED_NOW, CommandAction.CLEAR_FAULT},
        places=("feeders", "ponds"), charts=(("do_mg_l", "mg/L"), ("temp_c", "°C")),
        service="smartcity-fish-feeder", pillar="Smart Economy", icon="fish"),
})
"""Every unit kind by name; the same names as :data:`protocol.ids.KindName`."""

assert tuple(KINDS) == KIND_NAMES, "KINDS and KindName list the same kinds"
