"""benchmarks/collective.py runs end to end at a tiny size (no timing assertions)."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_collective_benchmark_tiny():
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "collective.py"),
                          "--tiny", "--no-ray"], capture_output=True, text=True, timeout=240,
                         env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    for word in ("zray-cpu", "zray-cpu-net", "busbw", "ratios"):
        assert word in out.stdout, out.stdout
    if "# zray-mpi\n" in out.stdout and shutil.which("mpiexec"):
        assert "# zray-mpi-spmd\n" in out.stdout, out.stdout     # the launcher's column ran
