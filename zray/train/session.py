"""The training loop's side: report(), get_context(), get_checkpoint(), get_dataset_shard().

One session per process runs one training loop (a worker actor, or the driver itself with
num_workers=0). report() persists the checkpoint before it returns (the caller may delete its
directory right after) and hands a ReportEvent to the session's sink, which pushes it to the
driver.
"""
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from .checkpoint import Checkpoint, copy_directory, pack_directory

logger = logging.getLogger("zray.train")

MARKER_FILE = ".zray_train_run"


@dataclass(frozen=True)
class TrainContext:
    """Where this worker sits in the run (as ray.train.get_context())."""
    world_rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node_rank: int = 0
    experiment_name: str = ""
    run_dir: str = ""
    metadata: Dict[str, Any] = field(default_factory=dict)
    trial_id: str = ""

    def get_world_rank(self):
        return self.world_rank

    def get_world_size(self):
        return self.world_size

    def get_local_rank(self):
        return self.local_rank

    def get_local_world_size(self):
        return self.local_world_size

    def get_node_rank(self):
        return self.node_rank

    def get_experiment_name(self):
        return self.experiment_name

    def get_trial_name(self):
        return self.experiment_name

    def get_trial_id(self):
        return self.trial_id

    def get_trial_dir(self):
        return self.run_dir

    def get_metadata(self):
        return dict(self.metadata)

    def get_storage(self):
        return self.run_dir


@dataclass(frozen=True)
class ReportEvent:
    rank: int
    iteration: int
    metrics: dict
    checkpoint_name: Optional[str]
    packed: Optional[bytes]          # the checkpoint's files when the driver cannot see ours
    sent_at: float


@dataclass(frozen=True)
class WorkerStorage:
    """The run's directory as the driver made it; `token` is in its marker file, so a worker
    that reads the same token there shares the driver's filesystem."""
    run_dir: str
    token: str
    first_index: int                 # the checkpoint index of this group's iteration 0

    def shared(self):
        try:
            with open(os.path.join(self.run_dir, MARKER_FILE)) as f:
                return f.read().strip() == self.token
        except OSError:
            return False

    def checkpoint_name(self, iteration):
        return f"checkpoint_{self.first_index + iteration:06d}"


class TrainSession:
    def __init__(self, context, storage, sink, checkpoint=None, dataset_shards=None):
        self.context = context
        self.storage = storage
        self.sink = sink
        self.checkpoint = checkpoint
        self.dataset_shards = dict(dataset_shards or {})
        self.iteration = 0
        self.shared = storage.shared()

    def report(self, metrics, checkpoint=None, checkpoint_dir_name=None):
        if not isinstance(metrics, dict):
            raise TypeError(f"report() metrics must be a dict, got {type(metrics).__name__}")
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            raise TypeError(f"report() checkpoint must be a zray.train.Checkpoint, got "
                            f"{type(checkpoint).__name__}")
        name = packed = None
        if checkpoint is not None:
            name = checkpoint_dir_name or self.storage.checkpoint_name(self.iteration)
            if self.shared:
                copy_directory(checkpoint.path, os.path.join(self.storage.run_dir, name))
            else:
                packed = pack_directory(checkpoint.path)
        event = ReportEvent(self.context.world_rank, self.iteration, dict(metrics), name, packed,
                            time.time())
        self.iteration += 1
        self.sink(event)


_session = None
_session_lock = threading.Lock()


def set_session(session):
    global _session
    with _session_lock:
        _session = session


def get_session():
    return _session


def _require(what):
    s = _session
    if s is None:
        raise RuntimeError(f"zray.train.{what}() can only be called inside a training loop "
                           "run by a zray.train trainer")
    return s


def report(metrics, checkpoint=None, checkpoint_dir_name=None):
    """Report `metrics` (a dict) for this iteration, with an optional Checkpoint whose files
    are persisted to the run's storage before this returns. Every rank must call report() the
    same number of times; the driver sees rank 0's metrics."""
    _require("report").report(metrics, checkpoint, checkpoint_dir_name)


def get_context():
    s = _session
    return s.context if s is not None else TrainContext()


def get_checkpoint():
    """The checkpoint to resume from (the latest persisted one after a restart, else
    resume_from_checkpoint), or None."""
    s = _session
    return s.checkpoint if s is not None else None


def get_dataset_shard(dataset_name=None):
    s = _require("get_dataset_shard")
    if dataset_name is None:
        if len(s.dataset_shards) != 1:
            raise ValueError("get_dataset_shard() needs a name when there are "
                             f"{len(s.dataset_shards)} datasets")
        return next(iter(s.dataset_shards.values()))
    if dataset_name not in s.dataset_shards:
        raise KeyError(f"no dataset named {dataset_name!r}; the trainer got "
                       f"{sorted(s.dataset_shards)}")
    return s.dataset_shards[dataset_name]
