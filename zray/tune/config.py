"""TuneConfig, RunConfig, CheckpointConfig, FailureConfig: Ray's names, fields and defaults.

One difference: `TuneConfig.reuse_actors` defaults to True here (Ray: False), because trial
actors are cheap to keep and the start of one is most of a tiny trial's cost.
"""
import os
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Union


def _check_mode(mode):
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")


@dataclass
class TuneConfig:
    mode: Optional[str] = None
    metric: Optional[str] = None
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    max_concurrent_trials: Optional[int] = None
    time_budget_s: Optional[float] = None
    reuse_actors: Optional[bool] = None
    trial_name_creator: Optional[Callable] = None
    trial_dirname_creator: Optional[Callable] = None
    chdir_to_trial_dir: Any = None   # accepted for compatibility, unused (as in Ray 2.x)

    def __post_init__(self):
        _check_mode(self.mode)
        if not isinstance(self.num_samples, int) or isinstance(self.num_samples, bool):
            raise TypeError(f"num_samples must be an int, got {self.num_samples!r}")
        if self.num_samples == 0 or self.num_samples < -1:
            raise ValueError(f"num_samples must be >= 1 (or -1: until the searcher ends), "
                             f"got {self.num_samples}")
        if self.max_concurrent_trials is not None and self.max_concurrent_trials < 1:
            raise ValueError("max_concurrent_trials must be >= 1")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError("time_budget_s must be positive")


@dataclass
class CheckpointConfig:
    num_to_keep: Optional[int] = None
    checkpoint_score_attribute: Optional[str] = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: Optional[bool] = None

    def __post_init__(self):
        if self.num_to_keep is not None and self.num_to_keep < 1:
            raise ValueError(f"num_to_keep must be None or >= 1, got {self.num_to_keep}")
        if self.checkpoint_score_order not in ("max", "min"):
            raise ValueError("checkpoint_score_order must be 'max' or 'min'")
        if self.checkpoint_frequency < 0:
            raise ValueError("checkpoint_frequency must be >= 0")


@dataclass
class FailureConfig:
    max_failures: int = 0
    fail_fast: Union[bool, str] = False

    def __post_init__(self):
        if self.fail_fast not in (True, False, "raise"):
            raise ValueError("fail_fast must be True, False or 'raise'")
        if self.max_failures < -1:
            raise ValueError("max_failures must be >= -1 (-1: retry forever)")


def default_storage_path():
    return os.environ.get("ZRAY_RESULTS_DIR") or os.path.expanduser("~/zray_results")


@dataclass
class RunConfig:
    name: Optional[str] = None
    storage_path: Optional[str] = None
    storage_filesystem: Any = None
    failure_config: Optional[FailureConfig] = None
    checkpoint_config: Optional[CheckpointConfig] = None
    sync_config: Any = None
    verbose: Optional[int] = None
    stop: Any = None
    callbacks: Optional[List[Any]] = None
    progress_reporter: Any = None
    log_to_file: Any = False

    def __post_init__(self):
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        if self.storage_filesystem is not None:
            raise NotImplementedError("storage_filesystem (pyarrow filesystems) is not supported; "
                                      "use a local or shared-filesystem storage_path")
        if self.storage_path is not None:
            self.storage_path = os.path.abspath(os.path.expanduser(str(self.storage_path)))
