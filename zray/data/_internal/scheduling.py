"""The streaming executor's decisions, as I/O-free state machines.

The executor (executor.py) submits tasks and waits on them; every choice it makes is asked of
these objects, which it informs of each event:

    MemoryBudget       bytes of blocks produced and not yet consumed, plus the estimated output
                       of running tasks, bounded by DataContext's object_store_memory limit.
    MapStageState      one operator: which input to submit next, whether a slot and the budget
                       allow it, and which finished output may be emitted (in input order when
                       preserve_order, else as they finish).
    ActorPoolState     which actor gets the next call (fewest in flight), when the pool grows.
    size_actor_pool    how big a pool may be given the cluster's CPUs and the CPU needs of the
                       operators that feed it (the fix for Ray's #44687 hang).

Liveness rule: a stage with nothing running and nothing buffered may always submit one task,
whatever the budget, so a block larger than the budget still flows.
"""
import math
from dataclasses import dataclass
from typing import Optional


class MemoryBudget:
    """Bytes in use by a streaming execution: produced blocks not yet consumed + estimates."""

    def __init__(self, limit_bytes):
        if limit_bytes <= 0:
            raise ValueError(f"the memory budget must be > 0 bytes, got {limit_bytes}")
        self.limit = int(limit_bytes)
        self.used = 0
        self.peak = 0

    def has_room(self, estimate):
        return self.used + estimate <= self.limit

    def reserve(self, nbytes):
        self.used += int(nbytes)
        self.peak = max(self.peak, self.used)

    def release(self, nbytes):
        self.used = max(0, self.used - int(nbytes))


class MapStageState:
    """Submission and emission decisions of one map operator over an ordered input stream."""

    def __init__(self, max_in_flight, budget, preserve_order=True, default_estimate=1 << 20):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self.budget = budget
        self.preserve_order = preserve_order
        self.running = {}          # seq -> reserved estimate
        self.finished = {}         # seq -> output bytes (produced, not yet emitted)
        self.order = []            # finish order, for preserve_order=False
        self.next_seq = 0          # the next input's sequence number
        self.next_emit = 0         # with preserve_order: the next seq to emit
        self.skipped = set()       # seqs whose task failed and was skipped
        self.input_done = False
        self._out_bytes = 0
        self._out_count = 0
        self.default_estimate = default_estimate

    # -- estimates
    def estimate(self, input_bytes=None):
        """Expected output bytes of the next task: the mean so far, else its input's size."""
        if self._out_count:
            return self._out_bytes // self._out_count
        return input_bytes if input_bytes else self.default_estimate

    # -- submission
    def can_submit(self, input_bytes=None):
        if self.input_done:
            return False
        if len(self.running) >= self.max_in_flight:
            return False
        if not self.running and not self.finished:
            return True            # liveness: always one task
        return self.budget.has_room(self.estimate(input_bytes))

    def on_submitted(self, input_bytes=None):
        seq = self.next_seq
        self.next_seq += 1
        est = self.estimate(input_bytes)
        self.running[seq] = est
        self.budget.reserve(est)
        return seq

    def on_input_exhausted(self):
        self.input_done = True

    # -- completion
    def on_finished(self, seq, out_bytes):
        est = self.running.pop(seq)
        self.budget.release(est)
        self.budget.reserve(out_bytes)
        self._out_bytes += out_bytes
        self._out_count += 1
        self.finished[seq] = out_bytes
        self.order.append(seq)

    def on_skipped(self, seq):
        """The task failed and the run tolerates it: nothing will be emitted for seq."""
        est = self.running.pop(seq)
        self.budget.release(est)
        self.skipped.add(seq)

    # -- emission
    def next_emittable(self):
        """The seq to emit now, or None (also advances past skipped seqs)."""
        if self.preserve_order:
            while self.next_emit in self.skipped:
                self.skipped.discard(self.next_emit)
                self.next_emit += 1
            return self.next_emit if self.next_emit in self.finished else None
        while self.order:
            seq = self.order[0]
            if seq in self.finished:
                return seq
            self.order.pop(0)
        return None

    def on_emitted(self, seq):
        """The output left this stage; its bytes stay reserved until the consumer releases them."""
        self.finished.pop(seq)
        if self.preserve_order:
            self.next_emit = seq + 1
        else:
            self.order.remove(seq)

    def head_seq(self):
        """The seq whose completion the consumer waits for (None: any running one)."""
        if self.preserve_order:
            return self.next_emit if self.next_emit in self.running else None
        return None

    @property
    def done(self):
        return self.input_done and not self.running and not self.finished


