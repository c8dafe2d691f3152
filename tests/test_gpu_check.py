"""scripts/gpu_check.sh in its --cpu-smoke mode: every step of the GPU check (CUDA tests, solver
benchmark, the pipeline on the shipped set or a generated image folder, CIFAR-100 or its stand-in)
runs on the CPU at tiny sizes, writes its log, its results JSON and the summary, and a failing step
makes the script fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cvxattn_lib.cifar.cli import load_results

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gpu_check.sh"

pytestmark = pytest.mark.slow


def run(tmp_path, *args, **env):
    full = dict(os.environ, PYTHON=sys.executable, LOG_DIR=str(tmp_path / "logs"),
                DATA_ROOT=str(tmp_path / "data"), DIGITS_DIR=str(tmp_path / "no-digits"),
                OMP_NUM_THREADS="1", **env)
    (tmp_path / "data").mkdir(exist_ok=True)
    proc = subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=full, capture_output=True,
                          text=True, timeout=900)
    summaries = sorted((tmp_path / "data" / "results" / "gpu_check").glob("*.json"))
    return proc, (json.loads(summaries[-1].read_text()) if summaries else None)


def test_cpu_smoke_runs_every_step_and_writes_results(tmp_path):
    proc, summary = run(tmp_path, "--cpu-smoke")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "gpu_check: all steps passed" in proc.stdout
    assert summary["mode"] == "cpu-smoke" and summary["passed"] is True
    assert summary["device_name"].startswith("cpu") and summary["total_seconds"] <= summary["budget_seconds"]
    steps = {s["step"]: s for s in summary["steps"]}
    assert list(steps) == ["cuda_tests", "bench", "pipeline", "cifar100"]
    for s in steps.values():
        assert s["status"] == "ok" and Path(s["log"]).is_file(), s
        assert s["log"].startswith(str(tmp_path / "logs"))
    assert any("skipped" in line or "passed" in line for line in steps["cuda_tests"]["log_tail"])
    assert any("Throughput" in line or "twin/Z" in line for line in steps["bench"]["log_tail"])
    for step, source in (("pipeline", "imagefolder"), ("cifar100", "synthetic stand-in")):
        res = load_results(steps[step]["results"])
        assert Path(steps[step]["results"]).parent == tmp_path / "data" / "results"
        assert res["data"]["source"] == source and res["complete"] and res["failed"] == 0
        assert res["beta_fractions"] == [0.01, 0.1] and res["device"] == "cpu"
        for r in res["rows"]:
            assert r["beta"] == r["beta_fraction"] * r["beta_max"] and r["train_time_s"] >= 0
    assert load_results(steps["pipeline"]["results"])["data"]["classes"] == 3  # the generated folder


def test_a_failing_step_fails_the_check_and_options_are_checked(tmp_path):
    proc, summary = run(tmp_path, "--cpu-smoke", STEPS="pipeline", HEADS="nope")
    assert proc.returncode == 1 and "FAILED" in proc.stderr
    steps = {s["step"]: s for s in summary["steps"]}
    assert summary["passed"] is False and steps["pipeline"]["status"] == "failed (exit 2)"
    assert any("unknown head" in line for line in steps["pipeline"]["log_tail"])
    assert steps["bench"]["status"] == "skipped (not in STEPS)"
    proc, _ = run(tmp_path, "--bogus")
    assert proc.returncode == 2 and "unknown option --bogus" in proc.stderr
    if not __import__("torch").cuda.is_available():  # the GPU mode refuses a machine without CUDA
        proc, _ = run(tmp_path)
        assert proc.returncode == 2 and "no CUDA device" in proc.stderr
