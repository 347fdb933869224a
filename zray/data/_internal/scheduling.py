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
    warning: Optional[str] = None
    feeders_without_cpu: bool = False    # run the feeding tasks with num_cpus=0


def size_actor_pool(total_cpus, actor_cpus, min_size, max_size, feeder_cpus, name="the pool"):
    """Bound an actor pool so the task operators that feed it keep room to run (Ray's #44687:
    a pool holding every CPU starves its own reads and the run hangs).

    total_cpus: the cluster's CPUs. actor_cpus: CPUs each actor holds. feeder_cpus: the largest
    CPU request of a task operator upstream of the pool (0 when none). max_size None means "as
    many as fit". The pool shrinks to leave `feeder_cpus` free, never below one actor; when even
    one actor leaves no room, the feeding tasks run with num_cpus=0 instead. A user's explicit
    size that had to change gets one warning.
    """
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    if max_size is not None and max_size < min_size:
        raise ValueError(f"max_size ({max_size}) must be >= min_size ({min_size})")
    if actor_cpus <= 0 or feeder_cpus <= 0:
        cap = max(min_size, math.floor(total_cpus / actor_cpus) if actor_cpus > 0 else min_size)
        return PoolSize(min_size, max_size if max_size is not None else max(1, cap))
    want_max = max_size if max_size is not None else max(min_size, math.floor(total_cpus / actor_cpus) or 1)
    room = total_cpus - feeder_cpus
    fit = math.floor(room / actor_cpus + 1e-9) if room > 0 else 0
    if fit < 1:
        warning = (f"{name} needs {actor_cpus:g} CPU per actor and the cluster has {total_cpus:g}: "
                   f"one actor leaves no CPU for the tasks that feed it, so zray runs those tasks "
                   f"without a CPU reservation (the pool is 1 actor)")
        return PoolSize(1, 1, warning, feeders_without_cpu=True)
    if want_max <= fit:
        return PoolSize(min_size, want_max)
    new_max = fit
    new_min = min(min_size, new_max)
    if max_size is None and min_size <= fit:
        return PoolSize(new_min, new_max)      # an autoscaling bound, not a user request
    warning = (f"{name} asks for {want_max} actor(s) x {actor_cpus:g} CPU, which would leave no "
               f"CPU for the {feeder_cpus:g}-CPU tasks that feed it ({total_cpus:g} CPUs in the "
               f"cluster); zray scales it to {new_max} actor(s) so the run can finish")
    return PoolSize(new_min, new_max, warning)
