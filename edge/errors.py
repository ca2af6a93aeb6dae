"""One exception root for the edge runtime; each leaf is also a built-in where one fits."""


class Reason(str):
    """Why a config value is wrong: its English text (a ``str``, what logs and ``run``
    show), made from a message ``code`` and its ``params`` (see ``edge.words``), so that
    ``check --lang id`` and ``selftest`` can say it in Bahasa Indonesia."""

    code: str
    params: dict

    def __new__(cls, code: str, **params):
        from .words import render, table  # loaded with the first problem, not before

        self = super().__new__(cls, render(table("en"), code, params))
        self.code = code
        self.params = params
        return self

    def __reduce__(self):  # copy and pickle by code, not by text
        return _reason, (self.code, self.params)


def _reason(code: str, params: dict) -> Reason:
    return Reason(code, **params)


class EdgeError(Exception):
    """Root of every error the edge runtime raises on purpose."""


class ConfigError(EdgeError, ValueError):
    """A unit config file is unreadable or invalid.

    ``problems`` lists ``(field_path, reason)`` pairs (a reason is a ``Reason`` where the
    problem has a message code); ``str()`` names the file, each field and its reason, one
    per line, so a technician can fix the file.
    """

    def __init__(self, path, problems):
        self.path = str(path)
        self.problems = list(problems)
        lines = [f"{self.path}: invalid config"]
        lines += [f"  {field}: {reason}" for field, reason in self.problems]
        super().__init__("\n".join(lines))


class HardwareError(EdgeError, RuntimeError):
    """A pin or device could not be set up or driven."""
