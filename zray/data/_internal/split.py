"""streaming_split: n DataIterators fed by one execution, run by a coordinator actor.

The coordinator hands each requesting shard the next block (equal=False), or the shard's share
of rows (equal=True: the epoch is materialized and cut into n equal row ranges). Shards iterate
epochs together: a shard that asks for the next epoch before the current one is drained is told
to wait, and polls (bounded by _EPOCH_WAIT_S).
"""
import time

import zray

from ..iterator import DataIterator

_EPOCH_WAIT_S = 600.0
_WAIT = "wait"


class SplitCoordinator:
    def __init__(self, dataset, n, equal, data_context=None):
        if data_context is not None:
            # the splitter's settings (limits, exclude_resources, max_errored_blocks) are
            # those of the process that split: this actor's process runs only this split
            from ..context import DataContext
            DataContext._set_current(data_context)
        self.dataset = dataset
        self.n = n
        self.equal = equal
        self.epoch = -1
        self.iterator = None
        self.queues = None
        self.drained = True

    def _start(self):
        self.epoch += 1
        self.drained = False
        if self.equal:
            from .shuffle import split_rows
            bundles = self.dataset._bundles()
            total = sum(b.meta.num_rows for b in bundles)
            per = total // self.n
            parts = split_rows(bundles, [per * k for k in range(self.n + 1)],
                               num_cpus=_task_cpus()) if bundles else []
            self.queues = [[p] for p in parts] + [[] for _ in range(self.n - len(parts))]
        else:
            self.iterator = iter(self.dataset.iter_internal_ref_bundles())

    def next_bundle(self, index, epoch):
        if epoch == self.epoch + 1:
            if not self.drained and self.epoch >= 0:
                return _WAIT
            self._start()
        elif epoch != self.epoch:
            raise ValueError(f"shard {index} asked for epoch {epoch}; the split is at "
                             f"{self.epoch}")
        if self.equal:
            queue = self.queues[index]
            if queue:
                return queue.pop(0)
            if not any(self.queues):
                self.drained = True
            return None
        bundle = next(self.iterator, None)
        if bundle is None:
            self.drained = True
        return None if bundle is None else _plain(bundle)


def _task_cpus():
    """1, or 0 when the DataContext leaves no CPU to this run (exclude_resources)."""
    from ..context import DataContext
    from .executor import cluster_cpus
    return 1 if cluster_cpus(DataContext.get_current(), zray.cluster_resources()) >= 1 else 0


def _plain(bundle):
    from .executor import RefBundle
    return RefBundle(bundle.ref, bundle.meta)


class SplitSource:
    """A shard's bundle source: each call iterates one epoch."""

    def __init__(self, coordinator, index):
        self.coordinator = coordinator
        self.index = index
        self.epoch = -1

    def __call__(self):
        self.epoch += 1
        return self._iterate(self.epoch)

    def _iterate(self, epoch):
        deadline = time.monotonic() + _EPOCH_WAIT_S
        while True:
            item = zray.get(self.coordinator.next_bundle.remote(self.index, epoch),
                            timeout=_EPOCH_WAIT_S)
            if item is None:
                return
            if isinstance(item, str) and item == _WAIT:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"streaming_split shard {self.index} waited "
                                       f"{_EPOCH_WAIT_S:.0f}s for the other shards to finish "
                                       f"epoch {epoch - 1}")
                time.sleep(0.01)
                continue
            yield item


def streaming_split(dataset, n, equal, data_context=None):
    """`data_context`: the DataContext the split executes with (default: the caller's)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    from ..context import DataContext
    ctx = data_context if data_context is not None else DataContext.get_current()
    coordinator = zray.remote(SplitCoordinator).options(num_cpus=0).remote(dataset, n, equal,
                                                                           ctx)
    return [DataIterator(SplitSource(coordinator, i), name=f"split {i} of {n}") for i in range(n)]
