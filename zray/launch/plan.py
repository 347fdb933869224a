"""The launcher's decisions, I/O-free: how ranks meet, what each node gets, when formation failed.

    rendezvous   with MPI (`mpirun`, `srun --mpi=...`): rank 0 picks a free port and the ranks
                 exchange addresses and the cluster secret over MPI (bcast), no port agreed in
                 advance. Under srun without MPI: the seed is rank 0's host (first of
                 SLURM_STEP_NODELIST); its port is the first free one of SEED_PORT_CANDIDATES
                 ports derived from the job key, and the others try all of them as seeds (a
                 port held by another cluster refuses them: CURVE keys differ). `--address`
                 names a live member instead. A world of one needs no rendezvous.
    resources    one node per rank by default, with the rank's share of its allocation (under
                 mpiexec on one host every rank sees the whole affinity mask: divide by the
                 ranks on this host); `--node-per-host`: local rank 0 starts a node with the
                 host's whole allocation and the others attach to it.
    formation    the seed waits until every expected rank's node is a live member; after the
                 timeout the error names the missing ranks and their hosts.

Each node carries the custom resource `zray_rank:<rank>` (amount 1), so formation can be told
rank by rank from the gossiped views and a user can pin work to a rank
(`resources={"zray_rank:0": 0.01}`).
"""
import hashlib
from dataclasses import dataclass

SEED_PORT_BASE = 20000
SEED_PORT_SPAN = 40000     # seed ports fall in [20000, 60000): above common services, below
                           # Linux's default ephemeral range (32768-60999) overlap is harmless
                           # because a taken port is skipped
SEED_PORT_CANDIDATES = 4   # how many derived ports rank 0 tries, and the others try as seeds
RANK_RESOURCE = "zray_rank:{}"
FORMATION_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Rendezvous:
    mode: str                  # "single", "mpi", "slurm", "local" (a file) or "address"
    seed_host: str = None      # "slurm": the host name of rank 0's node (resolve it)
    seed_ports: tuple = ()     # "slurm": candidates rank 0 binds the first free of
    address: str = None        # "address": HOST:PORT of a live member


def seed_ports(job_key, count=SEED_PORT_CANDIDATES):
    """Ports derived from the job key: every rank computes the same ones, other jobs others."""
    digest = hashlib.sha256(job_key.encode()).digest()
    first = int.from_bytes(digest[:4], "big") % SEED_PORT_SPAN
    return tuple(SEED_PORT_BASE + (first + i * 7919) % SEED_PORT_SPAN for i in range(count))


def plan_rendezvous(world, address=None, mpi_available=False, mpi_mismatch=None):
    if address:
        return Rendezvous("address", address=address)
    if world.size == 1:
        return Rendezvous("single")
    if world.mpi and mpi_available:
        return Rendezvous("mpi")
    if world.launcher == "slurm" and world.hosts:
        return Rendezvous("slurm", seed_host=world.hosts[0], seed_ports=seed_ports(world.job_key))
    if world.mpi and world.local_size == world.size:
        # Every rank on this host, no usable MPI (no mpi4py, or one built for another MPI than
        # the launcher's): meet through a file in the user's private zray directory.
        return Rendezvous("local")
    if world.launcher == "openmpi":
        raise LaunchError(
            f"{world.size} ranks under Open MPI's mpirun across hosts, but mpi4py here cannot "
            f"join Open MPI's job ({mpi_mismatch or 'mpi4py cannot be imported'}): install "
            f"mpi4py built against Open MPI (e.g. `env MPICC=mpicc.openmpi pip install "
            f"--no-binary mpi4py mpi4py`), launch with MPICH's mpiexec, or pass "
            f"--address HOST:PORT of a live member")
    raise LaunchError(
        f"{world.size} ranks under {world.launcher} but no way to meet: "
        + ("MPI variables are set but mpi4py cannot be imported (pip install 'zray[mpi]')"
           if world.mpi else "pass --address HOST:PORT of a live member"))


class LaunchError(RuntimeError):
    """The launch cannot go on (a bad option, a failed rendezvous, an incomplete formation)."""


@dataclass(frozen=True)
class NodeShare:
    starts_node: bool          # False: attach to the node local rank 0 started
    cpus: int
    memory_bytes: int
    gpu_ids: tuple
    resources: dict


def node_share(world, alloc, node_per_host=False):
    """What this rank's node gets (or that it starts none: `--node-per-host`, local rank > 0)."""
    if node_per_host:
        if world.local_rank != 0:
            return NodeShare(False, 0, 0, (), {})
        return NodeShare(True, alloc.cpus, alloc.memory_bytes, alloc.gpu_ids,
                         {RANK_RESOURCE.format(world.rank): 1})
    cpus, memory, gpus = alloc.cpus, alloc.memory_bytes, alloc.gpu_ids
    per_task_grant = alloc.sources.get("cpus", "").startswith("SLURM")
    if world.local_size > 1 and not per_task_grant:
        # Every local rank sees the host's whole mask: split it, and the GPUs, by local rank.
        cpus = max(1, cpus // world.local_size)
        memory = memory // world.local_size
        if gpus:
            gpus = tuple(g for i, g in enumerate(gpus) if i % world.local_size == world.local_rank)
    return NodeShare(True, cpus, memory, gpus, {RANK_RESOURCE.format(world.rank): 1})


def ranks_of(nodes):
    """{rank: node record} from CLUSTER_INFO's live nodes, by their zray_rank resource."""
    found = {}
    prefix = RANK_RESOURCE.format("")
    for node in nodes:
        if not node.get("Alive"):
            continue
        for name in node.get("Resources", {}):
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                found[int(name[len(prefix):])] = node
    return found


def formation_message(expected, joined, elapsed, hosts_by_rank=None):
    """ "2/3 nodes joined after 60 s; missing rank 2 (n3)" """
    missing = sorted(set(expected) - set(joined))
    names = []
    for rank in missing:
        host = (hosts_by_rank or {}).get(rank)
        names.append(f"rank {rank} ({host})" if host else f"rank {rank}")
    return (f"{len(set(expected) & set(joined))}/{len(expected)} nodes joined after "
            f"{elapsed:.0f} s; missing {', '.join(names)}")


def hosts_by_rank(world):
    """Rank -> host under srun's default block distribution (rank i on host i for one task per
    host); empty when the launcher does not say."""
    if not world.hosts or world.size != len(world.hosts):
        return {}
    return dict(enumerate(world.hosts))


def phase_summary(marks, cpu_self=None, cpu_node=None):
    """Rank 0's account of a launch's start, in one line: `marks` are (phase, monotonic time)
    in order, the first the process's start; each phase with the seconds it took, then the
    total and the CPU seconds this process and its node daemon used so far."""
    parts = []
    for (_, before), (name, at) in zip(marks, marks[1:]):
        parts.append(f"{name} {max(0.0, at - before):.2f}")
    total = marks[-1][1] - marks[0][1] if len(marks) > 1 else 0.0
    text = f"start-up: {', '.join(parts)} = {total:.2f} s since the process began"
    cpu = [f"{what} {seconds:.2f}" for what, seconds in (("this process", cpu_self),
                                                          ("its node", cpu_node))
           if seconds is not None]
    return text + (f"; CPU-s: {', '.join(cpu)}" if cpu else "")
