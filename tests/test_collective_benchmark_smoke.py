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
        # the paired table: the backend against raw mpi4py in the same ranks, both kinds
        paired = out.stdout.split("# paired:")[1].splitlines()
        assert "actors raw/zray" in paired[1] and "spmd raw/zray" in paired[1], out.stdout
        assert len(paired[2].split()) == 7, out.stdout        # bytes + 3 figures per kind


def test_collective_latency_breakdown_tiny():
    mpiexec = shutil.which("mpiexec")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        mpiexec = None
    if mpiexec is None:
        import pytest
        pytest.skip("no mpiexec and mpi4py")
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([mpiexec, "-n", "2", sys.executable,
                          os.path.join(ROOT, "benchmarks", "collective_latency.py"),
                          "--calls", "50"], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    for row in ("raw Allreduce", "floor: verify + data", "zray allreduce",
                "zray, verify_calls=False"):
        assert row in out.stdout, out.stdout


def test_nccl_benchmark_tiny_runs_or_says_why_not():
    """benchmarks/collective_nccl.py: without CuPy's NCCL and a GPU it says so and exits 0;
    with one, it prints the paired table and the formation figures."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks",
                                                       "collective_nccl.py"), "--tiny"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    from zray.util.collective.backends.nccl import nccl_available
    if nccl_available():
        assert "raw/zray" in out.stdout and "create+1st allreduce" in out.stdout, out.stdout
    else:
        assert "zray-nccl: n/a (no CuPy with NCCL and a GPU here)" in out.stdout, out.stdout
