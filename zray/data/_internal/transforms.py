"""What runs inside a task or an actor: a fused chain of block transforms.

A chain turns an input (a block, or a ReadTask that yields blocks) into one output block. Each
transform is a small object with `setup()` (instantiate a callable class once per actor) and
`apply(blocks, ctx)` (a generator over blocks). A UDF that raises becomes a UserCodeException that
names the operator and shows the first rows of the failing batch.
"""
import time
from dataclasses import dataclass

import numpy as np

from . import block as B
from .errors import UserCodeException


@dataclass
class TaskContext:
    """Given to transforms (and to Datasink.write): which input of the operator this is."""
    task_idx: int
    op_name: str = ""


def _udf_error(op_name, exc, table):
    sample = B.sample_repr(table) if table is not None else "<unavailable>"
    return UserCodeException(
        f"UDF failed to process a data block in operator {op_name}: "
        f"{type(exc).__name__}: {exc}\nFirst rows of the failing batch: {sample}")


class Transform:
    name = "Transform"
    row_preserving = False
    is_class = False

    def setup(self):
        pass

    def apply(self, blocks, ctx):
        raise NotImplementedError


class _UDF(Transform):
    """A user function or callable class with its arguments."""

    def __init__(self, name, fn, fn_args=None, fn_kwargs=None, fn_constructor_args=None,
                 fn_constructor_kwargs=None):
        self.name = name
        self.fn = fn
        self.fn_args = tuple(fn_args or ())
        self.fn_kwargs = dict(fn_kwargs or {})
        self.ctor_args = tuple(fn_constructor_args or ())
        self.ctor_kwargs = dict(fn_constructor_kwargs or {})
        self.is_class = isinstance(fn, type)
        self._callable = None if self.is_class else fn

    def setup(self):
        if self.is_class and self._callable is None:
            try:
                self._callable = self.fn(*self.ctor_args, **self.ctor_kwargs)
            except Exception as exc:
                raise UserCodeException(
                    f"The constructor of {self.fn.__name__} (operator {self.name}) raised "
                    f"{type(exc).__name__}: {exc}") from exc

    def call(self, value, table):
        if self._callable is None:
            self.setup()
        try:
            return self._callable(value, *self.fn_args, **self.fn_kwargs)
        except UserCodeException:
            raise
        except Exception as exc:
            raise _udf_error(self.name, exc, table) from exc

    def __getstate__(self):
        state = dict(self.__dict__)
        if self.is_class:
            state["_callable"] = None
        return state


class MapBatches(_UDF):
    def __init__(self, name, fn, batch_size=None, batch_format="default", zero_copy_batch=True,
                 row_preserving=False, **udf):
        super().__init__(name, fn, **udf)
        self.batch_size = batch_size
        self.batch_format = batch_format
        self.zero_copy_batch = zero_copy_batch
        self.row_preserving = row_preserving

    def apply(self, blocks, ctx):
        for table in blocks:
            n = table.num_rows
            size = self.batch_size or n or 1
            for start in range(0, max(n, 1), size):
                piece = table if (start == 0 and size >= n) else table.slice(start, size)
                batch = B.to_batch(piece, self.batch_format)
                if not self.zero_copy_batch and isinstance(batch, dict):
                    batch = {k: np.array(v) for k, v in batch.items()}
                out = self.call(batch, piece)
                if out is None:
                    raise _udf_error(self.name, TypeError(
                        "the function returned None; it must return a batch"), piece)
                if hasattr(out, "__next__") or (hasattr(out, "__iter__") and
                                                not isinstance(out, dict) and
                                                not hasattr(out, "columns")):
                    for o in out:
                        yield self._to_block(o, piece)
                else:
                    yield self._to_block(out, piece)

    def _to_block(self, out, piece):
        try:
            return B.block_from_batch(out)
        except ValueError as exc:
            raise _udf_error(self.name, exc, piece) from exc


class MapRows(_UDF):
    row_preserving = True

    def apply(self, blocks, ctx):
        for table in blocks:
            rows = [self.call(row, table) for row in B.iter_rows(table)]
            for r in rows:
                if not isinstance(r, dict):
                    raise _udf_error(self.name, TypeError(
                        f"map() functions must return a dict, got {type(r).__name__}"), table)
            yield B.block_from_rows(rows) if rows else table.slice(0, 0)


class FlatMap(_UDF):
    def apply(self, blocks, ctx):
        for table in blocks:
            rows = []
            for row in B.iter_rows(table):
                rows.extend(self.call(row, table))
            yield B.block_from_rows(rows) if rows else table.slice(0, 0)


