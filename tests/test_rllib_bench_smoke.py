"""benchmarks/rllib.py runs once at a tiny size (no timing is asserted)."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("gymnasium")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "benchmarks", "rllib.py")
pytestmark = pytest.mark.timeout(300)


def test_zray_at_a_tiny_size():
    out = subprocess.run([sys.executable, BENCH, "--tiny", "--only", "zray", "--json",
                          "--sample-steps", "500"], capture_output=True, text=True,
                         timeout=280, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    z = report["systems"]["zray"]
    assert "skipped" not in z, z
    assert z["env_steps"] >= 200 and z["build_s"] > 0
    assert z["sample_steps_per_s_1env"] > 0 and z["sample_steps_per_s_8env"] > 0
    assert z["sample_cpu_us_per_step_1env"] > 0 and z["sample_cpu_us_per_step_8env"] > 0
