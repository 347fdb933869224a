"""benchmarks/observability_dashboard.py runs once at a tiny size (no timing asserted)."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(300)
def test_dashboard_benchmark_runs_at_a_tiny_size():
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "observability_dashboard.py"),
         "--actors", "20", "--idle-seconds", "1", "--json"],
        capture_output=True, text=True, timeout=280, env=dict(os.environ, PYTHONPATH=REPO))
    assert out.returncode == 0, out.stderr[-2000:]
    (row,) = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["actors"] == 20 and row["api_first_page_ms"] > 0
    assert row["idle"]["cpu_seconds"] >= 0
    browser = row["browser"]
    assert "skipped" in browser or browser["actors_page_interactive_ms"] > 0
