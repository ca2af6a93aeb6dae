"""A wheelhouse: the project's wheel and every wheel it needs, with lock files.

Used by ``scripts/build-wheelhouse`` (a unit or the controller installing offline) and by
``smartcity-controller release build`` (the wheelhouse inside a release bundle). For the
platforms chosen (``host``, ``aarch64``: 64-bit Raspberry Pi OS, CPython 3.11; ``armv7l``,
32-bit, is refused with the reason in ``UNAVAILABLE``), ``out`` then holds, in one flat
directory:

- the project's wheel and the wheels of its ``[edge]`` extra for every platform chosen
  (compiled ones per platform, pure-Python ones once; a dependency published only as a
  source archive is built into a py3-none-any wheel on this machine);
- with ``controller=True`` (the script's default with ``host``) also the
  ``[controller]`` extra, and setuptools and wheel (to build the project from a checkout
  with no index: scripts/install-controller --wheelhouse DIR);
- ``requirements.lock``: what a unit installs, each pinned with the SHA-256 of its wheel
  for every platform (``pip install --require-hashes --no-index --find-links DIR -r
  DIR/requirements.lock``); and, with the controller, ``requirements-controller.lock``;
- ``SHA256SUMS`` of every file.

Needs pip 23 or newer and, unless ``find_links`` holds every wheel (``no_index``), the
network (PyPI) on the machine that builds it; the machines that install from it need
neither.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform as host_platform
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from protocol.release import PROJECT, PYTHON_VERSION

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
PLATFORM_TAGS = {
    "aarch64": ["manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64"],
    "armv7l": ["manylinux2014_armv7l", "manylinux_2_17_armv7l", "manylinux_2_31_armv7l"],
}
PLATFORM_CHOICES = ("host", *PLATFORM_TAGS)
DEFAULT_PLATFORMS = ("host", "aarch64")
UNAVAILABLE = {
    "armv7l": "PyPI has no 32-bit ARM (armv7l) wheel of cffi, which cryptography needs (it "
              "checks the signature of update bundles), and it cannot be compiled for a Pi "
              "here: build the 32-bit wheelhouse on a 32-bit Raspberry Pi OS unit (its pip "
              "also reads piwheels.org), or run 64-bit Raspberry Pi OS (aarch64)",
}
"""Platforms a wheelhouse cannot be made for offline, and why."""
BUILD_TOOLS = ["setuptools>=68", "wheel"]
WHEEL_PREFIX = PROJECT.replace("-", "_")


class WheelhouseError(RuntimeError):
    """pip failed, or the wheels resolve differently per platform."""


@dataclass
class Wheelhouse:
    out: Path
    project_wheel: Path
    platforms: list[str]
    """Machine names (``platform.machine()``) the edge lock installs on."""
    edge_lock: Path
    controller_lock: Path | None = None
    packages: dict[str, str] = field(default_factory=dict)
    """``{name: version}`` of the edge lock."""


def machine_name(name: str) -> str:
    """A platform choice as the machine name a unit reports (``host`` -> this one's)."""
    return host_platform.machine() if name == "host" else name


def pip(*args: str, index_args: Sequence[str] = ()) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args, *index_args]
    logger.info("+ pip %s", " ".join([*args, *index_args]))
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise WheelhouseError(f"pip {args[0]} failed ({result.returncode}):\n"
                              f"{(result.stderr or result.stdout)[-3000:]}")


