"""Search space primitives: `uniform`, `loguniform`, `randint`, `choice`, `sample_from`, `grid_search`...

A `Domain` knows its bounds and how to draw one value from a `random.Random`. Searchers that
translate spaces (OptunaSearch) read `lower`, `upper`, `q`, `base` and `categories`.
Bounds follow Ray: `randint`/`lograndint` exclude `upper`; the `q` forms include it.
"""
import math
import random as _random


class Domain:
    """A distribution of values for one config key."""

    def sample(self, config=None, size=1, random_state=None):
        rng = _as_rng(random_state)
        values = [self._draw(rng, config) for _ in range(size)]
        return values[0] if size == 1 else values

    def _draw(self, rng, config):   # pragma: no cover - abstract
        raise NotImplementedError

    def is_grid(self):
        return False

    def is_function(self):
        return False

    def is_valid(self, value):
        return True

    @property
    def domain_str(self):
        return "(unknown)"


def _as_rng(random_state):
    if random_state is None:
        return _random
    if isinstance(random_state, int):
        return _random.Random(random_state)
    return random_state


def _quantize(value, q):
    return round(value / q) * q


class Float(Domain):
    def __init__(self, lower, upper, *, log=False, base=10, q=None, normal=None):
        self.lower, self.upper = lower, upper
        self.log, self.base, self.q = log, base, q
        self.normal = normal           # (mean, sd) for randn
        if normal is None:
            if lower is None or upper is None or not lower < upper:
                raise ValueError(f"a float domain needs lower < upper, got [{lower}, {upper}]")
            if log and lower <= 0:
                raise ValueError(f"a log-uniform domain needs lower > 0, got {lower}")

    def _draw(self, rng, config):
        if self.normal is not None:
            value = rng.gauss(*self.normal)
        elif self.log:
            lo, hi = math.log(self.lower, self.base), math.log(self.upper, self.base)
            value = self.base ** rng.uniform(lo, hi)
        else:
            value = rng.uniform(self.lower, self.upper)
        if self.q is not None:
            value = _quantize(value, self.q)
            if self.normal is None:
                value = min(max(value, self.lower), self.upper)
        return float(value)

    def is_valid(self, value):
        return self.normal is not None or self.lower <= value <= self.upper

    @property
    def domain_str(self):
        if self.normal is not None:
            return f"Normal({self.normal[0]}, {self.normal[1]})"
        return f"({self.lower}, {self.upper})"


class Integer(Domain):
    def __init__(self, lower, upper, *, log=False, base=10, q=None, inclusive=False):
        if not lower < upper + (1 if inclusive else 0):
            raise ValueError(f"an integer domain needs lower < upper, got [{lower}, {upper}]")
        if log and lower <= 0:
            raise ValueError(f"a log integer domain needs lower > 0, got {lower}")
        self.lower, self.upper = int(lower), int(upper)
        self.log, self.base, self.q, self.inclusive = log, base, q, inclusive

    @property
    def high(self):
        """The largest value the domain can take."""
        return self.upper if self.inclusive else self.upper - 1

    def _draw(self, rng, config):
        if self.log:
            lo, hi = math.log(self.lower, self.base), math.log(self.high + 0.999999, self.base)
            value = int(self.base ** rng.uniform(lo, hi))
        else:
            value = rng.randint(self.lower, self.high)
        if self.q is not None:
            value = int(_quantize(value, self.q))
        return min(max(value, self.lower), self.high)

    def is_valid(self, value):
        return self.lower <= value <= self.high

    @property
    def domain_str(self):
        return f"[{self.lower}, {self.upper}{']' if self.inclusive else ')'}"


class Categorical(Domain):
    def __init__(self, categories):
        self.categories = list(categories)
        if not self.categories:
            raise ValueError("choice() needs at least one category")

    def _draw(self, rng, config):
        return self.categories[rng.randrange(len(self.categories))]

    def is_valid(self, value):
        return value in self.categories

    def __len__(self):
        return len(self.categories)

    def __getitem__(self, i):
        return self.categories[i]

    @property
    def domain_str(self):
        return str(self.categories)


class Function(Domain):
    """`sample_from(fn)`: fn(spec) with `spec.config` the config resolved so far."""

    def __init__(self, func):
        if not callable(func):
            raise TypeError(f"sample_from needs a callable, got {func!r}")
        self.func = func

    def is_function(self):
        return True

    def _draw(self, rng, config):
        import inspect
        try:
            nparams = len(inspect.signature(self.func).parameters)
        except (TypeError, ValueError):
            nparams = 1
        if nparams == 0:
            return self.func()
        return self.func(_Spec({"config": _Spec(config or {})}))


class _Spec(dict):
    """A dict whose keys are also attributes: `spec.config.lr`."""

    def __getattr__(self, name):
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return _Spec(value) if isinstance(value, dict) and not isinstance(value, _Spec) else value


def uniform(lower, upper):
    return Float(lower, upper)


def quniform(lower, upper, q):
    return Float(lower, upper, q=q)


def loguniform(lower, upper, base=10):
    return Float(lower, upper, log=True, base=base)


def qloguniform(lower, upper, q, base=10):
    return Float(lower, upper, log=True, base=base, q=q)


def randn(mean=0.0, sd=1.0):
    return Float(None, None, normal=(mean, sd))


def qrandn(mean, sd, q):
    return Float(None, None, normal=(mean, sd), q=q)


def randint(lower, upper):
    return Integer(lower, upper)


def qrandint(lower, upper, q=1):
    return Integer(lower, upper, q=q, inclusive=True)


def lograndint(lower, upper, base=10):
    return Integer(lower, upper, log=True, base=base)


def qlograndint(lower, upper, q, base=10):
    return Integer(lower, upper, log=True, base=base, q=q, inclusive=True)


def choice(categories):
    return Categorical(categories)


def sample_from(func):
    return Function(func)


def grid_search(values):
    """Every value is tried (times num_samples); Ray's form: {"grid_search": values}."""
    return {"grid_search": list(values)}
