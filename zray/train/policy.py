"""The decisions of a training run, as I/O-free objects: events in, typed records out.

- `ReportAggregator`: every rank calls report() once per iteration; an iteration is complete
  when all ranks reported it. A rank that falls behind (finished, or silent past a deadline,
  while others reported) is named in a `Straggler` record.
- `CheckpointRetention`: which persisted checkpoints to keep (`num_to_keep`, the score attribute
  and order); the latest one is always kept, so a restart can resume from it.
- `FailurePolicy`: restart the worker group or give up (`max_failures`, -1 = forever).

The controller (controller.py) feeds them and acts on their records; the tests in
tests/test_train_unit.py drive them with no process at all.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple


# -- report aggregation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class IterationDone:
    """Every rank reported `iteration`; `metrics` are rank 0's, `checkpoint_ranks` the ranks
    that attached a checkpoint."""
    iteration: int
    metrics: dict
    checkpoint_ranks: Tuple[int, ...]
    last_report_at: float


@dataclass(frozen=True)
class Straggler:
    """`rank` has reported `reported` times while `ahead` ranks reported `expected` times."""
    rank: int
    reported: int
    expected: int
    ahead: Tuple[int, ...]
    finished: bool
    waited_s: float

    def message(self):
        ahead = ", ".join(map(str, self.ahead))
        if self.finished:
            return (f"rank {self.rank} finished its training loop after {self.reported} "
                    f"report() call(s) while rank(s) {ahead} made {self.expected}: every rank "
                    f"must call zray.train.report() the same number of times")
        return (f"rank {self.rank} has not called zray.train.report() for iteration "
                f"{self.reported} for {self.waited_s:.1f} s while rank(s) {ahead} did "
                f"(report timeout; every rank must call report() the same number of times)")


@dataclass
class _Pending:
    metrics: Dict[int, dict] = field(default_factory=dict)
    checkpoint_ranks: List[int] = field(default_factory=list)
    first_at: float = 0.0
    last_at: float = 0.0


class ReportAggregator:
    """Counts each rank's reports; iterations are numbered from 0 within one worker group."""

    def __init__(self, world_size, report_timeout_s):
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if report_timeout_s <= 0:
            raise ValueError(f"report_timeout_s must be > 0, got {report_timeout_s}")
        self.world_size = world_size
        self.report_timeout_s = float(report_timeout_s)
        self.counts = [0] * world_size
        self.finished = [False] * world_size
        self._pending: Dict[int, _Pending] = {}
        self.completed = 0            # iterations every rank reported

    def handle_report(self, rank, iteration, metrics, has_checkpoint, now):
        """A rank's report: [IterationDone] when it completes an iteration, [Straggler] when a
        rank that already finished can no longer match it, else []."""
        self._check_rank(rank)
        if iteration != self.counts[rank]:
            raise ValueError(f"rank {rank} reported iteration {iteration}, expected "
                             f"{self.counts[rank]}")
        self.counts[rank] += 1
        p = self._pending.get(iteration)
        if p is None:
            p = self._pending[iteration] = _Pending(first_at=now)
        p.metrics[rank] = metrics
        p.last_at = now
        if has_checkpoint:
            p.checkpoint_ranks.append(rank)
        if len(p.metrics) < self.world_size:
            return self._finished_stragglers()      # a finished rank can never catch up
        del self._pending[iteration]
        self.completed = iteration + 1
        return [IterationDone(iteration, p.metrics[0], tuple(sorted(p.checkpoint_ranks)),
                              p.last_at)]

    def handle_finished(self, rank):
        """A rank's loop returned; a Straggler if another rank reported more than it."""
        self._check_rank(rank)
        self.finished[rank] = True
        return self._finished_stragglers()

    def _finished_stragglers(self):
        top = max(self.counts)
        for r in range(self.world_size):
            if self.finished[r] and self.counts[r] < top:
                ahead = tuple(x for x in range(self.world_size) if self.counts[x] > self.counts[r])
                return [Straggler(r, self.counts[r], top, ahead, True, 0.0)]
        return []

    def check_timeouts(self, now):
        """Stragglers of an iteration that some ranks reported more than report_timeout_s ago."""
        if not self._pending:
            return []
        oldest = min(self._pending)
        p = self._pending[oldest]
        waited = now - p.first_at
        if waited < self.report_timeout_s:
            return []
        missing = [r for r in range(self.world_size) if r not in p.metrics]
        ahead = tuple(sorted(p.metrics))
        return [Straggler(r, self.counts[r], oldest + 1, ahead, self.finished[r], waited)
                for r in missing]

    def next_deadline(self):
        """When check_timeouts() may next fire (None: nothing pending)."""
        if not self._pending:
            return None
        return self._pending[min(self._pending)].first_at + self.report_timeout_s

    @property
    def all_finished(self):
        return all(self.finished)

    def _check_rank(self, rank):
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} out of range for world size {self.world_size}")


