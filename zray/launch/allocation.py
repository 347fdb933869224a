"""What this process was given: CPUs, memory and GPUs from its allocation, never the machine's.

An HPC job, a container or a Slurm step sees every CPU of the host in `os.cpu_count()` but may
use only some. zray sizes a node by the tightest of:

    CPUs    the affinity mask (cpusets of cgroup v1 and v2 show up here);
            the cgroup CPU quota (v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us) of the
            process's cgroup and every ancestor, rounded up (a 1.5-CPU quota runs 2 tasks at
            75 % each rather than leaving half a CPU idle);
            Slurm: SLURM_CPUS_PER_TASK in a step, else SLURM_CPUS_ON_NODE shared among the
            step's tasks on this node (SLURM_TASKS_PER_NODE).
    memory  physical memory; the cgroup limit (v2 memory.max, v1 memory.limit_in_bytes) of
            the process's cgroup and its ancestors; SLURM_MEM_PER_NODE (MiB), or
            SLURM_MEM_PER_CPU x CPUs.
    GPUs    SLURM_STEP_GPUS, else SLURM_JOB_GPUS, else CUDA_VISIBLE_DEVICES (ids as given:
            zray never masks them per worker, see docs/hpc.md).

Parsing is pure (strings in, numbers out) and unit-tested; `detect()` reads the files and the
environment once. Each figure carries the source that set it, so a launcher can log why a node
got 3 CPUs rather than 64.
"""
import math
import os
import re
from dataclasses import dataclass, field

CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True)
class Allocation:
    cpus: int
    memory_bytes: int
    gpu_ids: tuple = ()
    sources: dict = field(default_factory=dict)   # "cpus"/"memory"/"gpus" -> what set it

    def describe(self):
        gib = self.memory_bytes / (1 << 30)
        gpus = ",".join(self.gpu_ids) or "none"
        return (f"{self.cpus} CPUs ({self.sources.get('cpus', '?')}), {gib:.1f} GiB memory "
                f"({self.sources.get('memory', '?')}), GPUs {gpus} "
                f"({self.sources.get('gpus', 'none')})")


# -- pure parsers ------------------------------------------------------------------------------
def parse_cpu_list(text):
    """'0-3,8,10-11' -> the set of CPU numbers (cpuset and Slurm syntax)."""
    cpus = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            cpus.update(range(int(low), int(high) + 1))
        else:
            cpus.add(int(part))
    return cpus


def parse_cpu_max(text):
    """cgroup v2 cpu.max ('150000 100000' or 'max 100000') -> CPUs as a float, or None."""
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    period = int(fields[1]) if len(fields) > 1 else 100_000
    return int(fields[0]) / period if period > 0 else None


def parse_cfs(quota_text, period_text):
    """cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us -> CPUs as a float, or None (-1: none)."""
    quota, period = int(quota_text.strip()), int(period_text.strip())
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def parse_memory_limit(text):
    """cgroup memory.max / memory.limit_in_bytes -> bytes, or None when unlimited."""
    text = text.strip()
    if not text or text == "max":
        return None
    value = int(text)
    # cgroup v1 says "no limit" with a huge number (PAGE_COUNTER_MAX pages).
    return None if value >= 1 << 60 else value


def parse_tasks_per_node(text, node_index):
    """SLURM_TASKS_PER_NODE ('2(x3),1') -> the task count of node `node_index` (0-based)."""
    nodes = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if match is None:
            raise ValueError(f"cannot read SLURM_TASKS_PER_NODE={text!r}")
        nodes.extend([int(match.group(1))] * int(match.group(2) or 1))
    if not nodes:
        raise ValueError(f"cannot read SLURM_TASKS_PER_NODE={text!r}")
    return nodes[min(node_index, len(nodes) - 1)]


def parse_proc_cgroup(text):
    """/proc/self/cgroup -> {"v2": path} and/or {controller: path} for v1 hierarchies."""
    paths = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            paths["v2"] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths


