"""zray.train: Ray Train's v2 API (TorchTrainer, DataParallelTrainer, report, checkpoints,
fault tolerance) on zray actors. torch and pandas are imported only when used.
See docs/train.md."""
from .backend import BackendConfig
from .checkpoint import Checkpoint
from .config import (CheckpointConfig, FailureConfig, RunConfig, ScalingConfig, TrainTunables)
from .data_parallel_trainer import DataParallelTrainer
from .errors import ReportTimeoutError, TrainingFailedError, WorkerGroupError
from .result import Result
from .session import (TrainContext, get_checkpoint, get_context, get_dataset_shard, report)

__all__ = [
    "BackendConfig", "Checkpoint", "CheckpointConfig", "DataParallelTrainer", "FailureConfig",
    "ReportTimeoutError", "Result", "RunConfig", "ScalingConfig", "TrainContext",
    "TrainTunables", "TrainingFailedError", "WorkerGroupError", "get_checkpoint", "get_context",
    "get_dataset_shard", "report",
]
