"""BasicVariantGenerator: grid_search x num_samples, random sampling, points_to_evaluate first."""
import random

from .searcher import SearchAlgorithm, Suggestion, deep_merge
from .variant_generator import count_grid, resolve


class BasicVariantGenerator(SearchAlgorithm):
    """Trials in Ray's order: for each of num_samples, every grid point (first axis fastest).

    `points_to_evaluate` (partial configs) come first, the rest of each sampled from the space;
    `max_concurrent` (0: no limit) caps live trials; `constant_grid_search` samples the random
    parts once and reuses them for every grid point; `random_state` seeds the sampling.
    """

    def __init__(self, points_to_evaluate=None, max_concurrent=0, constant_grid_search=False,
                 random_state=None):
        self._points = list(points_to_evaluate or [])
        self.max_concurrent = max_concurrent
        self._constant_grid = constant_grid_search
        self._rng = random.Random(random_state) if random_state is not None else random.Random()
        self._space = {}
        self._num_samples = 1
        self._grid_size = 1
        self._next = 0             # index of the next variant (points first, then the grid)
        self._live = set()
        self._finished = False
        self._constant = None

    def setup(self, param_space, num_samples):
        self._space = param_space or {}
        self._num_samples = num_samples
        self._grid_size = count_grid(self._space)

    @property
    def total_samples(self):
        if self._num_samples < 0:
            return None
        return len(self._points) + self._grid_size * self._num_samples

    def next_config(self, trial_id):
        if self._finished:
            return None
        if self.max_concurrent and len(self._live) >= self.max_concurrent:
            return None
        total = self.total_samples
        if total is not None and self._next >= total:
            self._finished = True
            return None
        i = self._next
        self._next += 1
        if i < len(self._points):
            config, resolved = resolve(deep_merge(self._space, self._points[i]), 0, self._rng)
        else:
            grid_index = (i - len(self._points)) % self._grid_size
            if self._constant_grid:
                if self._constant is None or grid_index == 0:
                    self._constant = self._rng.getstate()
                rng = random.Random()
                rng.setstate(self._constant)
            else:
                rng = self._rng
            config, resolved = resolve(self._space, grid_index, rng)
        self._live.add(trial_id)
        return Suggestion(config, resolved)

    def on_trial_complete(self, trial_id, result=None, error=False):
        self._live.discard(trial_id)
