"""benchmarks/train.py runs end to end at a tiny size (no timing assertions; Ray's column is
left out here: it takes a minute to start)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(500)
def test_train_benchmark_tiny():
    pytest.importorskip("torch")
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "train.py"),
                          "--tiny", "--only", "zray,torchrun", "--timeout", "400"],
                         capture_output=True, text=True, timeout=480, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ratios" in out.stdout and "torchrun" in out.stdout, out.stdout
    [line] = [ln for ln in out.stdout.splitlines() if ln.startswith("JSON ")]
    results = json.loads(line[len("JSON "):])
    assert all("error" not in r and r["fit_s"] > 0 for r in results.values()), out.stdout
    assert results["zray"]["latency_ms_max"] > 0


@pytest.mark.timeout(300)
def test_train_fit_overhead_benchmark_tiny(tmp_path):
    pytest.importorskip("torch")
    env = dict(os.environ, PYTHONPATH=ROOT, ZRAY_TMPDIR=os.environ.get("ZRAY_TMPDIR", str(tmp_path)))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "train_fit.py"),
                          "--fits", "2"], capture_output=True, text=True, timeout=280, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    [line] = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    fits = json.loads(line)["fit_s"]
    assert len(fits) == 2 and all(t > 0 for t in fits)


@pytest.mark.timeout(300)
def test_train_phases_benchmark_tiny(tmp_path):
    pytest.importorskip("torch")
    env = dict(os.environ, PYTHONPATH=ROOT, ZRAY_TMPDIR=os.environ.get("ZRAY_TMPDIR", str(tmp_path)))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "train_phases.py"),
                          "--rows", "256", "--epochs", "2"], capture_output=True, text=True,
                         timeout=280, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    # the driver's phases, both workers' own, and the zygote's CPU (it imported torch)
    for phase in ("preload_sent", "actors_ready", "rank0_report_1", "group_down",
                  "rank 0 process group up", "rank 1 loop returned", "fit() returned",
                  "worker rank 1", "zygote"):
        assert phase in text, text
    [line] = [ln for ln in text.splitlines() if ln.startswith("JSON ")]
    assert json.loads(line[len("JSON "):])["fit_s"] > 0
