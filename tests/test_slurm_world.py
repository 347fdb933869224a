"""Under a real Slurm and a real mpiexec, each rank knows who it is (zray/launch/world.py)
and what it was given (zray/launch/allocation.py)."""
import json
import os
import subprocess
import sys

import pytest

from helpers import slurm as slurm_helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import json; from zray.launch import world, allocation; "
         "w = world.detect(); a = allocation.detect(); "
         "print(json.dumps(dict(launcher=w.launcher, rank=w.rank, size=w.size, node=w.node_name, "
         "job=w.job_key, hosts=list(w.hosts), mpi=w.mpi, cpus=a.cpus)))")


@pytest.fixture(scope="module")
def slurm():
    why = slurm_helper.available()
    if why:
        pytest.skip(why)
    with slurm_helper.SlurmCluster(nodes=3, cpus=2) as cluster:
        yield cluster


def _rows(stdout):
    """Every JSON object printed, by rank (ranks share one pipe: objects may share a line)."""
    decoder, rows, i = json.JSONDecoder(), [], stdout.find("{")
    while i >= 0:
        row, end = decoder.raw_decode(stdout, i)
        rows.append(row)
        i = stdout.find("{", end)
    return sorted(rows, key=lambda row: row["rank"])


def _env():
    return {"PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.mark.parametrize("mpi", [None, "pmi2"])
def test_srun_ranks_know_their_world(slurm, mpi):
    argv = ["srun", "-N", "3", "-n", "3"] + ([f"--mpi={mpi}"] if mpi else []) + [
        sys.executable, "-c", PROBE]
    done = slurm.run(argv, env=_env())
    assert done.returncode == 0, done.stderr + slurm.logs()
    rows = _rows(done.stdout)
    assert [r["rank"] for r in rows] == [0, 1, 2]
    assert {r["size"] for r in rows} == {3}
    assert [r["node"] for r in rows] == ["n1", "n2", "n3"]
    assert len({r["job"] for r in rows}) == 1 and rows[0]["job"].startswith("slurm-")
    assert rows[0]["hosts"] == ["n1", "n2", "n3"]
    assert {r["mpi"] for r in rows} == {mpi is not None}
    assert {r["cpus"] for r in rows} == {1}     # 3 tasks on 2-CPU nodes: SLURM_CPUS_ON_NODE=1


def test_cpus_per_task_is_honoured(slurm):
    done = slurm.run(["srun", "-N", "1", "-n", "1", "-c", "1", sys.executable, "-c", PROBE],
                     env=_env())
    assert done.returncode == 0, done.stderr
    assert _rows(done.stdout)[0]["cpus"] == 1      # while nproc says 2


def test_mpiexec_ranks_know_their_world():
    done = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-c", PROBE], env=dict(
        os.environ, **_env()), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    assert [(r["launcher"], r["rank"], r["size"], r["mpi"]) for r in rows] == [
        ("mpich", 0, 2, True), ("mpich", 1, 2, True)]


def test_init_inside_a_step_sizes_the_node_by_the_grant(slurm):
    """zray.init() (no launcher) in a 1-CPU Slurm step on a 2-CPU node gets 1 CPU."""
    code = ("import zray; zray.init(); print('CPUS', zray.cluster_resources()['CPU']); "
            "zray.shutdown()")
    done = slurm.run(["srun", "-N", "1", "-n", "1", "-c", "1", sys.executable, "-c", code],
                     env=_env())
    assert done.returncode == 0, done.stderr
    assert "CPUS 1.0" in done.stdout
