"""zray.tune: Ray Tune 2.x's public API on zray actors.

`from zray import tune` and Ray Tune programs run: `Tuner`, `TuneConfig`, `RunConfig`, the
function API (`tune.report`, `tune.get_checkpoint`, `tune.get_context`, `tune.Checkpoint`)
and the class API (`tune.Trainable`), search spaces, schedulers, searchers and stoppers.

Names are imported on first use (PEP 562), so a trial's worker, which needs only `report` and
friends, does not import the driver's machinery; heavy dependencies (pandas, optuna,
tensorboardX) are imported only by what uses them.
"""
import importlib

_NAMES = {
    "ExperimentAnalysis": "analysis",
    "Callback": "callback",
    "Checkpoint": "checkpoint",
    "CheckpointConfig": "config", "FailureConfig": "config", "RunConfig": "config",
    "TuneConfig": "config",
    "CLIReporter": "progress", "JupyterNotebookReporter": "progress",
    "ProgressReporter": "progress",
    "Result": "result_grid", "ResultGrid": "result_grid", "TuneError": "result_grid",
    "run": "legacy",
    "TrialScheduler": "schedulers.trial_scheduler",
    "SearchAlgorithm": "search.searcher", "Searcher": "search.searcher",
    "choice": "search.sample", "grid_search": "search.sample", "lograndint": "search.sample",
    "loguniform": "search.sample", "qlograndint": "search.sample",
    "qloguniform": "search.sample", "qrandint": "search.sample", "qrandn": "search.sample",
    "quniform": "search.sample", "randint": "search.sample", "randn": "search.sample",
    "sample_from": "search.sample", "uniform": "search.sample",
    "TuneContext": "session", "get_checkpoint": "session", "get_context": "session",
    "report": "session",
    "Stopper": "stopper",
    "PlacementGroupFactory": "trainable", "Trainable": "trainable",
    "with_parameters": "trainable", "with_resources": "trainable",
    "Trial": "trial",
    "Tuner": "tuner", "register_trainable": "tuner",
}
_SUBMODULES = {"analysis", "callback", "checkpoint", "config", "controller", "logger",
               "progress", "legacy", "result_grid", "runner", "schedulers", "search",
               "session", "stopper", "storage", "track", "trainable", "trial", "tuner", "worker"}

__all__ = sorted(set(_NAMES) | {"schedulers", "search", "stopper", "track"})


def __getattr__(name):
    module = _NAMES.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
