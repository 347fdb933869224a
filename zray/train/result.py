"""Result: what fit() returns."""
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from .checkpoint import Checkpoint


@dataclass
class Result:
    """metrics: rank 0's last report; checkpoint: the latest persisted one; path: the run's
    directory under storage_path; best_checkpoints: the kept (checkpoint, metrics) pairs, best
    first by the checkpoint score attribute; metrics_dataframe: every report (pandas)."""
    metrics: Optional[dict]
    checkpoint: Optional[Checkpoint]
    error: Optional[BaseException] = None
    path: Optional[str] = None
    best_checkpoints: List[Tuple[Checkpoint, dict]] = field(default_factory=list)
    metrics_history: List[dict] = field(default_factory=list, repr=False)
    _stats: Any = field(default=None, repr=False)

    @property
    def metrics_dataframe(self):
        import pandas           # only here: pandas is optional
        return pandas.DataFrame(self.metrics_history)

    @property
    def filesystem(self):
        return None

    def get_best_checkpoint(self, metric, mode):
        """The kept checkpoint whose reported `metric` is the highest (mode="max") or lowest
        ("min"); None when no kept checkpoint reported it."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        scored = [(m[metric], c) for c, m in self.best_checkpoints if metric in m]
        if not scored:
            return None
        pick = max if mode == "max" else min
        return pick(scored, key=lambda sc: sc[0])[1]

    @classmethod
    def from_path(cls, path):
        raise NotImplementedError("zray.train.Result.from_path is not supported yet")
