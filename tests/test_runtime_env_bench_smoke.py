"""benchmarks/runtime_env.py runs once at a tiny size (zray's side only; no timing asserted)."""
import math
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:   # benchmarks/ is not an installed package
    sys.path.insert(0, REPO)

from benchmarks import runtime_env as bench  # noqa: E402


import pytest  # noqa: E402


@pytest.mark.slow
def test_runtime_env_benchmark_runs_at_a_tiny_size(tmp_path):
    out = tmp_path / "result.json"
    assert bench.main(["--tasks", "5", "--files", "3", "--file-kib", "1", "--no-ray",
                       "--timeout", "110", "--json", str(out)]) == 0
    import json
    rows = json.loads(out.read_text())["zray"]
    assert set(rows) == {"init", "plain tasks", "env tasks", "new env first", "init working_dir",
                         "working_dir first", "working_dir again"}
    assert all(math.isfinite(v) and v > 0 for v in rows.values())
