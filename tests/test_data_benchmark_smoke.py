"""benchmarks/data.py runs end to end at a tiny size (no timing assertions)."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("pyarrow")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "data.py")


def _rows(side):
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, SCRIPT, "--side", side, "--scale", "0.0001",
                          "--repeat", "1"], capture_output=True, text=True, timeout=110,
                         env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    return {json.loads(line)["row"] for line in out.stdout.splitlines() if line.startswith("{")}


def test_zray_side_runs_every_row():
    assert _rows("zray") == {"map_batches+iter_batches", "groupby-sum", "sort",
                             "small pipeline", "actor inference"}


def test_polars_side_runs_every_row():
    pytest.importorskip("polars")
    assert len(_rows("polars")) == 5


def test_report_shows_ratios():
    spec = importlib.util.spec_from_file_location("bench_data", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = mod.report({"zray": {"sort": 0.5}, "ray": {"sort": 2.0}, "polars": {"sort": 0.1}}, 1.0)
    line = next(ln for ln in text.splitlines() if "sort of 1M ints" in ln)
    assert "4.0x" in line and "5.0x" in line and "(met)" in line
