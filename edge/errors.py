"""One exception root for the edge runtime; each leaf is also a built-in where one fits."""


class EdgeError(Exception):
    """Root of every error the edge runtime raises on purpose."""


class ConfigError(EdgeError, ValueError):
    """A unit config file is unreadable or invalid.

    ``problems`` lists ``(field_path, reason)`` pairs; ``str()`` names the file, each
    field and its reason, one per line, so a technician can fix the file.
    """

    def __init__(self, path, problems):
        self.path = str(path)
        self.problems = list(problems)
        lines = [f"{self.path}: invalid config"]
        lines += [f"  {field}: {reason}" for field, reason in self.problems]
        super().__init__("\n".join(lines))


class HardwareError(EdgeError, RuntimeError):
    """A pin or device could not be set up or driven."""
