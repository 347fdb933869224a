"""`Trial`: the driver's record of one trial, and its checkpoint bookkeeping (I/O-free)."""
import os
from collections import deque
from dataclasses import dataclass, field

from .checkpoint import Checkpoint
from .search.variant_generator import flatten_dict


@dataclass
class CheckpointRecord:
    """A persisted checkpoint and the metrics of the result it came with."""
    path: str
    metrics: dict = field(default_factory=dict)
    index: int = 0

    @property
    def checkpoint(self):
        return Checkpoint(self.path)

    @property
    def iteration(self):
        return self.metrics.get("training_iteration", 0)

    @property
    def time_total(self):
        return self.metrics.get("time_total_s", 0.0)


class CheckpointManager:
    """Keeps a trial's checkpoints by CheckpointConfig: the best `num_to_keep` by score, and
    the latest one too (a restore starts from it), as Ray does."""

    def __init__(self, num_to_keep=None, score_attribute=None, score_order="max"):
        self.num_to_keep = num_to_keep
        self.score_attribute = score_attribute
        self.score_order = score_order
        self.records = []
        self.count = 0

    def _score(self, record):
        if self.score_attribute is None:
            return record.index
        value = record.metrics.get(self.score_attribute)
        if value is None:
            return float("-inf")
        return value if self.score_order == "max" else -value

    def register(self, path, metrics):
        """Adds a checkpoint; returns the paths of those no longer kept."""
        record = CheckpointRecord(path, dict(metrics), self.count)
        self.count += 1
        self.records.append(record)
        if self.num_to_keep is None or len(self.records) <= self.num_to_keep:
            return []
        latest = self.records[-1]
        ranked = sorted(self.records, key=self._score, reverse=True)
        kept = {id(r) for r in ranked[:self.num_to_keep]} | {id(latest)}
        dropped = [r for r in self.records if id(r) not in kept]
        self.records = [r for r in self.records if id(r) in kept]
        return [r.path for r in dropped]

    @property
    def latest(self):
        return self.records[-1] if self.records else None

    @property
    def best(self):
        if not self.records:
            return None
        return max(self.records, key=self._score)

    def best_checkpoints(self):
        return [(r.checkpoint, r.metrics) for r in sorted(self.records, key=self._score)]


class MetricAnalysis:
    """Per metric: max, min, avg, last, last-5-avg, last-10-avg (for `scope=`)."""

    def __init__(self):
        self.stats = {}

    def update(self, result):
        for key, value in flatten_dict(result).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or key == "config":
                continue
            s = self.stats.get(key)
            if s is None:
                s = self.stats[key] = {"max": value, "min": value, "sum": 0.0, "n": 0,
                                       "window": deque(maxlen=10)}
            s["max"] = max(s["max"], value)
            s["min"] = min(s["min"], value)
            s["sum"] += value
            s["n"] += 1
            s["window"].append(value)

    def get(self, metric, scope):
        s = self.stats.get(metric)
        if s is None:
            return None
        if scope in ("max", "min"):
            return s[scope]
        if scope == "avg":
            return s["sum"] / s["n"]
        if scope == "last":
            return s["window"][-1]
        if scope in ("last-5-avg", "last-10-avg"):
            n = 5 if scope == "last-5-avg" else 10
            window = list(s["window"])[-n:]
            return sum(window) / len(window)
        raise ValueError(f"unknown scope {scope!r}")

    def as_dict(self):
        return {k: {"max": s["max"], "min": s["min"], "avg": s["sum"] / s["n"],
                    "last": s["window"][-1]} for k, s in self.stats.items()}


class Trial:
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"

    def __init__(self, trainable_name, trial_id, config, experiment_tag="", evaluated_params=None,
                 experiment_path="", checkpoint_manager=None, resources=None):
        self.trainable_name = trainable_name
        self.trial_id = trial_id
        self.config = config
        self.experiment_tag = experiment_tag
        self.evaluated_params = evaluated_params or {}
        self.status = Trial.PENDING
        self.last_result = {}
        self.metric_analysis = MetricAnalysis()
        self.num_failures = 0
        self.error_msg = None
        self.error = None
        self.experiment_path = experiment_path
        self.dirname = ""
        self.custom_trial_name = None
        self.checkpoint_manager = checkpoint_manager or CheckpointManager()
        self.restore_record = None        # a checkpoint to start from (PBT's donor), once
        self.resources = resources or {"CPU": 1}
        self.num_results = 0

    @property
    def local_path(self):
        return os.path.join(self.experiment_path, self.dirname)

    path = local_path
    logdir = local_path

    @property
    def checkpoint(self):
        # After a PBT exploit the trial's state is the donor's checkpoint until it saves its own
        # (as Ray: its latest checkpoint becomes the donor's), even if it then runs no further.
        record = self.restore_record or self.checkpoint_manager.latest
        return record.checkpoint if record else None

    @property
    def error_file(self):
        return os.path.join(self.local_path, "error.txt") if self.error_msg else None

    def is_finished(self):
        return self.status in (Trial.TERMINATED, Trial.ERROR)

    def set_status(self, status):
        self.status = status

    def __getstate__(self):
        state = self.__dict__.copy()
        state["error"] = None    # the exception may not pickle; error_msg keeps its text
        return state

    def __str__(self):
        if self.custom_trial_name:
            return self.custom_trial_name
        return f"{self.trainable_name}_{self.trial_id}"

    def __repr__(self):
        return str(self)
