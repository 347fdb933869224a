"""benchmarks/serve.py runs once at a tiny size (no timing is asserted)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "benchmarks", "serve.py")
pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")]


def run_bench(only):
    out = subprocess.run([sys.executable, BENCH, "--duration", "1", "--handle-calls", "20",
                          "--only", only, "--json"], capture_output=True, text=True, timeout=540,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_zray_and_fastapi_at_a_tiny_size():
    results = run_bench("zray,fastapi")
    for kind in ("zray", "fastapi"):
        server = results["servers"][kind]
        assert "skipped" not in server, server
        assert server["requests_per_s"] > 0 and server["non_2xx"] == 0
        assert server["cpu_us_per_request"] > 0     # the server's process tree was measured
    z = results["servers"]["zray"]
    assert z["handle_calls_per_s"] > 0 and z["run_to_first_200_s"] > 0
    assert "zray/fastapi requests/s" in results["ratios"]


@pytest.mark.slow
def test_ray_serve_at_a_tiny_size():
    if not os.path.exists("/opt/rayvenv/bin/python"):
        pytest.skip("no Ray interpreter")
    server = run_bench("ray")["servers"]["ray"]
    if "skipped" in server:
        pytest.skip(server["skipped"])
    assert server["requests_per_s"] > 0
