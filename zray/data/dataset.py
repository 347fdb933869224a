"""Dataset: a lazy logical plan; transformations return new Datasets, consumption executes."""
import logging
import uuid

import zray

from . import aggregate as A
from ._internal import block as B
from ._internal import plan as P
from ._internal import transforms as T
from .compute import decode
from .context import DataContext
from .grouped_data import GroupedData
from .iterator import DataIterator, batches_from_bundles
from .schema import Schema

logger = logging.getLogger("zray.data")
_GET_S = 600
_REMOTE_ARG_NAMES = ("num_cpus", "num_gpus", "memory", "resources", "accelerator_type",
                     "scheduling_strategy", "runtime_env", "label_selector", "max_retries",
                     "retry_exceptions", "max_restarts", "max_task_retries")


def _fn_name(fn):
    return getattr(fn, "__name__", type(fn).__name__)


def _remote_args(num_cpus=None, num_gpus=None, memory=None, **rest):
    args = {k: v for k, v in rest.items() if v is not None}
    unknown = set(args) - set(_REMOTE_ARG_NAMES) - {"ray_remote_args_fn", "max_calls",
                                                    "fallback_strategy"}
    if unknown:
        raise TypeError(f"unexpected argument(s): {sorted(unknown)}")
    for k in ("ray_remote_args_fn", "max_calls", "fallback_strategy"):
        args.pop(k, None)
    if num_cpus is not None:
        args["num_cpus"] = num_cpus
    if num_gpus is not None:
        args["num_gpus"] = num_gpus
    if memory is not None:
        args["memory"] = memory
    return args