# -- checkpoint retention -------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackedCheckpoint:
    index: int
    name: str
    metrics: dict


class CheckpointRetention:
    """Keeps the best `num_to_keep` checkpoints (None: all) by `score_attribute` in
    `score_order` ("max"/"min"), or the most recent ones without a score attribute. The latest
    checkpoint is never deleted. `register()` returns the checkpoints to delete now."""

    def __init__(self, num_to_keep=None, score_attribute=None, score_order="max"):
        if num_to_keep is not None and (isinstance(num_to_keep, bool)
                                        or not isinstance(num_to_keep, int) or num_to_keep < 1):
            raise ValueError(f"num_to_keep must be None or an int >= 1, got {num_to_keep!r}")
        if score_order not in ("max", "min"):
            raise ValueError(f"checkpoint_score_order must be 'max' or 'min', got {score_order!r}")
        self.num_to_keep = num_to_keep
        self.score_attribute = score_attribute
        self.score_order = score_order
        self.kept: List[TrackedCheckpoint] = []
        self.latest: Optional[TrackedCheckpoint] = None

    def _score(self, tracked):
        """A sort key: higher is better; checkpoints without the attribute rank worst."""
        if self.score_attribute is None:
            return (1, tracked.index)
        value = lookup_metric(tracked.metrics, self.score_attribute)
        if value is None:
            return (0, tracked.index)
        return (1, value if self.score_order == "max" else -value, tracked.index)

    def register(self, tracked):
        self.kept.append(tracked)
        self.latest = tracked
        if self.num_to_keep is None or len(self.kept) <= self.num_to_keep:
            return []
        ranked = sorted(self.kept, key=self._score, reverse=True)
        keep = ranked[:self.num_to_keep]
        if tracked not in keep:
            keep.append(tracked)
        drop = [c for c in self.kept if c not in keep]
        self.kept = [c for c in self.kept if c in keep]
        return drop

    def best(self):
        """Kept checkpoints, best first."""
        return sorted(self.kept, key=self._score, reverse=True)


def lookup_metric(metrics, attribute):
    """metrics[attribute], following "a/b" into nested dicts ("env_runners/episode_return_mean");
    None when absent. Train's checkpoint scores and Tune's stoppers read results this way."""
    if attribute in metrics:
        return metrics[attribute]
    node = metrics
    for part in attribute.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# -- failures -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Restart:
    attempt: int           # failures so far, this one included
    reason: str


@dataclass(frozen=True)
class GiveUp:
    failures: int
    reason: str


class FailurePolicy:
    """max_failures: how many worker-group failures are retried (0: none, -1: forever)."""

    def __init__(self, max_failures=0):
        if isinstance(max_failures, bool) or not isinstance(max_failures, int) \
                or max_failures < -1:
            raise ValueError(f"max_failures must be an int >= -1, got {max_failures!r}")
        self.max_failures = max_failures
        self.failures = 0

    def handle_failure(self, reason):
        self.failures += 1
        if self.max_failures == -1 or self.failures <= self.max_failures:
            return Restart(self.failures, reason)
        return GiveUp(self.failures, reason)
