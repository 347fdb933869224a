"""When a node does the start-up work that no first task waits for: its zygote's second round
of imports (the whole API, numpy: zygote.py) and the prefault of its object store
(store/region.py). Together ~0.3 CPU-s per node, plus the kernel's zeroing of the store.

    --warmup now    both at once, while the node starts (a node of its own host: the default)
    --warmup idle   the zygote imports what a worker needs at once, the rest later
    --warmup lazy   the zygote imports nothing until its first fork, the rest later

"Later" is once the node serves, has no worker starting and no task waiting, and the host has
a CPU to spare (/proc/stat, over the CPUs this process may run on); at the latest MAX_DELAY_S
after the node serves. (A zygote importing numpy would make a worker asked of it meanwhile
wait: the first task of a driver that just connected must not.) `python -m
zray.launch` starts its ranks' nodes so: several ranks often share a host's CPUs, and while
they start, the work of each slows every other's start and the driver's first task. A lower
CPU priority would not do: a zygote's workers inherit it and cannot raise it back.

`WarmupPolicy` decides (no I/O); `idle_cpus` reads the samples.
"""
import os
from dataclasses import dataclass

NOW, IDLE, LAZY = "now", "idle", "lazy"
MODES = (NOW, IDLE, LAZY)
MAX_DELAY_S = 3.0          # a host busy with other work: warm anyway this long after serving
SAMPLE_S = 0.2             # how often the host's idle CPU is measured while waiting
MIN_IDLE_CPUS = 0.8        # "a CPU to spare": this much idle over the last sample


def zygote_mode(mode):
    """The zygote's start mode (zygote.py) for a node's warm-up mode."""
    from .zygote import CORE, EAGER
    from .zygote import LAZY as ZYGOTE_LAZY
    return {NOW: EAGER, IDLE: CORE, LAZY: ZYGOTE_LAZY}[mode]


@dataclass
class WarmupPolicy:
    """Whether a node warms up now. `ready(now)` when the node serves; then `due(now,
    idle_cpus, busy)` at each sample, True once (the caller warms up then)."""
    mode: str = NOW
    max_delay_s: float = MAX_DELAY_S
    min_idle_cpus: float = MIN_IDLE_CPUS
    ready_at: float = None
    done: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"the warm-up mode must be one of {', '.join(MODES)}, not "
                             f"{self.mode!r}")
        if self.mode == NOW:
            self.done = True        # done with the start itself

    @property
    def waiting(self):
        return not self.done and self.ready_at is not None

    def ready(self, now):
        if self.ready_at is None:
            self.ready_at = now

    def due(self, now, idle_cpus, busy=False):
        """`busy`: the node is starting a worker or has a task waiting."""
        if not self.waiting:
            return False
        spare = idle_cpus is not None and idle_cpus >= self.min_idle_cpus
        if (spare and not busy) or now - self.ready_at >= self.max_delay_s:
            self.done = True
            return True
        return False


def parse_cpu_times(text, cpus):
    """{cpu index: (idle jiffies, total jiffies)} of /proc/stat's per-CPU lines, for `cpus`."""
    times = {}
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        try:
            index = int(name[3:])
            values = [int(v) for v in fields[:8]]
        except ValueError:
            continue
        if index in cpus and len(values) >= 5:
            times[index] = (values[3] + values[4], sum(values))    # idle + iowait, all
    return times


def idle_between(before, after):
    """CPUs' worth of idle time between two parse_cpu_times samples (e.g. 1.5: one CPU and a
    half were idle); None when nothing can be said (no common CPU, no time passed)."""
    idle = 0.0
    seen = False
    for cpu, (idle_after, total_after) in after.items():
        if cpu not in before:
            continue
        idle_before, total_before = before[cpu]
        total = total_after - total_before
        if total <= 0:
            continue
        seen = True
        idle += max(0, idle_after - idle_before) / total
    return idle if seen else None


class HostIdle:
    """Samples of this host's idle CPU (over the CPUs this process may run on)."""

    def __init__(self, path="/proc/stat"):
        self.path = path
        try:
            self.cpus = os.sched_getaffinity(0)
        except OSError:
            self.cpus = set(range(os.cpu_count() or 1))
        self.last = None
        self.last_at = None

    def sample(self, now):
        """Idle CPUs since the previous sample (None for the first one, or when unreadable)."""
        try:
            with open(self.path) as f:
                times = parse_cpu_times(f.read(), self.cpus)
        except OSError:
            return None
        before, self.last, self.last_at = self.last, times, now
        return None if before is None else idle_between(before, times)
