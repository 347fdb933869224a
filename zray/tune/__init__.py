"""zray.tune: Ray Tune 2.x's public API on zray actors.

`from zray import tune` and Ray Tune programs run: `Tuner`, `TuneConfig`, `RunConfig`, the
function API (`tune.report`, `tune.get_checkpoint`, `tune.get_context`, `tune.Checkpoint`)
and the class API (`tune.Trainable`), search spaces, schedulers, searchers and stoppers.
Heavy dependencies (pandas, optuna, tensorboardX) are imported only when used.
"""
from . import schedulers, search, stopper, track
from .analysis import ExperimentAnalysis
from .callback import Callback
from .checkpoint import Checkpoint
from .config import CheckpointConfig, FailureConfig, RunConfig, TuneConfig
from .progress import CLIReporter, JupyterNotebookReporter, ProgressReporter
from .result_grid import Result, ResultGrid, TuneError
from .run import run
from .schedulers import TrialScheduler
from .search import SearchAlgorithm, Searcher
from .search.sample import (choice, grid_search, lograndint, loguniform, qlograndint,
                            qloguniform, qrandint, qrandn, quniform, randint, randn, sample_from,
                            uniform)
from .session import TuneContext, get_checkpoint, get_context, report
from .stopper import Stopper
from .trainable import PlacementGroupFactory, Trainable, with_parameters, with_resources
from .trial import Trial
from .tuner import Tuner, register_trainable

__all__ = [
    "Callback", "CheckpointConfig", "Checkpoint", "CLIReporter", "ExperimentAnalysis",
    "FailureConfig", "JupyterNotebookReporter", "PlacementGroupFactory", "ProgressReporter",
    "Result", "ResultGrid", "RunConfig", "SearchAlgorithm", "Searcher", "Stopper", "Trainable",
    "Trial", "TrialScheduler", "TuneConfig", "TuneContext", "TuneError", "Tuner", "choice",
    "get_checkpoint", "get_context", "grid_search", "lograndint", "loguniform", "qlograndint",
    "qloguniform", "qrandint", "qrandn", "quniform", "randint", "randn", "register_trainable",
    "report", "run", "sample_from", "schedulers", "search", "stopper", "track", "uniform",
    "with_parameters", "with_resources",
]