def slurm_cpus(env):
    """(CPUs, source) this Slurm task may use, or (None, None) outside Slurm."""
    if env.get("SLURM_CPUS_PER_TASK") and env.get("SLURM_STEP_ID") is not None:
        return int(env["SLURM_CPUS_PER_TASK"]), "SLURM_CPUS_PER_TASK"
    on_node = env.get("SLURM_CPUS_ON_NODE")
    if not on_node:
        return None, None
    cpus = int(on_node)
    per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
    if env.get("SLURM_STEP_ID") is not None and per_node:
        tasks = parse_tasks_per_node(per_node, int(env.get("SLURM_NODEID", "0")))
        if tasks > 1:
            return max(1, cpus // tasks), f"SLURM_CPUS_ON_NODE={cpus} / {tasks} tasks"
    return cpus, "SLURM_CPUS_ON_NODE"


def slurm_memory(env, cpus):
    """(bytes, source) of Slurm's memory grant, or (None, None)."""
    if env.get("SLURM_MEM_PER_NODE"):
        return int(env["SLURM_MEM_PER_NODE"]) << 20, "SLURM_MEM_PER_NODE"
    if env.get("SLURM_MEM_PER_CPU"):
        return (int(env["SLURM_MEM_PER_CPU"]) << 20) * cpus, "SLURM_MEM_PER_CPU"
    return None, None


def gpu_ids(env):
    """(ids, source): the GPUs granted to this process, as the launcher names them."""
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"):
        value = env.get(name)
        if value is None:
            continue
        ids = tuple(v.strip() for v in value.split(",") if v.strip() and v.strip() != "NoDevFiles")
        return ids, name
    return (), None


# -- reading the machine -------------------------------------------------------------------------
def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _ancestors(base, path):
    """The cgroup directory of `path` under `base`, then each parent up to `base`."""
    path = path.strip("/")
    parts = path.split("/") if path else []
    for i in range(len(parts), -1, -1):
        yield os.path.join(base, *parts[:i])


def cgroup_cpu_quota(cgroup_text, root=CGROUP_ROOT):
    """The tightest CPU quota over the process's cgroup and its ancestors, or None."""
    paths = parse_proc_cgroup(cgroup_text or "")
    quotas = []
    if "v2" in paths:
        for directory in _ancestors(root, paths["v2"]):
            text = _read(os.path.join(directory, "cpu.max"))
            if text:
                quota = parse_cpu_max(text)
                if quota is not None:
                    quotas.append(quota)
    for controller in ("cpu", "cpuacct"):
        if controller not in paths:
            continue
        for mount in (f"{root}/cpu,cpuacct", f"{root}/cpu"):
            for directory in _ancestors(mount, paths[controller]):
                quota, period = (_read(os.path.join(directory, f"cpu.cfs_{n}_us"))
                                 for n in ("quota", "period"))
                if quota and period:
                    value = parse_cfs(quota, period)
                    if value is not None:
                        quotas.append(value)
        break
    return min(quotas) if quotas else None


def cgroup_memory_limit(cgroup_text, root=CGROUP_ROOT):
    paths = parse_proc_cgroup(cgroup_text or "")
    limits = []
    if "v2" in paths:
        for directory in _ancestors(root, paths["v2"]):
            limit = parse_memory_limit(_read(os.path.join(directory, "memory.max")) or "")
            if limit is not None:
                limits.append(limit)
    if "memory" in paths:
        for directory in _ancestors(f"{root}/memory", paths["memory"]):
            limit = parse_memory_limit(_read(os.path.join(directory, "memory.limit_in_bytes")) or "")
            if limit is not None:
                limits.append(limit)
    return min(limits) if limits else None


def detect(env=None, root=CGROUP_ROOT, affinity=None, physical_memory=None, cgroup_text=None):
    """This process's Allocation. Arguments replace what is read from the machine (tests)."""
    env = os.environ if env is None else env
    if affinity is None:
        affinity = len(os.sched_getaffinity(0))
    if cgroup_text is None:
        cgroup_text = _read("/proc/self/cgroup") or ""
    if physical_memory is None:
        physical_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpus, cpu_source = affinity, "affinity mask"
    quota = cgroup_cpu_quota(cgroup_text, root)
    if quota is not None and math.ceil(quota) < cpus:
        cpus, cpu_source = max(1, math.ceil(quota)), f"cgroup CPU quota {quota:g}"
    granted, source = slurm_cpus(env)
    if granted is not None and granted < cpus:
        cpus, cpu_source = granted, source
    memory, memory_source = physical_memory, "physical memory"
    limit = cgroup_memory_limit(cgroup_text, root)
    if limit is not None and limit < memory:
        memory, memory_source = limit, "cgroup memory limit"
    granted, source = slurm_memory(env, cpus)
    if granted is not None and granted < memory:
        memory, memory_source = granted, source
    gpus, gpu_source = gpu_ids(env)
    return Allocation(cpus, memory, gpus, {"cpus": cpu_source, "memory": memory_source,
                                           "gpus": gpu_source or "none"})
