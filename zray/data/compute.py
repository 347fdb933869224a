"""Compute strategies for map operators: TaskPoolStrategy and ActorPoolStrategy, and the
`concurrency=` argument, decoded into the plan's Compute record."""
from ._internal.plan import Compute


class TaskPoolStrategy:
    """Run a map as tasks; `size` caps how many run at once."""

    def __init__(self, size=None):
        if size is not None and size < 1:
            raise ValueError(f"TaskPoolStrategy size must be >= 1, got {size}")
        self.size = size

    def __repr__(self):
        return f"TaskPoolStrategy(size={self.size})"


class ActorPoolStrategy:
    """Run a map on a pool of actors: a fixed `size`, or between min_size and max_size."""

    def __init__(self, *, size=None, min_size=None, max_size=None, initial_size=None,
                 max_tasks_in_flight_per_actor=None, max_concurrent_calls_per_actor=None,
                 enable_true_multi_threading=None):
        if size is not None:
            if size < 1:
                raise ValueError(f"ActorPoolStrategy size must be >= 1, got {size}")
            if min_size is not None or max_size is not None:
                raise ValueError("ActorPoolStrategy takes size or min_size/max_size, not both")
            min_size = max_size = size
        self.min_size = min_size or 1
        self.max_size = max_size
        if self.min_size < 1:
            raise ValueError(f"min_size must be >= 1, got {self.min_size}")
        if max_size is not None and max_size < self.min_size:
            raise ValueError(f"max_size ({max_size}) must be >= min_size ({self.min_size})")
        self.initial_size = initial_size
        if max_tasks_in_flight_per_actor is not None and max_tasks_in_flight_per_actor < 1:
            raise ValueError("max_tasks_in_flight_per_actor must be >= 1")
        self.max_tasks_in_flight_per_actor = max_tasks_in_flight_per_actor

    def __repr__(self):
        return f"ActorPoolStrategy(min_size={self.min_size}, max_size={self.max_size})"


def decode(fn, compute, concurrency):
    """The plan's Compute for a UDF, from `compute=` and `concurrency=` (Ray's rules)."""
    is_class = isinstance(fn, type)
    if compute is not None and concurrency is not None:
        raise ValueError("Pass either compute= or concurrency=, not both")
    if isinstance(compute, str):
        compute = {"tasks": TaskPoolStrategy(), "actors": ActorPoolStrategy()}.get(compute)
        if compute is None:
            raise ValueError("compute must be 'tasks', 'actors', TaskPoolStrategy or ActorPoolStrategy")
    if isinstance(compute, ActorPoolStrategy):
        if not is_class:
            raise ValueError("ActorPoolStrategy is only for callable classes; a function runs "
                             "as tasks (use TaskPoolStrategy or concurrency=n)")
        return Compute("actors", compute.min_size, compute.max_size,
                       compute.max_tasks_in_flight_per_actor)
    if isinstance(compute, TaskPoolStrategy):
        if is_class:
            raise ValueError("A callable class runs on actors: use concurrency= or "
                             "ActorPoolStrategy, not TaskPoolStrategy")
        return Compute("tasks", max_concurrency=compute.size)
    if compute is not None:
        raise ValueError(f"compute must be a TaskPoolStrategy or ActorPoolStrategy, got {compute!r}")
    if concurrency is None:
        return Compute("actors", 1, None) if is_class else Compute("tasks")
    if isinstance(concurrency, int) and not isinstance(concurrency, bool):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        return Compute("actors", concurrency, concurrency) if is_class else \
            Compute("tasks", max_concurrency=concurrency)
    if isinstance(concurrency, tuple) and len(concurrency) in (2, 3) and is_class:
        lo, hi = concurrency[0], concurrency[1]
        if not 1 <= lo <= hi:
            raise ValueError(f"concurrency=(min, max) needs 1 <= min <= max, got {concurrency}")
        return Compute("actors", lo, hi)
    raise ValueError(f"concurrency must be an int (or a (min, max) tuple for a callable class), "
                     f"got {concurrency!r}")
