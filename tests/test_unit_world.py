"""World detection from launcher variables (zray/launch/world.py)."""
import pytest

from zray.launch import world as w


@pytest.mark.parametrize("text, hosts", [
    ("n[1-3]", ["n1", "n2", "n3"]),
    ("gpu-a[01-03,07],login", ["gpu-a01", "gpu-a02", "gpu-a03", "gpu-a07", "login"]),
    ("node7", ["node7"]),
    ("a[1-2]-ib,b1", ["a1-ib", "a2-ib", "b1"]),
])
def test_expand_hostlist(text, hosts):
    assert w.expand_hostlist(text) == hosts


SRUN = {"SLURM_JOB_ID": "42", "SLURM_STEP_ID": "0", "SLURM_PROCID": "2", "SLURM_NTASKS": "3",
        "SLURM_LOCALID": "0", "SLURM_NODEID": "2", "SLURM_NNODES": "3",
        "SLURMD_NODENAME": "n3", "SLURM_STEP_NODELIST": "n[1-3]",
        "SLURM_STEP_TASKS_PER_NODE": "1(x3)"}


def test_srun_without_mpi():
    world = w.detect(SRUN, hostname="vm")
    assert world == w.World("slurm", 2, 3, 0, 1, 2, "n3", "slurm-42.0", ("n1", "n2", "n3"), False)


def test_srun_with_pmi2_is_slurm_with_mpi():
    world = w.detect(dict(SRUN, PMI_RANK="2", PMI_SIZE="3"), hostname="vm")
    assert (world.launcher, world.rank, world.size, world.mpi, world.job_key) == (
        "slurm", 2, 3, True, "slurm-42.0")


def test_mpiexec_inside_a_batch_script_wins_over_the_batch_step():
    env = {"SLURM_JOB_ID": "42", "SLURM_PROCID": "0", "SLURM_NTASKS": "1",
           "PMI_RANK": "1", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"}
    world = w.detect(env, hostname="vm")
    assert (world.launcher, world.rank, world.size, world.local_rank, world.local_size) == (
        "mpich", 1, 4, 1, 2)
    assert world.mpi and world.job_key.startswith("mpi-")


def test_open_mpi():
    env = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4",
           "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
           "OMPI_COMM_WORLD_NODE_RANK": "1", "PMIX_NAMESPACE": "prterun-vm-123@1", "PMIX_RANK": "3"}
    world = w.detect(env, hostname="vm")
    assert world == w.World("openmpi", 3, 4, 1, 2, 1, "vm", "ompi-prterun-vm-123@1", (), True)


def test_plain_python_is_a_world_of_one():
    world = w.detect({}, hostname="laptop")
    assert (world.launcher, world.rank, world.size, world.is_single) == ("none", 0, 1, True)


def test_singleton_trap_is_named():
    world = w.detect(SRUN, hostname="vm")
    text = w.singleton_trap(world, mpi_size=1)
    assert "--mpi=pmi2" in text and "3 tasks" in text and "world of 1" in text
    assert w.singleton_trap(world, mpi_size=3) is None
    assert w.singleton_trap(w.detect({}, hostname="x"), mpi_size=1) is None
