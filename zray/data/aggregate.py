"""Aggregations, with Ray's names: AggregateFn (user-defined) and the built-ins Count, Sum, Min,
Max, Mean, Std.

Built-ins run vectorized in three steps over pyarrow group_by: `partial` per block (one row per
key), `combine` over the partials of one key range, `finalize` to the result column. Any
AggregateFn can also run the generic way (init/accumulate/merge/finalize per group in Python),
which is what user AggregateFns do.
"""
import numpy as np


class AggregateFn:
    """A user aggregation: init(key) -> acc; accumulate_row(acc, row) or
    accumulate_block(acc, block) -> acc; merge(a, b) -> acc; finalize(acc) -> value."""

    def __init__(self, init, merge, accumulate_row=None, accumulate_block=None, finalize=None,
                 name=None):
        if (accumulate_row is None) == (accumulate_block is None):
            raise ValueError("AggregateFn needs exactly one of accumulate_row and accumulate_block")
        self.init = init
        self.merge = merge
        self.accumulate_row = accumulate_row
        self.accumulate_block = accumulate_block
        self.finalize = finalize or (lambda a: a)
        self.name = name or "aggregate"

    # the generic path
    def accumulate_table(self, acc, table):
        if self.accumulate_block is not None:
            return self.accumulate_block(acc, table)
        from ._internal.block import iter_rows
        for row in iter_rows(table):
            acc = self.accumulate_row(acc, row)
        return acc

    vectorized = False


class _Builtin(AggregateFn):
    vectorized = True
    fn_name = ""

    def __init__(self, on=None, ignore_nulls=True, alias_name=None):
        self.on = on
        self.ignore_nulls = ignore_nulls
        self.name = alias_name or f"{self.fn_name}({on or ''})"
        self.accumulate_row = None
        self.accumulate_block = self._acc_block
        self.finalize = self._final

    # vectorized: lists of (input column, pyarrow aggregation, output column)
    def partial_specs(self, i):
        raise NotImplementedError

    def combine_specs(self, i):
        return [(name, "sum", name) for _, _, name in self.partial_specs(i)]

    def finish(self, cols, i):
        raise NotImplementedError

    # generic path (used when mixed with user AggregateFns)
    def init(self, key):
        return None

    def _acc_block(self, acc, table):
        import pyarrow as pa
        part = _partial_global(table, [self], prefix=0)
        return part if acc is None else pa.concat_tables([acc, part])

    def merge(self, a, b):
        import pyarrow as pa
        if a is None:
            return b
        if b is None:
            return a
        return pa.concat_tables([a, b])

    def _final(self, acc):
        if acc is None:
            return None
        combined = _combine_global(acc, [self])
        return _finish_global(combined, [self])[self.name]


class Count(_Builtin):
    fn_name = "count"

    def __init__(self, on=None, ignore_nulls=False, alias_name=None):
        super().__init__(on, ignore_nulls, alias_name)

    def partial_specs(self, i):
        if self.on is None:
            return [([], "count_all", f"__c{i}")]
        return [(self.on, "count", f"__c{i}")]

    def finish(self, cols, i):
        return cols[f"__c{i}"]


class Sum(_Builtin):
    fn_name = "sum"

    def partial_specs(self, i):
        return [(self.on, "sum", f"__s{i}")]

    def finish(self, cols, i):
        return cols[f"__s{i}"]


class Min(_Builtin):
    fn_name = "min"

    def partial_specs(self, i):
        return [(self.on, "min", f"__m{i}")]

    def combine_specs(self, i):
        return [(f"__m{i}", "min", f"__m{i}")]

    def finish(self, cols, i):
        return cols[f"__m{i}"]


class Max(Min):
    fn_name = "max"

    def partial_specs(self, i):
        return [(self.on, "max", f"__m{i}")]

    def combine_specs(self, i):
        return [(f"__m{i}", "max", f"__m{i}")]


class Mean(_Builtin):
    fn_name = "mean"

    def partial_specs(self, i):
        return [(self.on, "sum", f"__s{i}"), (self.on, "count", f"__n{i}")]

    def finish(self, cols, i):
        n = cols[f"__n{i}"].astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, cols[f"__s{i}"] / np.where(n > 0, n, 1), np.nan)


class Std(_Builtin):
    """Sample standard deviation (ddof=1 by default), merged with Chan's formula:
    M2 = sum(M2_i) + sum(n_i * mean_i^2) - (sum(s_i))^2 / N."""
    fn_name = "std"

    def __init__(self, on=None, ddof=1, ignore_nulls=True, alias_name=None):
        super().__init__(on, ignore_nulls, alias_name)
        self.ddof = ddof

    def partial_specs(self, i):
        return [(self.on, "sum", f"__s{i}"), (self.on, "count", f"__n{i}"),
                (self.on, "variance", f"__v{i}")]

    def combine_specs(self, i):
        return [(f"__s{i}", "sum", f"__s{i}"), (f"__n{i}", "sum", f"__n{i}"),
                (f"__M{i}", "sum", f"__M{i}"), (f"__q{i}", "sum", f"__q{i}")]

    def finish(self, cols, i):
        n = cols[f"__n{i}"].astype(float)
        s = cols[f"__s{i}"].astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            m2 = cols[f"__M{i}"] + cols[f"__q{i}"] - np.where(n > 0, s * s / np.where(n > 0, n, 1), 0)
            return np.sqrt(np.maximum(m2, 0) / (n - self.ddof))


