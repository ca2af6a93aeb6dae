"""Identifier patterns and the names of unit kinds: one place for what a name may be.

- :data:`ID_PATTERN` / :data:`Ident`: ids of OPDs and devices (one MQTT topic level each)
  and the names a unit gives its things: outputs, inputs, zones, feeders, ponds, sensors,
  programs. 1 to 32 characters, lowercase letters, digits, ``-`` and ``_``, starting with a
  letter or digit. The unit's config, the commands and the schedules all use this one.
- :data:`NAME_PATTERN` / :data:`Name`: keys of readings (``moisture_pct.zone1``) and names
  of parameters; a quantity and an optional place joined by dots.
- :data:`KindName`: the unit kinds; :mod:`protocol.kinds` holds what each kind is.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Strict, StringConstraints

__all__ = ["ID_PATTERN", "KIND_NAMES", "NAME_PATTERN", "Ident", "KindName", "Name"]

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
"""Syntax of ids and names of a unit's things (one MQTT topic level each)."""

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$"
"""Syntax of reading keys and parameter names: 1-64 of ``A-Za-z0-9_.:-``."""

Ident = Annotated[str, Strict(), StringConstraints(pattern=ID_PATTERN)]
Name = Annotated[str, Strict(), StringConstraints(pattern=NAME_PATTERN)]

KindName = Literal["irrigation", "fish_feeder"]
"""The unit kinds (what :data:`protocol.kinds.KINDS` describes)."""

KIND_NAMES: tuple[str, ...] = KindName.__args__  # type: ignore[attr-defined]
