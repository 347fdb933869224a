"""GroupedData: what Dataset.groupby returns."""
from . import aggregate as A
from ._internal import plan as P


class GroupedData:
    def __init__(self, dataset, key, num_partitions=None):
        self._dataset = dataset
        self._key = [] if key is None else ([key] if isinstance(key, str) else list(key))
        self._num_partitions = num_partitions

    def __repr__(self):
        return f"GroupedData(dataset={self._dataset!r}, key={self._key!r})"

    def aggregate(self, *aggs):
        if not aggs:
            raise ValueError("aggregate() needs at least one AggregateFn")
        names = ", ".join(a.name for a in aggs)
        op = P.AllToAll(inputs=(self._dataset._op,), kind="aggregate",
                        params={"keys": self._key, "aggs": list(aggs),
                                "num_partitions": self._num_partitions,
                                "display": f"Aggregate({names})"})
        return self._dataset._derive(op)

    def _simple(self, cls, on, ignore_nulls, **kw):
        ons = on if isinstance(on, (list, tuple)) else [on]
        return self.aggregate(*[cls(on=o, ignore_nulls=ignore_nulls, **kw) for o in ons])

    def count(self):
        return self.aggregate(A.Count())

    def sum(self, on=None, ignore_nulls=True):
        return self._simple(A.Sum, on, ignore_nulls)

    def min(self, on=None, ignore_nulls=True):
        return self._simple(A.Min, on, ignore_nulls)

    def max(self, on=None, ignore_nulls=True):
        return self._simple(A.Max, on, ignore_nulls)

    def mean(self, on=None, ignore_nulls=True):
        return self._simple(A.Mean, on, ignore_nulls)

    def std(self, on=None, ddof=1, ignore_nulls=True):
        return self._simple(A.Std, on, ignore_nulls, ddof=ddof)

    def map_groups(self, fn, *, compute=None, batch_format="default", fn_args=None,
                   fn_kwargs=None, fn_constructor_args=None, fn_constructor_kwargs=None,
                   num_cpus=None, num_gpus=None, concurrency=None, **ray_remote_args):
        from ._internal.block import check_batch_format
        check_batch_format(batch_format)
        if isinstance(fn, type):
            fn = _ClassCaller(fn, fn_constructor_args, fn_constructor_kwargs)
        op = P.AllToAll(inputs=(self._dataset._op,), kind="map_groups",
                        params={"keys": self._key, "fn": fn, "batch_format": batch_format,
                                "fn_args": fn_args, "fn_kwargs": fn_kwargs,
                                "num_partitions": self._num_partitions,
                                "display": f"MapGroups({getattr(fn, '__name__', 'fn')})"})
        return self._dataset._derive(op)


class _ClassCaller:
    """A callable class for map_groups, constructed once per reduce task."""

    def __init__(self, cls, args, kwargs):
        self.cls, self.args, self.kwargs = cls, tuple(args or ()), dict(kwargs or {})
        self.__name__ = cls.__name__
        self._obj = None

    def __call__(self, batch, *a, **k):
        if self._obj is None:
            self._obj = self.cls(*self.args, **self.kwargs)
        return self._obj(batch, *a, **k)

    def __getstate__(self):
        return {"cls": self.cls, "args": self.args, "kwargs": self.kwargs,
                "__name__": self.__name__, "_obj": None}