class Filter(_UDF):
    def apply(self, blocks, ctx):
        import pyarrow as pa
        for table in blocks:
            mask = [bool(self.call(row, table)) for row in B.iter_rows(table)]
            yield table.filter(pa.array(mask, type=pa.bool_())) if mask else table


class FilterExpr(Transform):
    """filter(expr="col > 3"): a pandas-style expression evaluated per block."""

    def __init__(self, expr):
        self.name = f"Filter({expr})"
        self.expr = expr

    def apply(self, blocks, ctx):
        import pyarrow as pa
        for table in blocks:
            try:
                mask = B.to_pandas(table).eval(self.expr)
            except Exception as exc:
                raise _udf_error(self.name, exc, table) from exc
            yield table.filter(pa.array(np.asarray(mask, dtype=bool)))


class Project(Transform):
    row_preserving = True

    def __init__(self, name, select=None, drop=None, rename=None):
        self.name = name
        self.select = select
        self.drop = drop
        self.rename = rename

    def apply(self, blocks, ctx):
        for table in blocks:
            if self.select is not None:
                missing = [c for c in self.select if c not in table.column_names]
                if missing:
                    raise ValueError(f"{self.name}: no column(s) {missing} in {table.column_names}")
                table = table.select(self.select)
            if self.drop is not None:
                missing = [c for c in self.drop if c not in table.column_names]
                if missing:
                    raise ValueError(f"{self.name}: no column(s) {missing} in {table.column_names}")
                table = table.drop_columns(self.drop)
            if self.rename is not None:
                table = table.rename_columns([self.rename.get(c, c) for c in table.column_names])
            yield table


class AddColumn(_UDF):
    row_preserving = True

    def __init__(self, col, fn, batch_format="pandas", **udf):
        super().__init__("MapBatches(add_column)", fn, **udf)
        self.col = col
        self.batch_format = batch_format

    def apply(self, blocks, ctx):
        for table in blocks:
            batch = B.to_batch(table, self.batch_format)
            values = self.call(batch, table)
            if hasattr(values, "to_numpy") and not hasattr(values, "chunks"):
                values = values.to_numpy()
            arr, meta = ((values, None) if hasattr(values, "type") else
                         B.column_from_numpy(np.asarray(values)) if not isinstance(values, list)
                         else B.column_from_list(values))
            import pyarrow as pa
            if self.col in table.column_names:
                table = table.drop_columns([self.col])
            yield table.append_column(pa.field(self.col, arr.type, metadata=meta), arr)


class RandomSample(Transform):
    row_preserving = False

    def __init__(self, fraction, seed):
        self.name = f"RandomSample({fraction})"
        self.fraction = fraction
        self.seed = seed

    def apply(self, blocks, ctx):
        import pyarrow as pa
        seed = None if self.seed is None else (self.seed, ctx.task_idx)
        rng = np.random.default_rng(seed)
        for table in blocks:
            yield table.filter(pa.array(rng.random(table.num_rows) < self.fraction))


class Write(Transform):
    """The last transform of a write: the datasink writes the blocks; one row of stats out."""

    def __init__(self, datasink):
        self.name = f"Write({datasink.get_name()})"
        self.datasink = datasink

    def apply(self, blocks, ctx):
        import pyarrow as pa
        blocks = list(blocks)
        rows = sum(b.num_rows for b in blocks)
        nbytes = sum(b.nbytes for b in blocks)
        result = self.datasink.write(blocks, ctx)
        import pickle
        yield pa.table({"num_rows": [rows], "size_bytes": [nbytes],
                        "write_return": [pickle.dumps(result)]})


def _normalize_read_output(out):
    if out is None:
        return
    if isinstance(out, (list, tuple)) or hasattr(out, "__next__"):
        for item in out:
            yield B.block_from_batch(item)
    else:
        yield B.block_from_batch(out)


def run_chain(transforms, item, task_idx, op_name):
    """Apply `transforms` to `item` (a block or a ReadTask); (block, BlockMetadata)."""
    start, cpu0 = time.perf_counter(), time.process_time()
    ctx = TaskContext(task_idx, op_name)
    if hasattr(item, "num_rows") and hasattr(item, "schema"):
        blocks = iter((item,))
    else:
        blocks = _normalize_read_output(item())
    for t in transforms:
        blocks = t.apply(blocks, ctx)
    out = B.compact(B.concat(list(blocks)))
    stats = (time.perf_counter() - start, time.process_time() - cpu0)
    return out, B.metadata_of(out, exec_stats=stats)
