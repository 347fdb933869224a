"""benchmarks/train.py runs end to end at a tiny size (no timing assertions; Ray's column is
left out here: it takes a minute to start)."""
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
    assert "(" not in out.stdout.split("framework")[1].split("# ratios")[0], out.stdout  # no n/a
