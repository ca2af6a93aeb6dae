"""Wheels made offline for the update tests: no index, no network, no build backend.

- ``repack_installed(requirements, out)``: the wheels of the distributions installed in
  this interpreter that ``requirements`` need (followed through their own requirements),
  rebuilt from each one's RECORD, so a bundle's wheelhouse can be built here for this
  machine's own platform (``release build --platform host --no-index --find-links``).
- ``project_wheel(source, version, out)``: the project's wheel, written from a source
  tree and its setup.cfg (packages, package data, data files, metadata with the extras,
  entry points), with any version.
"""

from __future__ import annotations

import base64
import configparser
import csv
import hashlib
import importlib.metadata as md
import io
import re
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SKIP = ("INSTALLER", "REQUESTED", "direct_url.json", "RECORD")


def _record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def _write_wheel(path: Path, files: dict[str, bytes], dist_info: str) -> Path:
    rows = [_record_line(name, data) for name, data in files.items()]
    rows.append([f"{dist_info}/RECORD", "", ""])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{dist_info}/RECORD", buf.getvalue())
    return path


def closure(requirements: list[str]) -> dict[str, md.Distribution]:
    """The installed distributions ``requirements`` need, by canonical name."""
    found: dict[str, md.Distribution] = {}
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        dist = found.get(name)
        if dist is None:
            dist = md.distribution(req.name)
            found[name] = dist
            todo += [(Requirement(r), "") for r in dist.requires or []]
        for wanted in req.extras:
            todo += [(Requirement(r), wanted) for r in dist.requires or []
                     if "extra" in r]
    return found


def repack(dist: md.Distribution, out: Path) -> Path:
    """One installed distribution as a wheel in ``out``."""
    base = Path(dist.locate_file(""))
    dist_info = next(str(f).split("/")[0] for f in dist.files
                     if str(f).split("/")[0].endswith(".dist-info"))
    wheel_meta = (base / dist_info / "WHEEL").read_text()
    tags = [line.split(":", 1)[1].strip() for line in wheel_meta.splitlines()
            if line.startswith("Tag:")]
    py = ".".join(sorted({t.split("-")[0] for t in tags}))
    abi = ".".join(sorted({t.split("-")[1] for t in tags}))
    plat = ".".join(sorted({t.split("-")[2] for t in tags}))
    files: dict[str, bytes] = {}
    for entry in dist.files:
        name = str(entry)
        if name.startswith("..") or "__pycache__" in name or name.endswith(".pyc"):
            continue
        if name.startswith(dist_info + "/") and name.split("/", 1)[1] in SKIP:
            continue
        path = base / name
        if path.is_file():
            files[name] = path.read_bytes()
    stem = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    return _write_wheel(out / f"{stem}-{dist.version}-{py}-{abi}-{plat}.whl", files, dist_info)


def repack_installed(requirements: list[str], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [repack(dist, out) for dist in closure(requirements).values()]


def project_requirements(source: Path, extra: str) -> list[str]:
    """``install_requires`` and the ``extra``'s requirements from ``source/setup.cfg``."""
    cfg = configparser.ConfigParser()
    cfg.read(source / "setup.cfg")

    def lines(text: str) -> list[str]:
        return [line.strip() for line in text.splitlines()
                if line.strip() and not line.strip().startswith("#")]

    return (lines(cfg["options"]["install_requires"])
            + lines(cfg["options.extras_require"][extra]))


def project_wheel(source: Path, version: str, out: Path) -> Path:
    """The project's wheel, version ``version``, from the tree at ``source``."""
    cfg = configparser.ConfigParser()
    cfg.read(source / "setup.cfg")
    name = cfg["metadata"]["name"]
    stem = name.replace("-", "_")
    dist_info = f"{stem}-{version}.dist-info"
    files: dict[str, bytes] = {}
    patterns = ("*.py", "*.html", "*.js", "*.css", "*.toml", "*.j2")
    for package in ("protocol", "edge", "controller"):
        for pattern in patterns:
            for path in sorted((source / package).rglob(pattern)):
                if "__pycache__" not in path.parts:
                    files[path.relative_to(source).as_posix()] = path.read_bytes()
    data = f"{stem}-{version}.data/data"
    for folder, globs in (("config", ("*.toml",)), ("systemd", ("*.service", "*.path"))):
        for pattern in globs:
            for path in sorted((source / folder).glob(pattern)):
                files[f"{data}/share/smartcity/{folder}/{path.name}"] = path.read_bytes()
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
            f"Requires-Python: {cfg['options']['python_requires']}"]
    extras = cfg["options.extras_require"]
    for req in [r for r in cfg["options"]["install_requires"].splitlines() if r.strip()
                and not r.strip().startswith("#")]:
        meta.append(f"Requires-Dist: {req.strip()}")
    for extra in extras:
        meta.append(f"Provides-Extra: {extra}")
        for req in [r for r in extras[extra].splitlines() if r.strip()
                    and not r.strip().startswith("#")]:
            meta.append(f'Requires-Dist: {req.strip()} ; extra == "{extra}"')
    files[f"{dist_info}/METADATA"] = ("\n".join(meta) + "\n").encode()
    files[f"{dist_info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: tests.support.wheels\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    scripts = cfg["options.entry_points"]["console_scripts"]
    files[f"{dist_info}/entry_points.txt"] = (
        "[console_scripts]\n" + "\n".join(line.strip() for line in scripts.splitlines()
                                          if line.strip()) + "\n").encode()
    files[f"{dist_info}/top_level.txt"] = b"controller\nedge\nprotocol\n"
    out.mkdir(parents=True, exist_ok=True)
    return _write_wheel(out / f"{stem}-{version}-py3-none-any.whl", files, dist_info)
