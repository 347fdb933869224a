"""The launcher's decisions (zray/launch/plan.py), without processes."""
import pytest

from zray.launch import plan
from zray.launch.allocation import Allocation
from zray.launch.world import World

GIB = 1 << 30


def _world(rank=0, size=3, launcher="slurm", mpi=False, local_rank=0, local_size=1,
           hosts=("n1", "n2", "n3"), job="slurm-7.0"):
    return World(launcher, rank, size, local_rank, local_size, rank, f"n{rank + 1}", job, hosts,
                 mpi)


def test_seed_ports_are_shared_by_the_job_and_differ_between_jobs():
    a, b = plan.seed_ports("slurm-7.0"), plan.seed_ports("slurm-7.0")
    assert a == b and len(set(a)) == plan.SEED_PORT_CANDIDATES
    assert all(plan.SEED_PORT_BASE <= p < plan.SEED_PORT_BASE + plan.SEED_PORT_SPAN for p in a)
    assert plan.seed_ports("slurm-8.0") != a


@pytest.mark.parametrize("world, address, mpi_ok, mode", [
    (_world(size=1), None, False, "single"),
    (_world(), "10.0.0.1:6380", False, "address"),
    (_world(mpi=True), None, True, "mpi"),
    (_world(mpi=True), None, False, "slurm"),        # srun --mpi=pmi2 without mpi4py
    (_world(), None, False, "slurm"),
    # one host, no usable mpi4py (none, or built for another MPI): a file in the user's dir
    (_world(launcher="openmpi", mpi=True, hosts=(), local_size=3), None, False, "local"),
    (_world(launcher="mpich", mpi=True, hosts=(), local_size=3), None, False, "local"),
    (_world(launcher="openmpi", mpi=True, hosts=(), local_size=3), None, True, "mpi"),
])
def test_rendezvous_mode(world, address, mpi_ok, mode):
    assert plan.plan_rendezvous(world, address, mpi_ok).mode == mode


def test_slurm_rendezvous_seeds_at_rank_zeros_host():
    r = plan.plan_rendezvous(_world(rank=2), None, False)
    assert (r.seed_host, r.seed_ports) == ("n1", plan.seed_ports("slurm-7.0"))


def test_no_way_to_meet_is_a_clear_error():
    with pytest.raises(plan.LaunchError, match="--address"):
        plan.plan_rendezvous(_world(launcher="mpich", hosts=()), None, False)
    with pytest.raises(plan.LaunchError, match="mpi4py"):
        plan.plan_rendezvous(_world(launcher="mpich", hosts=(), mpi=True), None, False)


def test_node_share_splits_the_host_between_local_ranks_of_mpiexec():
    alloc = Allocation(8, 16 * GIB, ("0", "1", "2", "3"), {"cpus": "affinity mask"})
    share = plan.node_share(_world(rank=1, launcher="mpich", local_rank=1, local_size=2), alloc)
    assert (share.cpus, share.memory_bytes, share.gpu_ids) == (4, 8 * GIB, ("1", "3"))
    assert share.resources == {"zray_rank:1": 1}


def test_node_share_keeps_a_slurm_per_task_grant():
    alloc = Allocation(2, 4 * GIB, (), {"cpus": "SLURM_CPUS_PER_TASK"})
    share = plan.node_share(_world(local_size=4), alloc)
    assert share.cpus == 2


def test_node_per_host_only_local_rank_zero_starts_a_node():
    alloc = Allocation(8, 16 * GIB, (), {"cpus": "affinity mask"})
    assert not plan.node_share(_world(local_rank=1, local_size=2), alloc, True).starts_node
    lead = plan.node_share(_world(local_rank=0, local_size=2), alloc, True)
    assert (lead.starts_node, lead.cpus) == (True, 8)


def test_ranks_of_live_nodes():
    nodes = [{"Alive": True, "Resources": {"CPU": 1, "zray_rank:0": 1}},
             {"Alive": False, "Resources": {"zray_rank:1": 1}},
             {"Alive": True, "Resources": {"zray_rank:2": 1, "zray_rank:x": 1}}]
    assert sorted(plan.ranks_of(nodes)) == [0, 2]


def test_formation_message_names_missing_ranks_and_hosts():
    world = _world()
    text = plan.formation_message({0, 1, 2}, {0: {}, 1: {}}, 60.2, plan.hosts_by_rank(world))
    assert text == "2/3 nodes joined after 60 s; missing rank 2 (n3)"


def test_open_mpi_across_hosts_without_a_fitting_mpi4py_says_what_to_do():
    with pytest.raises(plan.LaunchError, match="Open MPI.*built for MPICH.*--address") as err:
        plan.plan_rendezvous(_world(launcher="openmpi", mpi=True, hosts=(), local_size=1), None,
                             False, "mpi4py here is built for MPICH Version: 4.3.2")
    assert "mpicc.openmpi" in str(err.value)


def test_the_phase_summary_names_each_phase_with_its_seconds():
    marks = [("", 10.0), ("interpreter and imports", 10.25), ("rendezvous", 10.3),
             ("node serving", 10.9), ("all 3 nodes joined", 11.0)]
    assert plan.phase_summary(marks, 0.41, 0.05) == (
        "start-up: interpreter and imports 0.25, rendezvous 0.05, node serving 0.60, "
        "all 3 nodes joined 0.10 = 1.00 s since the process began; CPU-s: this process 0.41, "
        "its node 0.05")
    assert plan.phase_summary(marks[:1]) == "start-up:  = 0.00 s since the process began"
    # a clock read out of order never shows a negative phase
    assert "rendezvous 0.00" in plan.phase_summary([("", 1.0), ("rendezvous", 0.9)], None, 0.1)