def cross_flags(name: str) -> list[str]:
    """pip options that pick wheels for ``name`` (a key of PLATFORM_TAGS)."""
    flags = ["--only-binary=:all:", "--python-version", PYTHON_VERSION,
             "--implementation", "cp", "--abi", "cp" + PYTHON_VERSION.replace(".", ""),
             "--abi", "abi3"]  # cryptography's wheels are abi3
    for tag in PLATFORM_TAGS[name]:
        flags += ["--platform", tag]
    return flags


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve(out: Path, spec: str, flags: list[str]) -> dict[str, tuple[str, Path]]:
    """``{name: (version, wheel)}`` that pip would install for ``spec`` from ``out`` only."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip("install", "--dry-run", "--ignore-installed", "--quiet", "--no-index",
            "--find-links", str(out), "--report", str(report), "--target", tmp, *flags,
            spec)
        items = json.loads(report.read_text())["install"]
    found = {}
    for item in items:
        url = item["download_info"]["url"]
        if not url.startswith("file://"):
            raise WheelhouseError(f"{url} is not in {out}")
        found[item["metadata"]["name"].lower()] = (item["metadata"]["version"],
                                                   Path(url.removeprefix("file://")))
    return found


def write_lock(path: Path, resolved: list[dict[str, tuple[str, Path]]], title: str
               ) -> dict[str, str]:
    """One line per package: ``name==version --hash=sha256:...`` (one hash per wheel);
    returns ``{name: version}``."""
    pins: dict[str, tuple[str, set[str]]] = {}
    for one in resolved:
        for name, (version, wheel) in one.items():
            known = pins.setdefault(name, (version, set()))
            if known[0] != version:
                raise WheelhouseError(f"{name} resolves to {known[0]} and {version} on "
                                      "different platforms")
            known[1].add(sha256(wheel))
    lines = [f"# {title}", "# Written by the project's wheelhouse build; install with",
             "#   pip install --require-hashes --no-index --find-links DIR -r DIR/"
             + path.name]
    for name in sorted(pins):
        version, hashes = pins[name]
        lines.append(f"{name}=={version} \\")
        lines += [f"    --hash=sha256:{h} \\" for h in sorted(hashes)]
        lines[-1] = lines[-1].removesuffix(" \\")
    path.write_text("\n".join(lines) + "\n")
    logger.info("wrote %s (%d packages)", path, len(pins))
    return {name: version for name, (version, _) in pins.items()}


def build_wheelhouse(out: Path, platforms: Sequence[str] = DEFAULT_PLATFORMS, *,
                     source: Path = REPO, project_wheel: Path | None = None,
                     controller: bool | None = None, find_links: Sequence[Path] = (),
                     no_index: bool = False, sums: bool = True) -> Wheelhouse:
    """Fill ``out`` as the module docstring says and return what it holds.

    ``source``: the checkout the project's wheel is built from, unless ``project_wheel``
    (one built already) is given. ``controller``: also the controller's extra and build
    tools (default: when ``host`` is among ``platforms``). ``find_links`` and
    ``no_index``: where pip looks for the dependencies' wheels (an offline build)."""
    platforms = list(dict.fromkeys(platforms))
    unknown = [p for p in platforms if p not in PLATFORM_CHOICES]
    if unknown or not platforms:
        raise WheelhouseError(f"platforms must be among {', '.join(PLATFORM_CHOICES)}, "
                              f"not {unknown or 'none'}")
    for name in platforms:
        if name in UNAVAILABLE:
            raise WheelhouseError(f"no offline wheelhouse for {name}: {UNAVAILABLE[name]}")
    controller = "host" in platforms if controller is None else controller
    if controller and "host" not in platforms:
        raise WheelhouseError("the controller's lock is for the host: add the host platform")
    if sys.version_info[:2] != (3, 11) and "host" in platforms:
        logger.warning("host wheels are for Python %d.%d (the units run 3.11)",
                       *sys.version_info[:2])
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{WHEEL_PREFIX}-*.whl"):
        old.unlink()  # one build of the project: the one made now
    index_args = [arg for path in find_links for arg in ("--find-links", str(path))]
    if no_index:
        index_args.append("--no-index")

    # The project's wheel, then everything the host needs as wheels; this also turns any
    # source-only dependency into a wheel, which pure-Python ones can use on every platform.
    if project_wheel is None:
        pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source),
            index_args=index_args)
    else:
        (out / project_wheel.name).write_bytes(project_wheel.read_bytes())
    (project,) = out.glob(f"{WHEEL_PREFIX}-*.whl")
    extras = "edge,controller" if controller else "edge"
    pip("wheel", "--quiet", "--wheel-dir", str(out), "--find-links", str(out),
        f"{project}[{extras}]", *(BUILD_TOOLS if controller else []), index_args=index_args)
    for name in platforms:
        if name != "host":
            pip("download", "--quiet", "--dest", str(out), "--find-links", str(out),
                *cross_flags(name), f"{project}[edge]", index_args=index_args)

    edge = [resolve(out, f"{project}[edge]", [] if name == "host" else cross_flags(name))
            for name in platforms]
    packages = write_lock(out / "requirements.lock", edge,
                          "A unit's install ([edge]) for: "
                          + ", ".join(machine_name(p) for p in platforms))
    controller_lock = None
    if controller:
        controller_lock = out / "requirements-controller.lock"
        write_lock(controller_lock, [resolve(out, f"{project}[controller]", [])],
                   f"The controller's install ([controller]) on {host_platform.machine()}")
    if sums:
        lines = [f"{sha256(p)}  {p.name}" for p in sorted(out.iterdir())
                 if p.is_file() and p.name != "SHA256SUMS"]
        (out / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    logger.info("wheelhouse %s: %d wheels", out, sum(1 for _ in out.glob("*.whl")))
    return Wheelhouse(out=out, project_wheel=project,
                      platforms=[machine_name(p) for p in platforms],
                      edge_lock=out / "requirements.lock", controller_lock=controller_lock,
                      packages=packages)