class AbsMax(Max):
    fn_name = "abs_max"


def _to_partial_extras(table, aggs):
    """Std's partial needs M2 and n*mean^2 as summable columns; add them."""
    import pyarrow as pa
    for i, agg in enumerate(aggs):
        if isinstance(agg, Std):
            n = table.column(f"__n{i}").to_numpy(zero_copy_only=False).astype(float)
            s = table.column(f"__s{i}").to_numpy(zero_copy_only=False).astype(float)
            v = table.column(f"__v{i}").to_numpy(zero_copy_only=False).astype(float)
            v = np.nan_to_num(v)
            mean = np.where(n > 0, s / np.where(n > 0, n, 1), 0)
            table = table.drop_columns([f"__v{i}"])
            table = table.append_column(f"__M{i}", pa.array(v * n))
            table = table.append_column(f"__q{i}", pa.array(n * mean * mean))
    return table


def _prepare_input(table, aggs):
    """Inputs of the built-ins: AbsMax aggregates |x|."""
    import pyarrow.compute as pc
    for agg in aggs:
        if isinstance(agg, AbsMax) and agg.on in table.column_names:
            idx = table.column_names.index(agg.on)
            table = table.set_column(idx, agg.on, pc.abs(table.column(agg.on)))
    return table


def _partial_global(table, aggs, prefix=None):
    """One partial row for a whole table (no key)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    table = _prepare_input(table, aggs)
    cols = {}
    for i, agg in enumerate(aggs):
        for col, fn, out in agg.partial_specs(i):
            if fn == "count_all":
                cols[out] = [table.num_rows]
            elif fn == "count":
                cols[out] = [pc.count(table.column(col)).as_py()]
            elif fn == "variance":
                v = pc.variance(table.column(col), ddof=0).as_py() if table.num_rows else None
                cols[out] = [v]
            else:
                val = getattr(pc, fn)(table.column(col)).as_py() if table.num_rows else None
                cols[out] = [val]
    return _to_partial_extras(pa.table(cols), aggs)


def _grouped(table, key, wanted):
    """group_by(key) computing each (column, function, output name) of `wanted`; the result's
    columns are the key columns then the outputs (found by pyarrow's "<col>_<fn>" names, so the
    result does not depend on pyarrow's column order)."""
    import pyarrow as pa
    unique = []
    for col, fn, _ in wanted:
        if (col if col else None, fn) not in [(c if c else None, f) for c, f in unique]:
            unique.append((col, fn))
    specs = [(c, f, _variance_opts()) if f == "variance" else (c, f) for c, f in unique]
    grouped = table.group_by(key, use_threads=False).aggregate(specs)
    cols = [grouped.column(k) for k in key]
    names = list(key)
    for col, fn, out in wanted:
        cols.append(grouped.column("count_all" if fn == "count_all" else f"{col}_{fn}"))
        names.append(out)
    return pa.Table.from_arrays(cols, names=names)


def partial(table, key, aggs):
    """Per-key partial aggregates of one block (a table with the key columns and __ columns)."""
    if not key:
        return _partial_global(table, aggs)
    table = _prepare_input(table, aggs)
    wanted = [spec for i, agg in enumerate(aggs) for spec in agg.partial_specs(i)]
    return _to_partial_extras(_grouped(table, key, wanted), aggs)


def _variance_opts():
    import pyarrow.compute as pc
    return pc.VarianceOptions(ddof=0)


def _combine_global(parts, aggs):
    import pyarrow as pa
    import pyarrow.compute as pc
    cols = {}
    for i, agg in enumerate(aggs):
        for col, fn, out in agg.combine_specs(i):
            c = parts.column(col)
            cols[out] = [getattr(pc, fn)(c).as_py() if len(c) else None]
    return pa.table(cols)


def combine(parts, key, aggs):
    """Merge partials of the same keys."""
    if not key:
        return _combine_global(parts, aggs)
    wanted = [spec for i, agg in enumerate(aggs) for spec in agg.combine_specs(i)]
    return _grouped(parts, key, wanted)


def _finish_global(combined, aggs):
    cols = {n: np.asarray(combined.column(n).to_numpy(zero_copy_only=False))
            for n in combined.column_names}
    return {agg.name: _scalar(agg.finish(cols, i)) for i, agg in enumerate(aggs)}


def _scalar(arr):
    v = arr[0] if len(arr) else None
    if v is None:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v


def finish(combined, key, aggs):
    """The result table: key columns, then one column per aggregation, sorted by key."""
    from ._internal.block import column_from_numpy
    cols = {n: combined.column(n).to_numpy(zero_copy_only=False)
            for n in combined.column_names if n.startswith("__")}
    out = combined.select(list(key))
    for i, agg in enumerate(aggs):
        values = agg.finish(cols, i)
        arr, _ = column_from_numpy(np.asarray(values))
        out = out.append_column(agg.name, arr)
    if key and out.num_rows:
        out = out.sort_by([(k, "ascending") for k in key])
    return out
