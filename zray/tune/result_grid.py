"""`Result` (one trial) and `ResultGrid` (all of them); pandas is imported only by the
dataframe methods."""
import json
import math
import os

from .checkpoint import Checkpoint
from .logger import EXPR_PROGRESS_FILE, EXPR_RESULT_FILE
from .search.variant_generator import flatten_dict


class TuneError(Exception):
    """An experiment-level error (Ray's `ray.tune.TuneError`)."""


class Result:
    def __init__(self, metrics=None, checkpoint=None, error=None, path=None,
                 best_checkpoints=None, _trial=None):
        self.metrics = metrics or {}
        self.checkpoint = checkpoint
        self.error = error
        self.path = path
        self.best_checkpoints = best_checkpoints or []
        self.filesystem = None
        self._trial = _trial

    @property
    def config(self):
        if self._trial is not None:
            return self._trial.config
        return self.metrics.get("config")

    @property
    def metrics_dataframe(self):
        import pandas as pd
        path = os.path.join(self.path, EXPR_PROGRESS_FILE) if self.path else None
        if path is None or not os.path.exists(path):
            return None
        return pd.read_csv(path)

    @classmethod
    def from_path(cls, path, storage_filesystem=None):
        metrics = {}
        result_file = os.path.join(path, EXPR_RESULT_FILE)
        if os.path.exists(result_file):
            with open(result_file) as f:
                lines = [line for line in f if line.strip()]
            if lines:
                metrics = json.loads(lines[-1])
        ckpts = sorted(d for d in os.listdir(path) if d.startswith("checkpoint_"))
        checkpoint = Checkpoint(os.path.join(path, ckpts[-1])) if ckpts else None
        error = None
        error_file = os.path.join(path, "error.txt")
        if os.path.exists(error_file):
            with open(error_file) as f:
                error = TuneError(f.read())
        return cls(metrics, checkpoint, error, path,
                   [(Checkpoint(os.path.join(path, c)), {}) for c in ckpts])

    def __repr__(self):
        shown = {k: v for k, v in self.metrics.items() if k != "config"}
        parts = [f"metrics={shown}", f"path={self.path!r}"]
        parts.append(f"checkpoint={self.checkpoint!r}")
        if self.error is not None:
            parts.append(f"error={self.error!r}")
        return "Result(\n  " + ",\n  ".join(parts) + "\n)"


def trial_to_result(trial):
    error = None
    if trial.status == "ERROR":
        error = trial.error if trial.error is not None else TuneError(trial.error_msg)
    return Result(metrics=dict(trial.last_result), checkpoint=trial.checkpoint, error=error,
                  path=trial.local_path,
                  best_checkpoints=trial.checkpoint_manager.best_checkpoints(), _trial=trial)


def _metric_value(trial, metric, scope):
    if scope == "last":
        return flatten_dict(trial.last_result).get(metric) if trial.last_result else None
    if scope == "all":
        scope_key = None
    else:
        scope_key = scope
    return trial.metric_analysis.get(metric, scope_key or "last")


def best_trial(trials, metric, mode, scope="last", filter_nan_and_inf=True):
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if scope not in ("all", "last", "avg", "last-5-avg", "last-10-avg"):
        raise ValueError(f"unknown scope {scope!r}")
    best, best_value = None, None
    for trial in trials:
        if scope == "all":
            value = trial.metric_analysis.get(metric, mode)
        else:
            value = _metric_value(trial, metric, scope)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if filter_nan_and_inf and not math.isfinite(value):
            continue
        if best is None or (value > best_value if mode == "max" else value < best_value):
            best, best_value = trial, value
    return best


class ResultGrid:
    def __init__(self, trials, experiment_path=None, metric=None, mode=None):
        self._trials = list(trials)
        self._experiment_path = experiment_path
        self._metric, self._mode = metric, mode
        self._results = [trial_to_result(t) for t in self._trials]

    @property
    def experiment_path(self):
        return self._experiment_path

    @property
    def filesystem(self):
        return None

    def __len__(self):
        return len(self._results)

    def __getitem__(self, i):
        return self._results[i]

    def __iter__(self):
        return iter(self._results)

    @property
    def errors(self):
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self):
        return len(self.errors)

    @property
    def num_terminated(self):
        return sum(1 for t in self._trials if t.status == "TERMINATED")

    def get_best_result(self, metric=None, mode=None, scope="last", filter_nan_and_inf=True):
        metric = metric or self._metric
        mode = mode or self._mode
        if not metric or not mode:
            raise ValueError("get_best_result needs a metric and a mode: pass them here or to "
                             "TuneConfig(metric=..., mode=...)")
        trial = best_trial(self._trials, metric, mode, scope, filter_nan_and_inf)
        if trial is None:
            raise RuntimeError(f"no trial reported the metric {metric!r} (with a finite value); "
                               "the best result cannot be chosen")
        return self._results[self._trials.index(trial)]

    def get_dataframe(self, filter_metric=None, filter_mode=None):
        """One row per trial: its last result (or, with filter_metric, its best one)."""
        import pandas as pd
        rows = []
        for trial in self._trials:
            result = trial.last_result
            if filter_metric is not None:
                result = _best_row(trial, filter_metric, filter_mode) or result
            row = flatten_dict({k: v for k, v in (result or {}).items() if k != "config"})
            row.update(flatten_dict({"config": trial.config}))
            row["logdir"] = trial.dirname
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self):
        return f"ResultGrid<[\n  " + ",\n  ".join(repr(r) for r in self._results) + "\n]>"


def _best_row(trial, metric, mode):
    path = os.path.join(trial.local_path, EXPR_RESULT_FILE)
    if not os.path.exists(path):
        return None
    best, best_value = None, None
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            value = flatten_dict(row).get(metric)
            if not isinstance(value, (int, float)):
                continue
            if best is None or (value > best_value if mode == "max" else value < best_value):
                best, best_value = row, value
    return best
