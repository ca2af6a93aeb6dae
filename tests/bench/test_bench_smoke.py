"""Each benchmark script runs from a fresh clone, in its ``--quick`` mode, and prints its
figures. Timings are not asserted here (they belong to docs/benchmarks.md); what is
asserted is that the figures were printed and that the correctness counters are right:
nothing lost, nothing missing, every command answered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.broker import find_mosquitto

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


def run_bench(name: str, tmp_path: Path, timeout: float = 90) -> tuple[str, dict]:
    out = tmp_path / f"{name}.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), "--quick",
                           "--json", str(out)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(out.read_text())
    assert "Figures" in proc.stdout
    for figure in figures["figures"]:
        assert figure["name"] in proc.stdout
        assert figure["verdict"] in ("pass", "MISS", "-")
    return proc.stdout, figures


def test_bench_ingest_stores_every_message(tmp_path):
    stdout, r = run_bench("ingest", tmp_path)
    assert "bare paho" in stdout and "controller" in stdout
    assert r["messages"] == 1_000
    assert (r["lost"], r["missing"], r["rejected"]) == (0, 0, 0)
    assert r["ratio"] > 0


def test_bench_roundtrip_answers_every_command(tmp_path):
    stdout, r = run_bench("roundtrip", tmp_path)
    assert "POST -> status final" in stdout
    for run in r["runs"]:
        assert run["done"] == run["commands"] == 20, run["statuses"]
        assert 0 < run["p50_ms"] <= run["p99_ms"]


def test_bench_fleet_stores_every_message_and_lists_the_same_devices(tmp_path):
    stdout, r = run_bench("fleet", tmp_path)
    assert "GET the device list" in stdout
    assert r["units"] == 300
    assert r["check"]["sent"] > 0 and r["lost"] == 0 and r["check"]["missing"] == 0
    assert r["check"]["disconnects"] == 0 and r["check"]["refused_publishes"] == 0
    assert r["list"] == {"status": 200, "devices": 100, "bytes": r["list"]["bytes"],
                         "same_as_plain": True}


def test_bench_live_times_every_change_to_the_open_streams(tmp_path):
    stdout, r = run_bench("live", tmp_path)
    assert "controller CPU" in stdout
    assert r["units"] == 100 and r["streams"] == 10
    assert r["latency_ms"]["samples"] == 30 and r["latency_ms"]["lost"] == 0
    assert r["delivered_per_s"] > 0


def test_bench_edge_measures_memory_timing_and_drain(tmp_path):
    stdout, r = run_bench("edge", tmp_path)
    assert "Output on-time" in stdout and "Catch-up" in stdout
    assert r["idle"]["peak_rss_kb"] > 0 and r["idle"]["cpu_pct"] >= 0
    assert r["bytecode"] is True  # compiled first, as pip install does on a unit
    assert r["runs_done"] == r["runs"] == 2
    assert r["outputs_measured"] == 2  # both valves, each opened once
    for case in r["drain"]:
        assert case["rows"] == 71 and case["deliveries"] >= case["rows"]


def test_bench_offer_download_serves_no_byte_twice(tmp_path):
    stdout, r = run_bench("offer_download", tmp_path)
    assert "download, cut 3 times" in stdout
    assert r["cut_served"] == r["size"] and r["requests"] == 4


def test_bench_update_prints_bundle_size_and_update_time(tmp_path):
    stdout, r = run_bench("update", tmp_path)
    assert "bundle size" in stdout and "daemon downtime" in stdout
    assert r["bundle_mb"] > 1 and r["update_s"] > 0


def test_bench_backup_restores_every_row(tmp_path):
    stdout, r = run_bench("backup", tmp_path)
    assert "Backup and restore (SQLite)" in stdout
    assert r["rows"] == 5 * 3 * 288
    assert r["restored_rows"] == [r["rows"], r["rows"]]


def test_bench_rollout_offers_every_unit_once_and_completes(tmp_path):
    stdout, r = run_bench("rollout", tmp_path)
    assert "rollout of 10 units" in stdout
    assert r["state"] == "completed" and r["counts"]["applied"] == r["units"] == 10
    assert r["offered_once"] and r["resumed_ok"]
    assert r["stages"] == 2  # 10 units: the canary, 10 % is the canary already, the rest
