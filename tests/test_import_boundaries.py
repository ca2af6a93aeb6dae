"""The import rules of the tree (docs/architecture.md, "Import rules").

1. ``protocol`` imports neither ``edge`` nor ``controller``; ``edge`` and ``controller``
   never import each other. Checked on the source (every ``import`` statement, also
   inside functions), so a lazy import cannot hide.
2. The rule modules import no I/O: no gpiozero, no paho, no serial port, no SQLite, no
   subprocess, no config files, nor the edge runtime's I/O modules. They are :data:`RULE_MODULES`: the pure decisions of each app
   and every module of ``protocol`` except ``protocol.mqtt`` (the MQTT client set-up) and
   ``protocol.bundle`` (reading a bundle's tar file), the parts of the contract that are
   I/O by nature. Checked by importing each in a fresh
   interpreter that refuses those modules.
3. The controller starts without the units' hardware libraries (gpiozero, pyserial,
   minimalmodbus, schedule), and every edge module imports without the controller's
   (fastapi, uvicorn, sqlite_utils, prometheus_client, httpx): a fresh interpreter refuses
   them, as a machine with only the other extra installed would.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import edge
import protocol
from edge import cli as edge_cli
from protocol.kinds import KINDS

ROOT = Path(__file__).resolve().parents[1]

RULE_MODULES = (
    "edge.irrigation.rules",
    "edge.irrigation.supply",
    "edge.fish_feeder.rules",
    "edge.fish_feeder.species",
    "edge.limits",
    "controller.notify.rules",
    "controller.notify.words",
    *sorted(m.name for m in pkgutil.walk_packages(protocol.__path__, "protocol.")
            if m.name not in ("protocol.mqtt", "protocol.bundle")),
)
# (Not socket or ssl: pydantic's plugin loader reads package metadata, which loads them.)
IO_MODULES = ("gpiozero", "lgpio", "paho", "serial", "minimalmodbus", "schedule", "sqlite3",
              "subprocess", "sdnotify", "urllib.request", "tomllib", "edge.hardware",
              "edge.link", "edge.state", "edge.outbox", "edge.sensors", "edge.config")
HARDWARE = ("gpiozero", "serial", "minimalmodbus", "schedule")
CONTROLLER_ONLY = ("fastapi", "uvicorn", "sqlite_utils", "prometheus_client", "httpx")

REFUSE = """
import importlib.abc, sys
REFUSED = {refused!r}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == r or name.startswith(r + ".") for r in REFUSED):
            raise ModuleNotFoundError(f"No module named {{name!r}} (refused)", name=name)
        return None
sys.meta_path.insert(0, Refuse())
"""


def run_refusing(refused: tuple[str, ...], code: str) -> subprocess.CompletedProcess:
    script = REFUSE.format(refused=list(refused)) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved to absolute names."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = ".".join(path.relative_to(ROOT).parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def crossings(package: str, forbidden: tuple[str, ...]) -> list[tuple[str, str]]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        for module in sorted(imports_of(path)):
            top = module.split(".")[0]
            if top in forbidden:
                bad.append((rel, module))
    return bad


@pytest.mark.parametrize(("package", "forbidden"), [
    ("protocol", ("edge", "controller")),
    ("edge", ("controller",)),
    ("controller", ("edge",)),
    # Not even lazily: a unit installs the [edge] extra alone (provisioning with an
    # enrolment token once imported httpx inside a function and failed on a real unit).
    ("edge", CONTROLLER_ONLY),
])
def test_import_boundaries_packages_do_not_cross(package, forbidden):
    assert crossings(package, forbidden) == []


def test_import_boundaries_scan_sees_a_crossing(tmp_path, monkeypatch):
    # the scan itself: a module importing across is found, relative or absolute
    fake = tmp_path / "protocol"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "bad.py").write_text("def f():\n    from edge.config import Ident\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert crossings("protocol", ("edge",)) == [("protocol/bad.py", "edge.config"),
                                                ("protocol/bad.py", "edge.config.Ident")]


def test_import_boundaries_rule_modules_import_no_io():
    code = f"""
    import importlib, json
    failed = {{}}
    for name in {list(RULE_MODULES)!r}:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            failed[name] = str(exc)
    print(json.dumps(failed))
    """
    result = run_refusing(IO_MODULES, code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {}
    assert {"edge.irrigation.rules", "protocol.kinds.irrigation", "protocol.models"} <= set(
        RULE_MODULES)


def test_import_boundaries_refusing_hook_refuses():
    result = run_refusing(HARDWARE, "import gpiozero")
    assert result.returncode != 0 and "refused" in result.stderr


def test_import_boundaries_controller_starts_without_hardware_libraries(tmp_path):
    code = f"""
    import sys
    import controller.cli
    from controller.api.main import create_app
    from controller.settings import parse_settings
    settings = parse_settings({{"database": {{"path": {str(tmp_path / "c.db")!r}}},
                               "mqtt": {{"enabled": False}}}}, environ={{}})
    from fastapi.testclient import TestClient
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code in (200, 503)
    sys.argv = ["smartcity-controller", "--help"]
    try:
        controller.cli.main()
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    print("LOADED", " ".join(sorted(sys.modules)))
    """
    result = run_refusing(HARDWARE, code)
    assert result.returncode == 0, result.stderr
    assert "smartcity-controller" in result.stdout
    loaded = set(result.stdout.split("LOADED", 1)[1].split())
    assert "controller.api.main" in loaded
    assert not {m for m in loaded if m.split(".")[0] in (*HARDWARE, "edge")}


def test_import_boundaries_edge_imports_without_controller_packages():
    code = """
    import importlib, json, pkgutil, sys
    import edge
    failed = {}
    names = [m.name for m in pkgutil.walk_packages(edge.__path__, "edge.")]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            failed[name] = str(exc)
    sys.argv = ["smartcity-edge", "--help"]
    from edge.cli import main
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    print(json.dumps({"failed": failed, "count": len(names)}))
    """
    result = run_refusing(CONTROLLER_ONLY, code)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}
    assert report["count"] >= 30  # every module of edge/, not an empty walk
    assert "edge.irrigation.app" in {m.name for m in pkgutil.walk_packages(edge.__path__,
                                                                           "edge.")}


def test_import_boundaries_edge_cli_kinds_match_the_registry():
    assert sorted(edge_cli.KIND_CHOICES) == sorted(KINDS)
    for kind in KINDS:
        assert edge_cli.app_class(kind).kind == kind