class Dataset:
    """A distributed collection of rows, stored as Arrow blocks in zray's object store."""

    def __init__(self, op, _stats=None):
        self._op = op
        self._last_stats = _stats
        self._uuid = uuid.uuid4().hex[:22]

    def _derive(self, op):
        return Dataset(op)

    # ---------------------------------------------------------------- execution
    def _execution(self, op=None):
        from ._internal.executor import Execution
        ex = Execution(P.plan(op if op is not None else self._op), DataContext.get_current())
        self._last_stats = ex.stats
        return ex

    def iter_internal_ref_bundles(self):
        return iter(self._execution())

    def _bundles(self):
        return self._execution().collect()

    # ---------------------------------------------------------------- transformations
    def _map(self, transform, fn, compute, concurrency, remote_args):
        comp = decode(fn, compute, concurrency)
        op = P.MapOp(inputs=(self._op,), transform=transform, compute=comp,
                     remote_args=remote_args)
        return self._derive(op)

    def map(self, fn, *, compute=None, fn_args=None, fn_kwargs=None, fn_constructor_args=None,
            fn_constructor_kwargs=None, num_cpus=None, num_gpus=None, memory=None,
            concurrency=None, **ray_remote_args):
        t = T.MapRows(f"Map({_fn_name(fn)})", fn, fn_args=fn_args, fn_kwargs=fn_kwargs,
                      fn_constructor_args=fn_constructor_args,
                      fn_constructor_kwargs=fn_constructor_kwargs)
        return self._map(t, fn, compute, concurrency,
                         _remote_args(num_cpus, num_gpus, memory, **ray_remote_args))

    def map_batches(self, fn, *, batch_size=None, compute=None, batch_format="default",
                    zero_copy_batch=True, fn_args=None, fn_kwargs=None, fn_constructor_args=None,
                    fn_constructor_kwargs=None, num_cpus=None, num_gpus=None, memory=None,
                    concurrency=None, udf_modifying_row_count=True, **ray_remote_args):
        B.check_batch_format(batch_format)
        if batch_size == "default":
            batch_size = 1024
        if batch_size == "auto":
            batch_size = None
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        if not isinstance(fn, type) and not callable(fn):
            raise TypeError(f"map_batches needs a function or a callable class, got {fn!r}")
        if fn_constructor_args is not None and not isinstance(fn, type):
            raise ValueError("fn_constructor_args can only be given for a callable class")
        t = T.MapBatches(f"MapBatches({_fn_name(fn)})", fn, batch_size=batch_size,
                         batch_format=batch_format, zero_copy_batch=zero_copy_batch,
                         row_preserving=not udf_modifying_row_count, fn_args=fn_args,
                         fn_kwargs=fn_kwargs, fn_constructor_args=fn_constructor_args,
                         fn_constructor_kwargs=fn_constructor_kwargs)
        return self._map(t, fn, compute, concurrency,
                         _remote_args(num_cpus, num_gpus, memory, **ray_remote_args))

    def flat_map(self, fn, *, compute=None, fn_args=None, fn_kwargs=None,
                 fn_constructor_args=None, fn_constructor_kwargs=None, num_cpus=None,
                 num_gpus=None, memory=None, concurrency=None, **ray_remote_args):
        t = T.FlatMap(f"FlatMap({_fn_name(fn)})", fn, fn_args=fn_args, fn_kwargs=fn_kwargs,
                      fn_constructor_args=fn_constructor_args,
                      fn_constructor_kwargs=fn_constructor_kwargs)
        return self._map(t, fn, compute, concurrency,
                         _remote_args(num_cpus, num_gpus, memory, **ray_remote_args))

    def filter(self, fn=None, expr=None, *, compute=None, fn_args=None, fn_kwargs=None,
               fn_constructor_args=None, fn_constructor_kwargs=None, num_cpus=None,
               num_gpus=None, memory=None, concurrency=None, **ray_remote_args):
        if (fn is None) == (expr is None):
            raise ValueError("filter() needs exactly one of fn and expr")
        if expr is not None:
            t = T.FilterExpr(expr)
            fn = t.apply
        else:
            t = T.Filter(f"Filter({_fn_name(fn)})", fn, fn_args=fn_args, fn_kwargs=fn_kwargs,
                         fn_constructor_args=fn_constructor_args,
                         fn_constructor_kwargs=fn_constructor_kwargs)
        return self._map(t, fn, compute, concurrency,
                         _remote_args(num_cpus, num_gpus, memory, **ray_remote_args))

    def add_column(self, col, fn, *, batch_format="pandas", compute=None, concurrency=None,
                   **ray_remote_args):
        B.check_batch_format(batch_format)
        t = T.AddColumn(col, fn, batch_format=batch_format)
        return self._map(t, fn, compute, concurrency, _remote_args(**ray_remote_args))

    def drop_columns(self, cols, *, compute=None, concurrency=None, **ray_remote_args):
        cols = [cols] if isinstance(cols, str) else list(cols)
        if len(set(cols)) != len(cols):
            raise ValueError(f"drop_columns got duplicate columns: {cols}")
        t = T.Project("MapBatches(drop_columns)", drop=cols)
        return self._map(t, None, compute, concurrency, _remote_args(**ray_remote_args))

    def select_columns(self, cols, *, compute=None, concurrency=None, **ray_remote_args):
        cols = [cols] if isinstance(cols, str) else list(cols)
        if len(set(cols)) != len(cols):
            raise ValueError(f"select_columns got duplicate columns: {cols}")
        t = T.Project("MapBatches(select_columns)", select=cols)
        return self._map(t, None, compute, concurrency, _remote_args(**ray_remote_args))

    def rename_columns(self, names, *, concurrency=None, **ray_remote_args):
        if isinstance(names, dict):
            t = T.Project("MapBatches(rename_columns)", rename=dict(names))
        else:
            t = _RenameAll(list(names))
        return self._map(t, None, None, concurrency, _remote_args(**ray_remote_args))

    def random_sample(self, fraction, *, seed=None):
        if not 0 <= fraction <= 1:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        return self._map(T.RandomSample(fraction, seed), None, None, None, {})

    def limit(self, limit):
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        return self._derive(P.Limit(inputs=(self._op,), n=int(limit)))

    # ---------------------------------------------------------------- all-to-all
    def _all_to_all(self, kind, display, **params):
        params["display"] = display
        return self._derive(P.AllToAll(inputs=(self._op,), kind=kind, params=params))

    def repartition(self, num_blocks=None, target_num_rows_per_block=None, *, strict=False,
                    shuffle=False, keys=None, sort=False):
        if target_num_rows_per_block is not None:
            if num_blocks is not None:
                raise ValueError("Pass num_blocks or target_num_rows_per_block, not both")
            rows = self.count()
            num_blocks = max(1, -(-rows // target_num_rows_per_block))
        if num_blocks is None or num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        if keys:
            return self.sort(keys).repartition(num_blocks)
        return self._all_to_all("repartition", f"Repartition(num_blocks={num_blocks})",
                                num_blocks=num_blocks, shuffle=shuffle)

    def random_shuffle(self, *, seed=None, num_blocks=None):
        return self._all_to_all("random_shuffle", "RandomShuffle", seed=seed,
                                num_blocks=num_blocks)

    def randomize_block_order(self, *, seed=None):
        return self._all_to_all("randomize_block_order", "RandomizeBlockOrder", seed=seed)

    def sort(self, key, descending=False, boundaries=None):
        keys = [key] if isinstance(key, str) else list(key)
        if not keys:
            raise ValueError("sort() needs a key")
        desc = list(descending) if isinstance(descending, (list, tuple)) else [descending] * len(keys)
        if len(desc) != len(keys):
            raise ValueError("descending must be a bool or one bool per key")
        return self._all_to_all("sort", f"Sort(key={keys})", keys=keys, descending=desc)

    def groupby(self, key, num_partitions=None):
        return GroupedData(self, key, num_partitions)

    def unique(self, column):
        rows = self.select_columns([column]).groupby(column).count().take_all()
        return [r[column] for r in rows]

    def aggregate(self, *aggs):
        rows = GroupedData(self, None).aggregate(*aggs).take_all()
        return rows[0] if rows else {a.name: None for a in aggs}

    def _global(self, cls, on, ignore_nulls, **kw):
        ons = on if isinstance(on, (list, tuple)) else [on]
        if on is None:
            ons = self.columns()
        aggs = [cls(on=o, ignore_nulls=ignore_nulls, **kw) for o in ons]
        result = self.aggregate(*aggs)
        if isinstance(on, (list, tuple)) or (on is None and len(ons) > 1):
            return result
        return result[aggs[0].name]

    def sum(self, on=None, ignore_nulls=True):
        return self._global(A.Sum, on, ignore_nulls)

    def min(self, on=None, ignore_nulls=True):
        return self._global(A.Min, on, ignore_nulls)

    def max(self, on=None, ignore_nulls=True):
        return self._global(A.Max, on, ignore_nulls)

    def mean(self, on=None, ignore_nulls=True):
        return self._global(A.Mean, on, ignore_nulls)

    def std(self, on=None, ddof=1, ignore_nulls=True):
        return self._global(A.Std, on, ignore_nulls, ddof=ddof)

    # ---------------------------------------------------------------- combining
    def union(self, *other):
        return self._derive(P.Union(inputs=(self._op,) + tuple(o._op for o in other)))

    def zip(self, *other):
        ds = self
        for o in other:
            ds = ds._derive(P.Zip(inputs=(ds._op, o._op)))
        return ds

    def join(self, ds, join_type, num_partitions, on=("id",), right_on=None, left_suffix=None,
             right_suffix=None, *, partition_size_hint=None, aggregator_ray_remote_args=None,
             validate_schemas=False):
        from ._internal.shuffle import _JOIN_TYPES
        if join_type not in _JOIN_TYPES:
            raise ValueError(f"join_type must be one of {sorted(_JOIN_TYPES)}, got {join_type!r}")
        if num_partitions < 1:
            raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
        on = (on,) if isinstance(on, str) else tuple(on)
        right_on = on if right_on is None else ((right_on,) if isinstance(right_on, str)
                                                else tuple(right_on))
        params = {"join_type": join_type, "num_partitions": num_partitions, "on": on,
                  "right_on": right_on, "left_suffix": left_suffix, "right_suffix": right_suffix}
        return self._derive(P.Join(inputs=(self._op, ds._op), params=params))

    # ---------------------------------------------------------------- splitting
    def split(self, n, *, equal=False, locality_hints=None):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        bundles = self._bundles()
        if equal:
            from ._internal.shuffle import split_rows
            total = sum(b.meta.num_rows for b in bundles)
            per = total // n
            bounds = [per * k for k in range(n + 1)]
            parts = split_rows(bundles, bounds) if bundles else []
            return [MaterializedDataset.from_bundles([p]) for p in parts] or \
                [MaterializedDataset.from_bundles([]) for _ in range(n)]
        total = sum(b.meta.num_rows for b in bundles)
        if len(bundles) >= n:
            # contiguous groups of whole blocks, balanced by rows
            out, group, acc, k = [], [], 0, 1
            for b in bundles:
                group.append(b)
                acc += b.meta.num_rows
                if acc >= total * k / n and len(out) < n - 1:
                    out.append(group)
                    group, k = [], k + 1
            out.append(group)
            while len(out) < n:
                out.append([])
            return [MaterializedDataset.from_bundles(g) for g in out]
        from ._internal.shuffle import split_rows
        bounds = [total * k // n for k in range(n + 1)]
        parts = split_rows(bundles, bounds) if bundles else []
        return [MaterializedDataset.from_bundles([p]) for p in parts] or \
            [MaterializedDataset.from_bundles([]) for _ in range(n)]

    def split_at_indices(self, indices):
        if list(indices) != sorted(indices) or any(i < 0 for i in indices):
            raise ValueError(f"indices must be sorted and >= 0, got {indices}")
        from ._internal.shuffle import split_rows
        bundles = self._bundles()
        total = sum(b.meta.num_rows for b in bundles)
        bounds = [0] + [min(i, total) for i in indices] + [total]
        return [MaterializedDataset.from_bundles([p]) for p in split_rows(bundles, bounds)]

    def split_proportionately(self, proportions):
        if sum(proportions) >= 1 or any(p <= 0 for p in proportions):
            raise ValueError("proportions must be > 0 and sum to less than 1")
        total = self.count()
        indices, acc = [], 0.0
        for p in proportions:
            acc += p
            indices.append(int(total * acc))
        return self.split_at_indices(indices)

    def train_test_split(self, test_size, *, shuffle=False, seed=None, stratify=None):
        ds = self.random_shuffle(seed=seed) if shuffle else self
        ds = ds.materialize()
        total = ds.count()
        if isinstance(test_size, float):
            if not 0 < test_size < 1:
                raise ValueError(f"test_size as a float must be in (0, 1), got {test_size}")
            n_test = int(total * test_size)
        else:
            if not 0 < test_size < total:
                raise ValueError(f"test_size must be in (0, {total}), got {test_size}")
            n_test = int(test_size)
        train, test = ds.split_at_indices([total - n_test])
        return train, test

    def streaming_split(self, n, *, equal=False, locality_hints=None, _data_context=None):
        from ._internal.split import streaming_split
        return streaming_split(self, n, equal, _data_context)

    # ---------------------------------------------------------------- consumption
    def iterator(self):
        return DataIterator(self.iter_internal_ref_bundles, name=f"Dataset {self._uuid}")

    def iter_batches(self, *, prefetch_batches=1, batch_size=256, batch_format="default",
                     drop_last=False, local_shuffle_buffer_size=None, local_shuffle_seed=None,
                     _collate_fn=None):
        return self.iterator().iter_batches(
            prefetch_batches=prefetch_batches, batch_size=batch_size, batch_format=batch_format,
            drop_last=drop_last, local_shuffle_buffer_size=local_shuffle_buffer_size,
            local_shuffle_seed=local_shuffle_seed, _collate_fn=_collate_fn)

    def iter_torch_batches(self, **kwargs):
        return self.iterator().iter_torch_batches(**kwargs)

    def iter_rows(self):
        return self.iterator().iter_rows()

    def take(self, limit=20):
        rows = []
        for row in self.limit(limit).iter_rows():
            rows.append(row)
        return rows

    def take_all(self, limit=None):
        rows = list(self.iter_rows())
        if limit is not None and len(rows) > limit:
            raise ValueError(f"The dataset has more than the given limit of {limit} rows")
        return rows

    def take_batch(self, batch_size=20, *, batch_format="default"):
        bundles = self.limit(batch_size)._bundles()
        batches = list(batches_from_bundles(iter(bundles), batch_size=batch_size,
                                            batch_format=batch_format))
        if not batches:
            raise ValueError("The dataset is empty")
        return batches[0]

    def show(self, limit=20):
        for row in self.take(limit):
            print(row)   # show() prints by contract, as Ray's does

    def count(self):
        known, op = P.count_plan(self._op)
        if known is not None:
            return known
        return sum(b.meta.num_rows for b in self._execution(op).collect())

    def schema(self, fetch_if_missing=True):
        base = self._known_schema()
        if base is None and fetch_if_missing:
            for bundle in self.limit(1)._bundles():
                if bundle.meta.schema is not None and len(bundle.meta.schema):
                    base = bundle.meta.schema
                    break
            if base is None:
                for bundle in self._bundles():
                    if bundle.meta.schema is not None and len(bundle.meta.schema):
                        base = bundle.meta.schema
                        break
        return Schema(base) if base is not None else None

    def _known_schema(self):
        op = self._op
        if isinstance(op, P.InputData):
            for b in op.bundles:
                if b.meta.schema is not None and len(b.meta.schema):
                    return b.meta.schema
        if isinstance(op, P.Read) and op.read_tasks and op.read_tasks[0].schema is not None:
            return op.read_tasks[0].schema
        return None

    def columns(self, fetch_if_missing=True):
        s = self.schema(fetch_if_missing)
        return s.names if s is not None else None

    def num_blocks(self):
        op = self._op
        if isinstance(op, P.InputData):
            return len(op.bundles)
        if isinstance(op, P.Read):
            return len(op.read_tasks)
        return len(self._bundles())

    def size_bytes(self):
        return sum(b.meta.size_bytes or 0 for b in self._bundles())

    def input_files(self):
        files = []
        for b in self._bundles():
            files.extend(f for f in b.meta.input_files if f not in files)
        return files

    def to_pandas(self, limit=None):
        import pandas as pd
        ds = self if limit is None else self.limit(limit)
        tables = [zray.get(b.ref, timeout=_GET_S) for b in ds._bundles()]
        if not tables:
            return pd.DataFrame()
        return B.to_pandas(B.concat(tables))

    def to_arrow_refs(self):
        return [b.ref for b in self._bundles()]

    def to_pandas_refs(self):
        from ._internal.shuffle import _to_pandas_task
        return [_to_pandas_task.remote(b.ref) for b in self._bundles()]

    def to_numpy_refs(self, *, column=None):
        from ._internal.shuffle import _to_numpy_task
        return [_to_numpy_task.remote(b.ref, column) for b in self._bundles()]

    def materialize(self):
        ex = self._execution()
        bundles = ex.collect()
        return MaterializedDataset.from_bundles(bundles, stats=ex.stats)

    def stats(self):
        if self._last_stats is None:
            self.materialize()
        return self._last_stats.to_string() if self._last_stats else ""

    # ---------------------------------------------------------------- writing
    def write_datasink(self, datasink, *, ray_remote_args=None, concurrency=None):
        datasink.on_write_start()
        ds = self._map(T.Write(datasink), None, None, concurrency, dict(ray_remote_args or {}))
        try:
            bundles = ds._bundles()
            tables = [zray.get(b.ref, timeout=_GET_S) for b in bundles]
        except Exception as exc:
            datasink.on_write_failed(exc)
            raise
        import pickle
        from .datasource import WriteResult
        result = WriteResult()
        for t in tables:
            for r in t.to_pylist():
                result.num_rows += r["num_rows"]
                result.size_bytes += r["size_bytes"]
                result.write_returns.append(pickle.loads(r["write_return"]))
        datasink.on_write_complete(result)
        self._last_stats = ds._last_stats
        return result

    def _write_files(self, path, fmt, filename_provider=None, ray_remote_args=None,
                     concurrency=None, **kwargs):
        from ._internal.file_io import FileDatasink
        sink = FileDatasink(path, fmt, self._uuid, kwargs, filename_provider)
        self.write_datasink(sink, ray_remote_args=ray_remote_args, concurrency=concurrency)

    def write_parquet(self, path, *, partition_cols=None, filesystem=None, try_create_dir=True,
                      arrow_open_stream_args=None, filename_provider=None,
                      arrow_parquet_args_fn=None, min_rows_per_file=None, ray_remote_args=None,
                      concurrency=None, num_rows_per_file=None, **arrow_parquet_args):
        if arrow_parquet_args_fn is not None:
            arrow_parquet_args = {**arrow_parquet_args_fn(), **arrow_parquet_args}
        self._write_files(path, "parquet", filename_provider, ray_remote_args, concurrency,
                          **arrow_parquet_args)

    def write_csv(self, path, *, filesystem=None, try_create_dir=True,
                  arrow_open_stream_args=None, filename_provider=None, arrow_csv_args_fn=None,
                  min_rows_per_file=None, ray_remote_args=None, concurrency=None,
                  num_rows_per_file=None, **arrow_csv_args):
        self._write_files(path, "csv", filename_provider, ray_remote_args, concurrency,
                          **arrow_csv_args)

    def write_json(self, path, *, filesystem=None, try_create_dir=True,
                   arrow_open_stream_args=None, filename_provider=None, pandas_json_args_fn=None,
                   min_rows_per_file=None, ray_remote_args=None, concurrency=None,
                   num_rows_per_file=None, **pandas_json_args):
        self._write_files(path, "json", filename_provider, ray_remote_args, concurrency,
                          **pandas_json_args)

    def write_numpy(self, path, *, column, filesystem=None, try_create_dir=True,
                    arrow_open_stream_args=None, filename_provider=None, min_rows_per_file=None,
                    ray_remote_args=None, concurrency=None, num_rows_per_file=None):
        self._write_files(path, "npy", filename_provider, ray_remote_args, concurrency,
                          column=column)

    # ---------------------------------------------------------------- display
    def __repr__(self):
        return _plan_repr(self._op, self)

    def __iter__(self):
        raise TypeError("`Dataset` objects aren't iterable. To iterate records, call "
                        "`ds.iter_rows()` or `ds.iter_batches()`.")


class _RenameAll(T.Transform):
    row_preserving = True
    name = "MapBatches(rename_columns)"

    def __init__(self, names):
        self.names = names

    def apply(self, blocks, ctx):
        for table in blocks:
            yield table.rename_columns(self.names)


class MaterializedDataset(Dataset):
    """A Dataset whose blocks are in the store (what materialize() and from_* return)."""

    @classmethod
    def from_bundles(cls, bundles, stats=None):
        from ._internal.executor import RefBundle
        plain = tuple(RefBundle(b.ref, b.meta) for b in bundles)
        return cls(P.InputData(bundles=plain), _stats=stats)

    def _derive(self, op):
        return Dataset(op)

    def __repr__(self):
        op = self._op
        rows = op.known_rows()
        schema = self._known_schema()
        s = Schema(schema).short() if schema is not None else "Unknown schema"
        return f"MaterializedDataset(num_blocks={len(op.bundles)}, num_rows={rows}, schema={s})"


def _source_repr(op, ds):
    rows = op.known_rows() if hasattr(op, "known_rows") else None
    schema = None
    if isinstance(op, P.InputData):
        for b in op.bundles:
            if b.meta.schema is not None and len(b.meta.schema):
                schema = b.meta.schema
                break
    elif isinstance(op, P.Read) and op.read_tasks:
        schema = op.read_tasks[0].schema
    s = Schema(schema).short() if schema is not None else "Unknown schema"
    return f"Dataset(num_rows={'?' if rows is None else rows}, schema={s})"


def _plan_repr(op, ds):
    lines = []
    depth = 0
    while op.inputs and len(op.inputs) == 1:
        lines.append(("   " * (depth - 1) + "+- " if depth else "") + op.name)
        op = op.inputs[0]
        depth += 1
    if op.inputs:
        lines.append(("   " * (depth - 1) + "+- " if depth else "") + op.name)
        for child in op.inputs:
            sub = _plan_repr(child, ds).splitlines()
            pad = "   " * depth
            lines.append(pad + "+- " + sub[0])
            lines.extend(pad + "   " + s for s in sub[1:])
        return "\n".join(lines)
    lines.append(("   " * (depth - 1) + "+- " if depth else "") + _source_repr(op, ds))
    return "\n".join(lines)
