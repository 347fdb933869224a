"""`zray.util.metrics`: Counter, Gauge and Histogram, as `ray.util.metrics`.

Record from anywhere (a task, an actor, the driver). Values are kept in the process and sent to
its node with the process's next report (zray/core/reporter.py, at most every 0.5 s while they
change); the node adds up its processes and shows them on its Prometheus exposition (`/metrics`,
zray/state/prometheus.py) under Ray's exported names: `ray_<name>`, with the metric's tags as
labels plus `NodeId`. A counter keeps counting after its process exits; a gauge goes with it.

As in Ray: names are non-empty, a tag given at record time must be one of `tag_keys`, every tag
key needs a value (from the call or `set_default_tags`), `Counter.inc` takes a positive value,
and histogram boundaries are positive and increasing.
"""
import math
import re
import threading
import time

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_lock = threading.Lock()
_registry = {}          # name -> Metric
_dirty = [False]
_attached = [None]      # the reporter we hooked into


class Metric:
    kind = None

    def __init__(self, name, description="", tag_keys=None):
        if not isinstance(name, str) or not name:
            raise ValueError("a metric's name must be a non-empty str")
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r} is not a valid Prometheus name "
                             "([a-zA-Z_:][a-zA-Z0-9_:]*)")
        if tag_keys is None:
            tag_keys = ()
        if isinstance(tag_keys, str) or not all(isinstance(k, str) for k in tag_keys):
            raise TypeError(f"tag_keys must be a tuple of str, not {tag_keys!r}")
        self._name = name
        self._description = description or ""
        self._tag_keys = tuple(tag_keys)
        self._default_tags = {}
        self._values = {}       # tag values tuple -> value
        with _lock:
            existing = _registry.get(name)
            if existing is not None and existing.kind != self.kind:
                raise ValueError(f"a {existing.kind} named {name!r} exists already in this process")
            if existing is not None:
                self._values = existing._values    # same metric recreated: keep counting
            _registry[name] = self

    @property
    def info(self):
        return {"name": self._name, "description": self._description,
                "tag_keys": self._tag_keys, "default_tags": dict(self._default_tags)}

    def set_default_tags(self, default_tags):
        for key in default_tags:
            if key not in self._tag_keys:
                raise ValueError(f"unrecognized tag key {key!r} for metric {self._name!r}; "
                                 f"its tag_keys are {self._tag_keys}")
        self._default_tags = dict(default_tags)
        return self

    def _tags(self, tags):
        merged = dict(self._default_tags)
        if tags:
            for key, value in tags.items():
                if key not in self._tag_keys:
                    raise ValueError(f"unrecognized tag key {key!r} for metric {self._name!r}; "
                                     f"its tag_keys are {self._tag_keys}")
                merged[key] = value
        missing = [k for k in self._tag_keys if k not in merged]
        if missing:
            raise ValueError(f"missing value for tag key(s) {missing} of metric {self._name!r}")
        return tuple(str(merged[k]) for k in self._tag_keys)

    def _entry(self):
        return (self._name, self.kind, self._description, self._tag_keys, None,
                list(self._values.items()))


def _number(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{what} must be a number, not {value!r}")
    return float(value)


class Counter(Metric):
    """A cumulative count: inc(value=1.0, tags=None)."""
    kind = "counter"

    def inc(self, value=1.0, tags=None):
        value = _number(value, "Counter.inc's value")
        if value <= 0:
            raise ValueError(f"Counter.inc takes a value > 0, not {value}")
        key = self._tags(tags)
        with _lock:
            self._values[key] = self._values.get(key, 0.0) + value
        _changed()


class Gauge(Metric):
    """The current value of something: set(value, tags=None)."""
    kind = "gauge"

    def set(self, value, tags=None):
        value = _number(value, "Gauge.set's value")
        key = self._tags(tags)
        with _lock:
            self._values[key] = (value, time.time())
        _changed()


class Histogram(Metric):
    """A distribution over `boundaries`: observe(value, tags=None)."""
    kind = "histogram"

    def __init__(self, name, description="", boundaries=None, tag_keys=None):
        if not boundaries:
            raise ValueError("a Histogram needs boundaries (a list of positive increasing "
                             "numbers)")
        bounds = [_number(b, "a boundary") for b in boundaries]
        if any(b <= 0 for b in bounds):
            raise ValueError(f"histogram boundaries must be > 0, got {list(boundaries)}")
        if any(a >= b for a, b in zip(bounds, bounds[1:])):
            raise ValueError(f"histogram boundaries must increase, got {list(boundaries)}")
        self._boundaries = tuple(bounds)
        super().__init__(name, description, tag_keys)

    @property
    def info(self):
        return dict(super().info, boundaries=list(self._boundaries))

    def observe(self, value, tags=None):
        value = _number(value, "Histogram.observe's value")
        key = self._tags(tags)
        bounds = self._boundaries
        index = len(bounds)
        for i, b in enumerate(bounds):
            if value <= b:
                index = i
                break
        with _lock:
            entry = self._values.get(key)
            if entry is None:
                entry = self._values[key] = [[0] * (len(bounds) + 1), 0.0, 0]
            entry[0][index] += 1
            entry[1] += value
            entry[2] += 1
        _changed()

    def _entry(self):
        return (self._name, self.kind, self._description, self._tag_keys, self._boundaries,
                [(k, (list(v[0]), v[1], v[2])) for k, v in self._values.items()])


def _changed():
    _dirty[0] = True
    reporter = _attached[0]
    if reporter is None or reporter.closed:
        reporter = _attach()
        if reporter is None:
            return
    reporter.metrics_changed()


def _attach():
    """Hook this process's metrics into its runtime's reporter, once there is a runtime."""
    from ..core import runtime
    core = runtime.get_runtime()
    if core is None:
        return None
    reporter = core.reporter
    reporter.metrics_source = snapshot_if_changed
    _attached[0] = reporter
    return reporter


def snapshot_if_changed():
    """Every metric of this process (node_metrics.py's format), or None if nothing changed."""
    if not _dirty[0]:
        return None
    return snapshot()


def snapshot():
    with _lock:
        _dirty[0] = False
        return [m._entry() for m in _registry.values() if m._values]


__all__ = ["Counter", "Gauge", "Histogram"]
