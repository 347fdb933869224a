"""benchmarks/tune.py runs once at a tiny size (zray and the plain-Optuna floor; Ray's side is
too slow for a test). No timing is asserted."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tune_benchmark_tiny(tmp_path):
    pytest.importorskip("optuna")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "tune.py"), "--tiny", "3",
         "--asha", "2x2", "--optuna", "3", "--no-ray", "--json", str(out), "--timeout", "120"],
        capture_output=True, text=True, timeout=240, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert [r["workload"] for r in data["rows"]] == [
        "3 tiny trials", "ASHA 2 trials x 2 reports", "OptunaSearch 3 trials"]
    for row in data["rows"]:
        assert row["zray_s"] > 0, (row, proc.stdout, proc.stderr)
    assert data["rows"][2]["optuna_s"] > 0
    assert "3 tiny trials" in proc.stdout
