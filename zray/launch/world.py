"""Who this process is in a launched job: rank, size, node, job, read off the launcher's variables.

Launchers and what they set (shared/HPC-NOTES.md):

    srun                 SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID, SLURM_NNODES,
                         SLURMD_NODENAME, SLURM_JOB_ID, SLURM_STEP_ID, SLURM_STEP_NODELIST,
                         SLURM_STEP_TASKS_PER_NODE
    MPICH (hydra)        PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS
    Open MPI / PMIx      OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE, _NODE_RANK;
                         PMIX_RANK, PMIX_NAMESPACE

An MPI launcher's variables win over Slurm's: `mpirun` inside an `sbatch` script runs in the
batch step, whose SLURM_PROCID is 0 for every rank. Plain `python` is a world of one.

Node identity: emulated Slurm nodes (and containers) share one hostname and IP, so a node is
named by SLURMD_NODENAME under Slurm, and by hostname plus local rank otherwise. The job key
names one launched cluster on every rank alike; it keys the session, discovery and ports, so
two jobs of one user on one host never meet.
"""
import os
import re
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    launcher: str              # "slurm", "mpich", "openmpi", "pmix" or "none"
    rank: int
    size: int
    local_rank: int
    local_size: int
    node_rank: int             # index of this rank's host among the job's hosts (0 if unknown)
    node_name: str             # this rank's host as the launcher names it
    job_key: str               # the same on every rank of this launch, unique per launch
    hosts: tuple = ()          # every host of the step in order, when the launcher says
    mpi: bool = False          # an MPI launcher started us: PMI/PMIx is there for mpi4py

    @property
    def is_single(self):
        return self.size == 1


def expand_hostlist(text):
    """Slurm's compressed host list ('n[1-3,7],gpu-a[01-02],login') -> ['n1', 'n2', ...]."""
    hosts = []
    for item in _split_top_level(text):
        match = re.fullmatch(r"([^\[\]]*)\[([^\]]+)\](.*)", item)
        if match is None:
            hosts.append(item)
            continue
        prefix, ranges, suffix = match.groups()
        for part in ranges.split(","):
            if "-" in part:
                low, high = part.split("-", 1)
                width = len(low)
                hosts.extend(f"{prefix}{i:0{width}d}{suffix}" for i in range(int(low), int(high) + 1))
            else:
                hosts.append(f"{prefix}{part}{suffix}")
    return hosts


def _split_top_level(text):
    items, depth, current = [], 0, ""
    for ch in text.strip():
        if ch == "," and depth == 0:
            if current:
                items.append(current)
            current = ""
            continue
        depth += ch == "["
        depth -= ch == "]"
        current += ch
    if current:
        items.append(current)
    return items


def _int(env, *names, default=None):
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            return int(value)
    return default


def detect(env=None, hostname=None):
    """The World of this process, from its environment (and hostname)."""
    env = os.environ if env is None else env
    hostname = hostname or socket.gethostname()
    slurm_step = env.get("SLURM_STEP_ID") is not None and env.get("SLURM_PROCID") is not None
    slurm_job = env.get("SLURM_JOB_ID")
    if env.get("OMPI_COMM_WORLD_SIZE") is not None or env.get("PMIX_RANK") is not None:
        launcher = "openmpi" if env.get("OMPI_COMM_WORLD_SIZE") is not None else "pmix"
        rank = _int(env, "OMPI_COMM_WORLD_RANK", "PMIX_RANK", default=0)
        size = _int(env, "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_NTASKS", default=1)
        local_rank = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", default=0)
        local_size = _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", default=1)
        node_rank = _int(env, "OMPI_COMM_WORLD_NODE_RANK", "SLURM_NODEID", default=0)
        job = env.get("PMIX_NAMESPACE") or env.get("OMPI_MCA_ess_base_jobid") or ""
        return _finish(launcher, rank, size, local_rank, local_size, node_rank, env, hostname,
                       f"ompi-{job}" if job else None, mpi=True)
    if env.get("PMI_RANK") is not None and env.get("PMI_SIZE") is not None:
        rank, size = int(env["PMI_RANK"]), int(env["PMI_SIZE"])
        local_rank = _int(env, "MPI_LOCALRANKID", "SLURM_LOCALID", default=0)
        local_size = _int(env, "MPI_LOCALNRANKS", default=1)
        node_rank = _int(env, "SLURM_NODEID", default=0)
        # srun --mpi=pmi2 sets PMI_* and a step; hydra (mpiexec) sets PMI_* only.
        launcher = "slurm" if slurm_step else "mpich"
        return _finish(launcher, rank, size, local_rank, local_size, node_rank, env, hostname,
                       None, mpi=True)
    if slurm_step:
        rank, size = int(env["SLURM_PROCID"]), _int(env, "SLURM_NTASKS", "SLURM_NPROCS", default=1)
        local_rank = _int(env, "SLURM_LOCALID", default=0)
        node_rank = _int(env, "SLURM_NODEID", default=0)
        per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
        local_size = 1
        if per_node:
            from .allocation import parse_tasks_per_node
            local_size = parse_tasks_per_node(per_node, node_rank)
        return _finish("slurm", rank, size, local_rank, local_size, node_rank, env, hostname,
                       None, mpi=False)
    return World("none", 0, 1, 0, 1, 0, hostname, f"pid-{os.getpid()}", (hostname,), False)


def _finish(launcher, rank, size, local_rank, local_size, node_rank, env, hostname, job_key,
            mpi):
    node_name = env.get("SLURMD_NODENAME") or hostname
    hosts = tuple(expand_hostlist(env["SLURM_STEP_NODELIST"])) if env.get(
        "SLURM_STEP_NODELIST") and env.get("SLURM_STEP_ID") is not None else ()
    if job_key is None and env.get("SLURM_JOB_ID") and env.get("SLURM_STEP_ID") is not None:
        job_key = f"slurm-{env['SLURM_JOB_ID']}.{env['SLURM_STEP_ID']}"
    if job_key is None:
        # MPICH's hydra names no job: the ranks agree on one over MPI at rendezvous; until
        # then the launcher's parent pid is the best local guess (the same for local ranks).
        job_key = f"mpi-{os.getppid()}"
    return World(launcher, rank, size, local_rank, local_size, node_rank, node_name, job_key,
                 hosts, mpi)


def singleton_trap(world, mpi_size):
    """The message for srun without --mpi: every rank became an MPI world of one. None if fine."""
    if world.launcher == "slurm" and world.size > 1 and mpi_size == 1:
        return (f"srun started {world.size} tasks without an MPI plugin, so MPI in them sees a "
                f"world of 1 in each (every rank an MPI singleton). Run "
                f"`srun --mpi=pmi2 ...` for MPICH or `srun --mpi=pmix ...` for Open MPI "
                f"(`srun --mpi=list` shows what this cluster has)")
    return None
