"""benchmarks/observability.py runs once at a tiny size (zray side only; no timing asserted)."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_observability_benchmark_runs_at_a_tiny_size(tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "observability.py"), "--sizes", "30",
         "--repeats", "1", "--no-ray", "--markdown", str(tmp_path / "t.md")],
        capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    (row,) = data["zray"]
    assert row["size"] == 30 and row["counted"] >= 30 and 40 <= row["rows_returned"] <= 50
    assert all(row[op] > 0 for op in ("list_tasks(limit=100)", "summarize_tasks()"))
    assert "list_tasks(limit=100)" in (tmp_path / "t.md").read_text()
