"""Files for ``smartcity-edge provision``: TOML edited in place (comments and layout kept),
and files written atomically, only when different."""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .options import ProvisionError

# --------------------------------------------------------------------------------------
# Editing TOML in place (comments and layout kept)
# --------------------------------------------------------------------------------------
_HEADER = re.compile(r"^\s*\[")
_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]\s*(?:#.*)?$")


def toml_scalar(value: Any) -> str:
    """A string, bool or int as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)  # JSON escapes are TOML escapes
    raise TypeError(f"cannot write {value!r} as a TOML scalar")


def _value_end(line: str, start: int) -> int:
    """Index just past the scalar value that starts at ``start`` (quotes respected)."""
    if line.startswith('"""', start) or line.startswith("'''", start):
        raise ValueError("multi-line strings are not edited")
    quote = line[start] if start < len(line) else ""
    if quote == '"':
        i = start + 1
        while i < len(line):
            if line[i] == "\\":
                i += 2
                continue
            if line[i] == '"':
                return i + 1
            i += 1
        raise ValueError("unterminated string")
    if quote == "'":
        end = line.find("'", start + 1)
        if end < 0:
            raise ValueError("unterminated string")
        return end + 1
    if quote in ("[", "{"):
        raise ValueError("arrays and inline tables are not edited")
    hash_at = line.find("#", start)
    end = len(line) if hash_at < 0 else hash_at
    return len(line[:end].rstrip())


def set_toml_values(text: str, values: dict[tuple[str, str], Any]) -> str:
    """Set ``{(table, key): value}`` in TOML ``text``, keeping everything else as it is.

    A key's line is rewritten in place (its trailing comment kept); a missing key is
    added at the end of its table; a missing table is appended. Only top-level tables
    and scalar values. The result is checked by parsing it back; raises ``ValueError``.
    """
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for (table, key), value in values.items():
        lines = _set_one(lines, table, key, toml_scalar(value))
    result = "".join(lines)
    try:
        parsed = tomllib.loads(result)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"the edited file is not valid TOML: {exc}") from exc
    for (table, key), value in values.items():
        got = parsed.get(table, {}).get(key)
        if got != (str(value) if isinstance(value, Path) else value):
            raise ValueError(f"{table}.{key} did not take the value {value!r}")
    return result


def _set_one(lines: list[str], table: str, key: str, rendered: str) -> list[str]:
    start = next((i for i, line in enumerate(lines)
                  if (m := _TABLE.match(line)) and m.group(1) == table), None)
    if start is None:
        tail = [] if not lines or lines[-1].strip() == "" else ["\n"]
        return lines + tail + [f"[{table}]\n", f"{key} = {rendered}\n"]
    end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])),
               len(lines))
    key_re = re.compile(rf"^(\s*{re.escape(key)}\s*=\s*)")
    last_entry = start
    for i in range(start + 1, end):
        stripped = lines[i].strip()
        if stripped and not stripped.startswith("#"):
            last_entry = i
        m = key_re.match(lines[i])
        if m is None:
            continue
        line = lines[i].rstrip("\n")
        value_at = m.end()
        try:
            value_end = _value_end(line, value_at)
        except ValueError as exc:
            raise ValueError(f"{table}.{key}: {exc}") from None
        lines[i] = line[:value_at] + rendered + line[value_end:] + "\n"
        return lines
    return lines[:last_entry + 1] + [f"{key} = {rendered}\n"] + lines[last_entry + 1:]


# --------------------------------------------------------------------------------------
# Files, written only when different
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


def _state_of(path: Path) -> tuple[bytes, int, int, int] | None:
    try:
        st = path.lstat()
        return path.read_bytes(), st.st_mode & 0o7777, st.st_uid, st.st_gid
    except FileNotFoundError:
        return None


def put_file(path: Path, data: bytes, *, mode: int, owner: Owner | None = None,
             dry_run: bool = False) -> str:
    """Make ``path`` hold ``data`` with ``mode`` (and ``owner``); atomic; returns what
    happened: ``written``, ``updated``, ``unchanged`` (``would write``/``would update``
    in a dry run)."""
    before = _state_of(path)
    if before is not None:
        same = before[0] == data and before[1] == mode
        if owner is not None:
            same = same and (before[2], before[3]) == (owner.uid, owner.gid)
        if same:
            return "unchanged"
    action = "written" if before is None else "updated"
    if dry_run:
        return f"would {'write' if before is None else 'update'}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, owner.uid, owner.gid)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return action


def _under(root: Path, path: Path | str) -> Path:
    """``path`` (absolute, as on the unit) inside the tree at ``root``."""
    path = Path(path)
    if not path.is_absolute():
        raise ProvisionError(f"{path}: paths in the unit's config must be absolute")
    return root / path.relative_to("/")



def _loads(text: str, path: Path) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProvisionError(f"{path}: not valid TOML: {exc}") from None
