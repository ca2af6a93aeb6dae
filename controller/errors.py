"""One exception root for the controller; each leaf is also a built-in where one fits.

The route layer turns these into HTTP answers (``NotFound`` -> 404, ``Conflict`` -> 409,
``Invalid`` -> 422); the CLI prints them and exits non-zero.
"""

from __future__ import annotations


class ControllerError(Exception):
    """Root of every error the controller raises on purpose."""


class SettingsError(ControllerError, ValueError):
    """The controller's config file (or an environment override) is unreadable or invalid.

    ``str()`` names the file, each field and its reason, one per line.
    """

    def __init__(self, path: object, problems: list[tuple[str, str]]):
        self.path = str(path)
        self.problems = list(problems)
        lines = [f"{self.path}: invalid controller config"]
        lines += [f"  {field}: {reason}" for field, reason in self.problems]
        super().__init__("\n".join(lines))


class NotFound(ControllerError, LookupError):
    """No such device, command, token or OPD (or not visible to the caller)."""


class Conflict(ControllerError, ValueError):
    """The change contradicts what is stored (a device id taken, a user with another role)."""


class Invalid(ControllerError, ValueError):
    """A request that is well formed but not acceptable (e.g. an operator without an OPD).

    ``field`` names the offending field when there is one.
    """

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(message)


class StoreError(ControllerError, RuntimeError):
    """The database is not usable (newer schema than this build, failed migration)."""