class ActorPoolState:
    """Which actor gets the next call; when to add one."""

    def __init__(self, min_size, max_size, max_in_flight_per_actor):
        if not 1 <= min_size <= max_size:
            raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
        if max_in_flight_per_actor < 1:
            raise ValueError("max_in_flight_per_actor must be >= 1")
        self.min_size = min_size
        self.max_size = max_size
        self.per_actor = max_in_flight_per_actor
        self.in_flight = []        # per actor index

    def on_actor_added(self):
        self.in_flight.append(0)
        return len(self.in_flight) - 1

    def pick(self):
        """The actor with the fewest calls in flight and room for one more, or None."""
        best = None
        for i, n in enumerate(self.in_flight):
            if n < self.per_actor and (best is None or n < self.in_flight[best]):
                best = i
        return best

    def should_grow(self, queued_inputs):
        """Add an actor when every actor is busy, input waits, and the pool may grow."""
        if len(self.in_flight) < self.min_size:
            return True
        return (queued_inputs > 0 and len(self.in_flight) < self.max_size
                and all(n >= 1 for n in self.in_flight))

    def on_call(self, actor):
        self.in_flight[actor] += 1

    def on_call_done(self, actor):
        self.in_flight[actor] -= 1

    @property
    def capacity(self):
        return len(self.in_flight) * self.per_actor


@dataclass(frozen=True)
class PoolSize:
    min_size: int
    max_size: int
    actor_cpus: float
    warning: Optional[str] = None


@dataclass(frozen=True)
class PoolRequest:
    name: str
    actor_cpus: float
    min_size: int
    max_size: Optional[int]        # None: as many as fit


@dataclass(frozen=True)
class PoolPlan:
    sizes: tuple                   # a PoolSize per request, in order
    tasks_without_cpu: bool        # tasks run with num_cpus=0 (a pool took their room)


def allocate_pools(total_cpus, task_cpus, requests):
    """Size the actor pools of one execution so that they and its tasks all get to run (Ray's
    #44687: a pool holding every CPU starves the reads that feed it, and the run hangs).

    total_cpus: the cluster's CPUs. task_cpus: the largest CPU request of the execution's tasks
    (reads, maps, shuffles; 0 when it runs none), kept free for them. requests: the pools, the
    most upstream first; each gets what is left after the tasks and the pools before it:
      - as many actors as fit, between its min_size and max_size (never below one actor);
      - if not even one fits but would fit in the tasks' room, one actor takes it and the tasks
        run without a CPU reservation (tasks_without_cpu);
      - else its one actor runs without a CPU reservation.
    Every change to a user's explicit size comes with one warning for that pool.
    """
    free = total_cpus - task_cpus
    tasks_without_cpu = False
    sizes = []
    for req in requests:
        if req.min_size < 1:
            raise ValueError(f"min_size must be >= 1, got {req.min_size}")
        if req.max_size is not None and req.max_size < req.min_size:
            raise ValueError(f"max_size ({req.max_size}) must be >= min_size ({req.min_size})")
        if req.actor_cpus <= 0:
            cap = req.max_size if req.max_size is not None else max(req.min_size, int(total_cpus) or 1)
            sizes.append(PoolSize(req.min_size, cap, 0))
            continue
        want = req.max_size if req.max_size is not None else \
            max(req.min_size, math.floor(total_cpus / req.actor_cpus) or 1)
        fit = math.floor(free / req.actor_cpus + 1e-9) if free > 0 else 0
        if fit >= 1:
            size = min(want, fit)
            free -= size * req.actor_cpus
            warning = None
            if size < req.min_size or (req.max_size is not None and size < req.max_size):
                warning = (f"{req.name} asks for {want} actor(s) x {req.actor_cpus:g} CPU, which "
                           f"would leave no CPU for the tasks that feed or follow it "
                           f"({total_cpus:g} CPUs in the cluster); zray scales it to {size} "
                           f"actor(s) so the run can finish")
            sizes.append(PoolSize(min(req.min_size, size), size, req.actor_cpus, warning))
        elif not tasks_without_cpu and free + task_cpus >= req.actor_cpus - 1e-9 and task_cpus > 0:
            tasks_without_cpu = True
            free += task_cpus - req.actor_cpus
            sizes.append(PoolSize(1, 1, req.actor_cpus, (
                f"{req.name} needs {req.actor_cpus:g} CPU per actor of the cluster's "
                f"{total_cpus:g}: one actor leaves no CPU for the tasks that feed or follow it, "
                f"so zray runs those tasks without a CPU reservation (the pool is 1 actor)")))
        else:
            sizes.append(PoolSize(1, 1, 0, (
                f"{req.name} needs {req.actor_cpus:g} CPU per actor and the actor pools before "
                f"it hold the rest of the cluster's {total_cpus:g}: zray runs its 1 actor "
                f"without a CPU reservation")))
    return PoolPlan(tuple(sizes), tasks_without_cpu)
