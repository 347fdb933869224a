"""Ray Train's configuration objects (ScalingConfig, RunConfig, CheckpointConfig,
FailureConfig) and zray's own tunables (TrainTunables)."""
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional


@dataclass
class ScalingConfig:
    """How many workers and what each one gets. Each worker asks for `resources_per_worker`
    (default {"CPU": 1}, plus {"GPU": 1} with use_gpu); the workers share one placement group
    of that many bundles, placed by `placement_strategy`. num_workers=0 runs the loop in the
    driver's process."""
    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: Optional[Dict[str, float]] = None
    placement_strategy: str = "PACK"
    accelerator_type: Optional[str] = None
    trainer_resources: Optional[Dict[str, float]] = None

    def __post_init__(self):
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) \
                or self.num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {self.num_workers!r}")
        if self.placement_strategy not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
            raise ValueError(f"placement_strategy must be PACK, SPREAD, STRICT_PACK or "
                             f"STRICT_SPREAD, got {self.placement_strategy!r}")
        if self.resources_per_worker is not None:
            if not isinstance(self.resources_per_worker, dict) or any(
                    not isinstance(v, (int, float)) or v < 0
                    for v in self.resources_per_worker.values()):
                raise ValueError("resources_per_worker must be a dict of non-negative amounts, "
                                 f"got {self.resources_per_worker!r}")

    @property
    def _resources_per_worker_not_none(self):
        res = dict(self.resources_per_worker or {})
        if self.resources_per_worker is None:
            res["CPU"] = 1
        if self.use_gpu and "GPU" not in res:
            res["GPU"] = 1
        if not self.use_gpu and res.get("GPU"):
            raise ValueError("resources_per_worker asks for GPUs but use_gpu is False")
        return {k: v for k, v in res.items() if v}

    @property
    def total_resources(self):
        per = self._resources_per_worker_not_none
        return {k: v * self.num_workers for k, v in per.items()}


@dataclass
class CheckpointConfig:
    """Which checkpoints are kept: the best `num_to_keep` by `checkpoint_score_attribute` (in
    `checkpoint_score_order`), or the latest ones without an attribute; None keeps all."""
    num_to_keep: Optional[int] = None
    checkpoint_score_attribute: Optional[str] = None
    checkpoint_score_order: str = "max"

    def __post_init__(self):
        if self.num_to_keep is not None and (isinstance(self.num_to_keep, bool) or not
                                             isinstance(self.num_to_keep, int)
                                             or self.num_to_keep < 1):
            raise ValueError(f"num_to_keep must be None or an int >= 1, got {self.num_to_keep!r}")
        if self.checkpoint_score_order not in ("max", "min"):
            raise ValueError("checkpoint_score_order must be 'max' or 'min', got "
                             f"{self.checkpoint_score_order!r}")


@dataclass
class FailureConfig:
    """max_failures: worker-group failures retried from the latest checkpoint (-1: forever)."""
    max_failures: int = 0
    fail_fast: bool = False

    def __post_init__(self):
        if isinstance(self.max_failures, bool) or not isinstance(self.max_failures, int) \
                or self.max_failures < -1:
            raise ValueError(f"max_failures must be an int >= -1, got {self.max_failures!r}")


@dataclass
class RunConfig:
    """name (default zray_train_run-<time>), storage_path (default $ZRAY_TRAIN_STORAGE or
    ~/zray_results),
    failure_config, checkpoint_config, callbacks. Beyond Ray v2: verbose (0 silences the
    progress lines; default 1, or $ZRAY_TRAIN_VERBOSE)."""
    name: Optional[str] = None
    storage_path: Optional[str] = None
    failure_config: Optional[FailureConfig] = None
    checkpoint_config: Optional[CheckpointConfig] = None
    callbacks: Optional[List[Any]] = None
    verbose: Optional[int] = None
    storage_filesystem: Any = None
    worker_runtime_env: Optional[dict] = None

    def __post_init__(self):
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        if self.storage_filesystem is not None:
            raise NotImplementedError("zray.train: storage_filesystem is not supported; give a "
                                      "local or shared-filesystem storage_path")
        if self.storage_path is not None and "://" in str(self.storage_path):
            raise NotImplementedError(f"zray.train: storage_path {self.storage_path!r} is a URI; "
                                      "only local or shared-filesystem paths are supported")

    def resolved_verbose(self):
        if self.verbose is not None:
            return int(self.verbose)
        return int(os.environ.get("ZRAY_TRAIN_VERBOSE", "1"))


def default_storage_path():
    """$ZRAY_TRAIN_STORAGE, else ~/zray_results."""
    return os.environ.get("ZRAY_TRAIN_STORAGE") or os.path.join(os.path.expanduser("~"),
                                                                 "zray_results")


@dataclass(frozen=True)
class TrainTunables:
    """zray.train's timeouts; each field can be set as ZRAY_TRAIN_<FIELD> in the driver's
    environment.

    report_timeout_s   a rank silent this long while others reported an iteration fails fit()
    poll_s             how long one long-poll of a worker's reports blocks (an idle poll costs
                       one actor call per worker per poll_s; reports return at once)
    start_timeout_s    placing the worker group (placement group ready, actors up)
    kill_grace_s       waiting for a torn-down group's actors to be gone
    """
    report_timeout_s: float = 120.0
    poll_s: float = 2.0
    start_timeout_s: float = 120.0
    kill_grace_s: float = 10.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"TrainTunables.{f.name} must be > 0, got {value!r}")

    @classmethod
    def from_env(cls, environ=None):
        environ = os.environ if environ is None else environ
        kwargs = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f"ZRAY_TRAIN_{f.name.upper()}")
            if raw is not None:
                try:
                    kwargs[f.name] = float(raw)
                except ValueError:
                    raise ValueError(f"ZRAY_TRAIN_{f.name.upper()} must be a number, got "
                                     f"{raw!r}") from None
        return cls(**kwargs)
