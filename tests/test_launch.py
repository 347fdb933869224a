"""`python -m zray.launch` under plain python, a real mpiexec (MPICH) and a real Slurm.

Each test runs real launchers; the app is a script in tmp_path. Sessions live under a
ZRAY_TMPDIR of the test's own, so "nothing left behind" is checked there.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from helpers import slurm as slurm_helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = [sys.executable, "-m", "zray.launch"]

APP = """
import os, sys, zray
zray.init()
@zray.remote
def where():
    return os.environ.get("SLURMD_NODENAME") or "pid-%d" % os.getpid()
alive = [n for n in zray.nodes() if n["Alive"]]
print("NODES", len(alive), "CPUS", zray.cluster_resources().get("CPU"))
spread = [where.options(resources={"zray_rank:%d" % r: 0.01}).remote() for r in range(len(alive))]
print("PLACES", " ".join(sorted(zray.get(spread, timeout=60))))
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _env(tmp_path):
    zray_tmp = tmp_path / "zt"
    zray_tmp.mkdir(exist_ok=True)
    return {"PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "ZRAY_TMPDIR": str(zray_tmp)}


def _left_behind(tmp_path):
    """Sessions and node files under the test's ZRAY_TMPDIR, and zray processes using it."""
    root = tmp_path / "zt" / f"zray-{os.getuid()}"
    files = sorted(str(p) for p in root.rglob("*")) if root.exists() else []
    procs = []
    for p in psutil.process_iter(["cmdline", "environ"]):
        try:
            if "zray" in " ".join(p.info["cmdline"] or []) and (
                    (p.info["environ"] or {}).get("ZRAY_TMPDIR") == str(tmp_path / "zt")):
                procs.append(p.pid)
        except (psutil.Error, TypeError):
            continue
    return files, procs


def _wait_clean(tmp_path, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        files, procs = _left_behind(tmp_path)
        if (not files and not procs) or time.monotonic() > deadline:
            return files, procs
        time.sleep(0.2)


def test_plain_python_is_a_world_of_one(tmp_path):
    app = _write(tmp_path, "app.py", APP)
    done = subprocess.run([*LAUNCH, app, "3"], env=dict(os.environ, **_env(tmp_path)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr           # the app's exit code
    assert "NODES 1" in done.stdout and "PLACES pid-" in done.stdout
    assert _wait_clean(tmp_path) == ([], [])


def test_bad_options_are_clear_errors(tmp_path):
    env = dict(os.environ, **_env(tmp_path))
    missing = subprocess.run([*LAUNCH, str(tmp_path / "nope.py")], env=env, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "no such script" in missing.stderr
    app = _write(tmp_path, "app.py", APP)
    bad = subprocess.run([*LAUNCH, "--formation-timeout", "0", app], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--formation-timeout must be > 0" in bad.stderr


def test_mpiexec_two_ranks_one_cluster(tmp_path):
    app = _write(tmp_path, "app.py", APP)
    done = subprocess.run(["mpiexec", "-n", "2", *LAUNCH, app, "0"],
                          env=dict(os.environ, **_env(tmp_path)), capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[rank 0 " in done.stdout and "NODES 2 CPUS" in done.stdout
    places = [line for line in done.stdout.splitlines() if "PLACES" in line][0].split()[-2:]
    assert len(set(places)) == 2                        # one worker on each rank's node
    assert _wait_clean(tmp_path) == ([], [])


OPEN_MPI = shutil.which("mpirun.openmpi")       # Debian's openmpi-bin (./setup.sh)


@pytest.mark.skipif(OPEN_MPI is None, reason="Open MPI's mpirun is not installed (openmpi-bin)")
def test_open_mpi_mpirun_three_ranks_one_cluster(tmp_path):
    """Open MPI's mpirun (OMPI_COMM_WORLD_* variables). mpi4py here is built for MPICH, which
    aborts in MPI_Init under Open MPI: the launcher asks the library's vendor first and, all
    ranks being on this host, meets through a file in the user's private directory."""
    app = _write(tmp_path, "app.py", APP)
    env = dict(os.environ, **_env(tmp_path))
    done = subprocess.run([OPEN_MPI, "--allow-run-as-root", "--oversubscribe", "-np", "3",
                           *LAUNCH, app, "4"], env=env, capture_output=True, text=True,
                          timeout=240)
    out = done.stdout + done.stderr
    assert done.returncode == 4, out                   # the app's exit code
    assert "NODES 3 CPUS" in out and "[rank 2 " in out
    places = [line for line in out.splitlines() if "PLACES" in line][0].split()[-3:]
    assert len(set(places)) == 3
    if "built for MPICH" in out:                       # (an mpi4py for Open MPI meets over MPI)
        assert "not using MPI to meet" in out
    assert _wait_clean(tmp_path) == ([], [])            # the rendezvous file included


def test_mpiexec_without_a_usable_mpi4py_meets_on_the_host(tmp_path):
    """mpi4py that cannot be imported (a stand-in package that fails, first on the path):
    MPICH's mpiexec on one host still forms one cluster."""
    broken = tmp_path / "broken" / "mpi4py"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('this mpi4py is broken on purpose')\n")
    app = _write(tmp_path, "app.py", APP)
    env = dict(os.environ, **_env(tmp_path))
    env["PYTHONPATH"] = str(tmp_path / "broken") + os.pathsep + env["PYTHONPATH"]
    done = subprocess.run(["mpiexec", "-n", "2", *LAUNCH, app, "0"], env=env,
                          capture_output=True, text=True, timeout=180)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "mpi4py cannot be imported" in out and "NODES 2 CPUS" in out
    assert _wait_clean(tmp_path) == ([], [])


# -- under a real Slurm ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm():
    why = slurm_helper.available()
    if why:
        pytest.skip(why)
    with slurm_helper.SlurmCluster(nodes=3, cpus=2) as cluster:
        yield cluster


@pytest.mark.parametrize("mpi", [None, "pmi2"])
def test_srun_three_nodes(slurm, tmp_path, mpi):
    app = _write(tmp_path, "app.py", APP)
    argv = ["srun", "-N", "3", "-n", "3"] + ([f"--mpi={mpi}"] if mpi else [])
    done = slurm.run(argv + [*LAUNCH, app, "4"], env=_env(tmp_path), timeout=180)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "NODES 3 CPUS 3.0" in done.stdout
    assert "PLACES n1 n2 n3" in done.stdout            # each rank's node ran a task
    if mpi is None:
        assert "without an MPI plugin" in done.stderr      # the singleton trap, named once
    assert _wait_clean(tmp_path) == ([], [])


def test_sbatch_of_the_shipped_script(slurm, tmp_path):
    app = _write(tmp_path, "app.py", APP)
    out = tmp_path / "job.out"
    submitted = slurm.run(["sbatch", "-N", "2", f"--output={out}", "--parsable",
                           os.path.join(REPO, "hpc_scripts", "zray-cpu.sbatch"), app, "0"],
                          env=dict(_env(tmp_path), ZRAY_PYTHON=sys.executable))
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    assert slurm.wait_job(job, timeout=180) == "COMPLETED", out.read_text()
    text = out.read_text()
    assert "NODES 2" in text and "PLACES n1 n2" in text
    assert "no ZRAY_CLUSTER_SECRET" not in text         # the script made one for the job
    assert _wait_clean(tmp_path) == ([], [])


KILL_RANK_2 = """
import os, sys, time, zray, psutil
zray.init()
@zray.remote
def kill_my_launcher():
    # worker -> zygote -> node daemon -> the rank's launcher
    launcher = psutil.Process().parent().parent().parent()
    launcher.kill()
    return launcher.pid
print("KILLED", zray.get(kill_my_launcher.options(resources={"zray_rank:2": 0.01}).remote()),
      flush=True)
time.sleep(120)
print("NOT STOPPED")
"""


def test_a_rank_killed_mid_job_ends_the_job(slurm, tmp_path):
    app = _write(tmp_path, "app.py", KILL_RANK_2)
    started = time.monotonic()
    done = slurm.run(["srun", "-N", "3", "-n", "3", *LAUNCH, app], env=_env(tmp_path),
                     timeout=110)
    assert done.returncode != 0
    assert "NOT STOPPED" not in done.stdout
    # Either the watcher ends the job ("rank 2's node left") or the app's get fails first
    # (the task's worker died with its node): both end the job with a non-zero code.
    assert "rank 2's node" in done.stderr or "Error" in done.stderr, done.stderr
    assert time.monotonic() - started < 100     # not the app's 120 s: the job was ended
    assert _wait_clean(tmp_path) == ([], [])


SLEEPER = """
import time, zray
zray.init()
@zray.remote
class Holder:
    def ping(self):
        return 1
h = Holder.options(name="holder").remote()
zray.get(h.ping.remote())
print("READY", flush=True)
time.sleep(300)
"""


def test_scancel_leaves_nothing_behind(slurm, tmp_path):
    app = _write(tmp_path, "app.py", SLEEPER)
    out = tmp_path / "job.out"
    submitted = slurm.run(["sbatch", "-N", "2", f"--output={out}", "--parsable",
                           os.path.join(REPO, "hpc_scripts", "zray-cpu.sbatch"), app],
                          env=dict(_env(tmp_path), ZRAY_PYTHON=sys.executable))
    job = submitted.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 120
    while "READY" not in (out.read_text() if out.exists() else ""):
        assert time.monotonic() < deadline, out.read_text() if out.exists() else "no output"
        time.sleep(0.2)
    assert _left_behind(tmp_path)[1]                    # the job's processes are up
    slurm.run(["scancel", job])
    slurm.wait_job(job, timeout=60)
    assert _wait_clean(tmp_path, timeout=20) == ([], [])


TWO_JOBS = """
import sys, time, zray
zray.init()
@zray.remote
class Box:
    def __init__(self, value):
        self.value = value
    def get(self):
        return self.value
box = Box.options(name="box", namespace="shared", get_if_exists=True).remote(sys.argv[1])
time.sleep(3)      # both jobs hold their actor at the same time
again = zray.get_actor("box", namespace="shared")
print("VALUE", zray.get(again.get.remote()), flush=True)
"""


def test_two_jobs_of_one_user_on_one_node_do_not_meet(slurm, tmp_path):
    app = _write(tmp_path, "app.py", TWO_JOBS)
    jobs = []
    for tag in ("first", "second"):
        out = tmp_path / f"{tag}.out"
        submitted = slurm.run(["sbatch", "-N", "1", "-w", "n1", f"--output={out}", "--parsable",
                               os.path.join(REPO, "hpc_scripts", "zray-cpu.sbatch"), app, tag],
                              env=dict(_env(tmp_path), ZRAY_PYTHON=sys.executable))
        assert submitted.returncode == 0, submitted.stderr
        jobs.append((submitted.stdout.strip().split(";")[0], out, tag))
    for job, out, tag in jobs:
        assert slurm.wait_job(job, timeout=180) == "COMPLETED", out.read_text()
        assert f"VALUE {tag}" in out.read_text()
    assert _wait_clean(tmp_path) == ([], [])


SPMD = """
import sys
import numpy as np, zray
import zray.util.collective as col
zray.init()
t = np.arange(4, dtype=np.float32) * (col.get_rank() + 1 if col.is_group_initialized("default") else 1)
col.allreduce(t)       # the default group spans the ranks, formed on first use
# One write per line: the ranks share one pipe through mpiexec/srun.
sys.stdout.write(f"RANK {col.get_rank()} OF {col.get_collective_group_size()} SUM {t.tolist()} "
                 f"BACKEND {col.get_backend()}\\n")
sys.stdout.flush()
"""


def test_spmd_under_mpiexec_uses_the_jobs_communicator(tmp_path):
    app = _write(tmp_path, "app.py", SPMD)
    done = subprocess.run(["mpiexec", "-n", "2", *LAUNCH, "--spmd", app],
                          env=dict(os.environ, **_env(tmp_path)), capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = sorted(re.findall(r"RANK \d OF 2 SUM \[[^\]]*\] BACKEND \w+", done.stdout))
    assert lines == [f"RANK {r} OF 2 SUM [0.0, 2.0, 4.0, 6.0] BACKEND mpi" for r in (0, 1)]
    assert _wait_clean(tmp_path) == ([], [])


def test_spmd_under_srun_uses_the_cpu_backend(slurm, tmp_path):
    app = _write(tmp_path, "app.py", SPMD)
    done = slurm.run(["srun", "-N", "2", "-n", "2", *LAUNCH, "--spmd", app], env=_env(tmp_path),
                     timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = sorted(re.findall(r"RANK \d OF 2 SUM \[[^\]]*\] BACKEND \w+", done.stdout))
    assert lines == [f"RANK {r} OF 2 SUM [0.0, 2.0, 4.0, 6.0] BACKEND cpu" for r in (0, 1)]
    assert _wait_clean(tmp_path) == ([], [])


def test_launch_benchmark_runs_once():
    if slurm_helper.available():
        pytest.skip(slurm_helper.available())
    if REPO not in sys.path:    # benchmarks/ is not an installed package
        sys.path.insert(0, REPO)
    import benchmarks.launch as bench
    rows = bench.main(["--repeat", "1", "--nodes", "1", "--no-ray"])
    assert rows[0][0].startswith("zray srun -N 1") and rows[0][1][0] > 0
