"""`ExperimentAnalysis`: what the legacy `tune.run` returns (Ray's names)."""
import os

from .result_grid import _best_row, best_trial
from .search.variant_generator import flatten_dict


class ExperimentAnalysis:
    def __init__(self, trials, experiment_path=None, default_metric=None, default_mode=None):
        self.trials = list(trials)
        self.experiment_path = experiment_path
        self.default_metric = default_metric
        self.default_mode = default_mode

    def _mm(self, metric, mode):
        metric = metric or self.default_metric
        mode = mode or self.default_mode
        if not metric or not mode:
            raise ValueError("pass metric and mode here or to tune.run(metric=..., mode=...)")
        return metric, mode

    def get_best_trial(self, metric=None, mode=None, scope="last", filter_nan_and_inf=True):
        metric, mode = self._mm(metric, mode)
        return best_trial(self.trials, metric, mode, scope, filter_nan_and_inf)

    def get_best_config(self, metric=None, mode=None, scope="last"):
        trial = self.get_best_trial(metric, mode, scope)
        return trial.config if trial else None

    def get_best_checkpoint(self, trial, metric=None, mode=None):
        metric = metric or self.default_metric or "training_iteration"
        mode = mode or self.default_mode or "max"
        records = trial.checkpoint_manager.records
        scored = [r for r in records if isinstance(r.metrics.get(metric), (int, float))]
        if not scored:
            return trial.checkpoint
        pick = max if mode == "max" else min
        return pick(scored, key=lambda r: r.metrics[metric]).checkpoint

    def get_best_logdir(self, metric=None, mode=None, scope="last"):
        trial = self.get_best_trial(metric, mode, scope)
        return trial.local_path if trial else None

    def get_last_checkpoint(self, trial=None, metric="training_iteration", mode="max"):
        trial = trial or self.get_best_trial()
        return trial.checkpoint

    @property
    def best_trial(self):
        return self.get_best_trial()

    @property
    def best_config(self):
        return self.get_best_config()

    @property
    def best_checkpoint(self):
        return self.get_best_checkpoint(self.best_trial)

    @property
    def best_logdir(self):
        return self.get_best_logdir()

    @property
    def best_result(self):
        return self.best_trial.last_result

    @property
    def best_result_df(self):
        import pandas as pd
        return pd.DataFrame([flatten_dict(self.best_result)])

    @property
    def best_dataframe(self):
        return self.trial_dataframes[self.best_trial.local_path]

    @property
    def results(self):
        return {t.trial_id: t.last_result for t in self.trials}

    @property
    def results_df(self):
        import pandas as pd
        rows = [flatten_dict({k: v for k, v in t.last_result.items()}) for t in self.trials
                if t.last_result]
        df = pd.DataFrame(rows)
        if "trial_id" in df:
            df = df.set_index("trial_id", drop=True)
        return df

    def dataframe(self, metric=None, mode=None):
        import pandas as pd
        rows = []
        for t in self.trials:
            result = _best_row(t, metric, mode) if metric and mode else None
            row = flatten_dict({k: v for k, v in (result or t.last_result).items()
                                if k != "config"})
            row.update(flatten_dict({"config": t.config}))
            row["logdir"] = t.local_path
            rows.append(row)
        return pd.DataFrame(rows)

    @property
    def trial_dataframes(self):
        import pandas as pd
        out = {}
        for t in self.trials:
            path = os.path.join(t.local_path, "progress.csv")
            out[t.local_path] = pd.read_csv(path) if os.path.exists(path) else pd.DataFrame()
        return out

    def fetch_trial_dataframes(self):
        return self.trial_dataframes

    def get_all_configs(self, prefix=False):
        return {t.local_path: (flatten_dict({"config": t.config}) if prefix else t.config)
                for t in self.trials}

    def stats(self):
        return {"num_trials": len(self.trials)}
