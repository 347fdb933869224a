"""Search algorithms with Ray Tune's names; `zray.tune.search.optuna.OptunaSearch` imports
optuna when used."""
from .basic_variant import BasicVariantGenerator
from .sample import (Categorical, Domain, Float, Function, Integer, choice, grid_search,
                     lograndint, loguniform, qlograndint, qloguniform, qrandint, qrandn, quniform,
                     randint, randn, sample_from, uniform)
from .searcher import ConcurrencyLimiter, SearchAlgorithm, Searcher, SearchGenerator

__all__ = ["BasicVariantGenerator", "ConcurrencyLimiter", "SearchAlgorithm", "SearchGenerator",
           "Searcher", "Categorical", "Domain", "Float", "Function", "Integer", "choice",
           "grid_search", "lograndint", "loguniform", "qlograndint", "qloguniform", "qrandint",
           "qrandn", "quniform", "randint", "randn", "sample_from", "uniform"]
