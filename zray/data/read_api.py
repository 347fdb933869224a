"""Creating Datasets: range, from_* (in-memory data, put in the store now) and read_* (lazy reads
that run as tasks)."""
import builtins
import math

import numpy as np

import zray

from . import datasource as D
from ._internal import block as B
from ._internal import plan as P
from ._internal.file_io import FileDatasource
from .context import DataContext
from .dataset import Dataset, MaterializedDataset


def _cpus():
    from ._internal.executor import ensure_initialized
    ensure_initialized()
    return int(zray.cluster_resources().get("CPU", 1)) or 1


def _num_blocks(rows, nbytes, override_num_blocks, parallelism):
    """How many blocks a source makes: the user's number, else enough that no block exceeds
    target_max_block_size and every CPU gets work (2 per CPU), never more than rows."""
    if override_num_blocks is not None:
        if override_num_blocks < 1:
            raise ValueError(f"override_num_blocks must be >= 1, got {override_num_blocks}")
        n = override_num_blocks
    elif parallelism is not None and parallelism > 0:
        n = parallelism
    else:
        ctx = DataContext.get_current()
        minimum = ctx.read_op_min_num_blocks or 2 * _cpus()
        n = builtins.max(minimum, math.ceil((nbytes or 0) / ctx.target_max_block_size))
    if rows is not None:
        n = builtins.min(n, builtins.max(rows, 1))
    return builtins.max(1, n)


# --------------------------------------------------------------------------- synthetic

class _RangeRead:
    def __init__(self, start, stop, column, shape):
        self.start, self.stop, self.column, self.shape = start, stop, column, shape

    def __call__(self):
        ids = np.arange(self.start, self.stop, dtype=np.int64)
        if self.shape is None:
            import pyarrow as pa
            return [pa.table({self.column: ids})]
        data = np.broadcast_to(ids.reshape((-1,) + (1,) * len(self.shape)),
                               (len(ids),) + tuple(self.shape))
        return [B.table_from_columns({self.column: np.ascontiguousarray(data)})]


class RangeDatasource(D.Datasource):
    def __init__(self, n, column="id", shape=None):
        self.n, self.column, self.shape = n, column, shape

    def get_name(self):
        return "Range" if self.shape is None else "RangeTensor"

    def estimate_inmemory_data_size(self):
        return 8 * self.n * int(np.prod(self.shape or (1,)))

    def get_read_tasks(self, parallelism, per_task_row_limit=None):
        import pyarrow as pa
        if self.shape is None:
            schema = pa.schema([(self.column, pa.int64())])
        else:
            schema = pa.schema([pa.field(self.column, pa.fixed_shape_tensor(pa.int64(), self.shape))])
        tasks = []
        n = builtins.max(1, parallelism)
        per_row = 8 * int(np.prod(self.shape or (1,)))
        for i in builtins.range(n):
            lo, hi = self.n * i // n, self.n * (i + 1) // n
            if hi <= lo and self.n:
                continue
            meta = B.BlockMetadata(hi - lo, (hi - lo) * per_row, schema)
            tasks.append(D.ReadTask(_RangeRead(lo, hi, self.column, self.shape), meta, schema))
        return tasks


def range(n, *, parallelism=-1, concurrency=None, override_num_blocks=None):
    """A Dataset of the integers 0..n-1 in the column "id"."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    source = RangeDatasource(n)
    return read_datasource(source, parallelism=parallelism, concurrency=concurrency,
                           override_num_blocks=override_num_blocks)


def range_tensor(n, *, shape=(1,), parallelism=-1, concurrency=None, override_num_blocks=None):
    source = RangeDatasource(n, "data", tuple(shape))
    return read_datasource(source, parallelism=parallelism, concurrency=concurrency,
                           override_num_blocks=override_num_blocks)


def read_datasource(datasource, *, parallelism=-1, num_cpus=None, num_gpus=None, memory=None,
                    ray_remote_args=None, concurrency=None, override_num_blocks=None,
                    **read_args):
    size = datasource.estimate_inmemory_data_size()
    rows = getattr(datasource, "n", None)
    n = _num_blocks(rows, size, override_num_blocks, parallelism)
    tasks = datasource.get_read_tasks(n, **read_args)
    args = dict(ray_remote_args or {})
    for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus), ("memory", memory)):
        if v is not None:
            args[k] = v
    op = P.Read(datasource=datasource, read_tasks=tuple(tasks), remote_args=args)
    return Dataset(op)


# --------------------------------------------------------------------------- in memory

def _from_tables(tables):
    from ._internal.executor import RefBundle, ensure_initialized
    ensure_initialized()
    bundles = []
    for t in tables:
        t = B.compact(t.replace_schema_metadata(None))
        bundles.append(RefBundle(zray.put(t), B.metadata_of(t)))
    return MaterializedDataset.from_bundles(bundles)


def _split_table(table, n):
    n = builtins.max(1, builtins.min(n, table.num_rows or 1))
    return [table.slice(table.num_rows * i // n, table.num_rows * (i + 1) // n - table.num_rows * i // n)
            for i in builtins.range(n)]


def _in_memory_blocks(table, override_num_blocks, parallelism):
    """Blocks for data already in memory: the user's number, else the read rule, but no block
    under target_min_block_size (small data stays one block: one task, not 2 per CPU)."""
    n = _num_blocks(table.num_rows, table.nbytes, override_num_blocks, parallelism)
    if override_num_blocks is None and not (parallelism and parallelism > 0):
        floor = DataContext.get_current().target_min_block_size
        n = builtins.min(n, builtins.max(1, table.nbytes // floor))
    return n


def from_items(items, *, parallelism=-1, override_num_blocks=None):
    """A Dataset of Python objects: dicts become rows, anything else the column "item"."""
    items = list(items)
    if items and not isinstance(items[0], dict):
        items = [{"item": x} for x in items]
    if not items:
        return _from_tables([B.empty_table()])
    table = B.block_from_rows(items)
    return _from_tables(_split_table(table, _in_memory_blocks(table, override_num_blocks,
                                                              parallelism)))


def from_arrow(tables, *, override_num_blocks=None):
    import pyarrow as pa
    if isinstance(tables, (pa.Table, bytes)):
        tables = [tables]
    tables = [pa.ipc.open_stream(t).read_all() if isinstance(t, bytes) else t for t in tables]
    if override_num_blocks is not None:
        tables = _split_table(B.concat(tables), override_num_blocks)
    return _from_tables(tables)


def from_pandas(dfs, override_num_blocks=None):
    if not isinstance(dfs, (list, tuple)):
        dfs = [dfs]
    tables = [B.block_from_batch(df) for df in dfs]
    if override_num_blocks is not None:
        tables = _split_table(B.concat(tables), override_num_blocks)
    return _from_tables(tables)


def from_numpy(ndarrays):
    """A Dataset with the column "data": one block per array, a row per first-axis entry."""
    if isinstance(ndarrays, np.ndarray):
        ndarrays = [ndarrays]
    return _from_tables([B.table_from_columns({"data": a}) for a in ndarrays])


def from_arrow_refs(refs):
    refs = refs if isinstance(refs, list) else [refs]
    return from_arrow(zray.get(refs, timeout=600))


def from_pandas_refs(refs):
    refs = refs if isinstance(refs, list) else [refs]
    return from_pandas(zray.get(refs, timeout=600))


def from_numpy_refs(refs):
    refs = refs if isinstance(refs, list) else [refs]
    return from_numpy(zray.get(refs, timeout=600))


def from_torch(dataset, local_read=False):
    """A Dataset of a torch map-style or iterable dataset's items, in the column "item"."""
    return from_items(list(dataset))


# --------------------------------------------------------------------------- files

def _read(fmt, paths, *, override_num_blocks=None, parallelism=-1, include_paths=False,
          file_extensions=None, ignore_missing_paths=False, ray_remote_args=None,
          num_cpus=None, num_gpus=None, memory=None, concurrency=None, opts=None):
    source = FileDatasource(fmt, paths, opts, include_paths, file_extensions,
                            ignore_missing_paths)
    n = override_num_blocks
    if n is None:
        n = parallelism if parallelism and parallelism > 0 else len(source.files)
    return read_datasource(source, override_num_blocks=builtins.max(1, builtins.min(n, len(source.files) or 1)),
                           ray_remote_args=ray_remote_args, num_cpus=num_cpus,
                           num_gpus=num_gpus, memory=memory)


def read_parquet(paths, *, filesystem=None, columns=None, parallelism=-1, num_cpus=None,
                 num_gpus=None, memory=None, ray_remote_args=None, tensor_column_schema=None,
                 meta_provider=None, partition_filter=None, partitioning=None, shuffle=None,
                 include_paths=False, file_extensions=None, concurrency=None,
                 override_num_blocks=None, **arrow_parquet_args):
    opts = dict(arrow_parquet_args)
    if columns is not None:
        opts["columns"] = list(columns)
    return _read("parquet", paths, override_num_blocks=override_num_blocks,
                 parallelism=parallelism, include_paths=include_paths,
                 file_extensions=file_extensions, ray_remote_args=ray_remote_args,
                 num_cpus=num_cpus, num_gpus=num_gpus, memory=memory, opts=opts)


def read_csv(paths, *, filesystem=None, parallelism=-1, num_cpus=None, num_gpus=None,
             memory=None, ray_remote_args=None, arrow_open_stream_args=None,
             meta_provider=None, partition_filter=None, partitioning=None, include_paths=False,
             ignore_missing_paths=False, shuffle=None, file_extensions=None, concurrency=None,
             override_num_blocks=None, **arrow_csv_args):
    return _read("csv", paths, override_num_blocks=override_num_blocks, parallelism=parallelism,
                 include_paths=include_paths, file_extensions=file_extensions,
                 ignore_missing_paths=ignore_missing_paths, ray_remote_args=ray_remote_args,
                 num_cpus=num_cpus, num_gpus=num_gpus, memory=memory, opts=arrow_csv_args)


def read_json(paths, *, lines=None, filesystem=None, parallelism=-1, num_cpus=None,
              num_gpus=None, memory=None, ray_remote_args=None, arrow_open_stream_args=None,
              meta_provider=None, partition_filter=None, partitioning=None, include_paths=False,
              ignore_missing_paths=False, shuffle=None, file_extensions=None, concurrency=None,
              override_num_blocks=None, **arrow_json_args):
    return _read("json", paths, override_num_blocks=override_num_blocks, parallelism=parallelism,
                 include_paths=include_paths, file_extensions=file_extensions,
                 ignore_missing_paths=ignore_missing_paths, ray_remote_args=ray_remote_args,
                 num_cpus=num_cpus, num_gpus=num_gpus, memory=memory, opts=arrow_json_args)


def read_text(paths, *, encoding="utf-8", drop_empty_lines=True, filesystem=None,
              parallelism=-1, num_cpus=None, num_gpus=None, memory=None, ray_remote_args=None,
              arrow_open_stream_args=None, meta_provider=None, partition_filter=None,
              partitioning=None, include_paths=False, ignore_missing_paths=False, shuffle=None,
              file_extensions=None, concurrency=None, override_num_blocks=None):
    return _read("text", paths, override_num_blocks=override_num_blocks, parallelism=parallelism,
                 include_paths=include_paths, file_extensions=file_extensions,
                 ignore_missing_paths=ignore_missing_paths, ray_remote_args=ray_remote_args,
                 num_cpus=num_cpus, num_gpus=num_gpus, memory=memory,
                 opts={"encoding": encoding, "drop_empty_lines": drop_empty_lines})


def read_numpy(paths, *, filesystem=None, parallelism=-1, arrow_open_stream_args=None,
               meta_provider=None, partition_filter=None, partitioning=None, include_paths=False,
               ignore_missing_paths=False, shuffle=None, file_extensions=("npy",),
               concurrency=None, override_num_blocks=None, **numpy_load_args):
    return _read("npy", paths, override_num_blocks=override_num_blocks, parallelism=parallelism,
                 include_paths=include_paths, file_extensions=file_extensions,
                 ignore_missing_paths=ignore_missing_paths)


def read_binary_files(paths, *, include_paths=False, filesystem=None, parallelism=-1,
                      ray_remote_args=None, arrow_open_stream_args=None, meta_provider=None,
                      partition_filter=None, partitioning=None, ignore_missing_paths=False,
                      shuffle=None, file_extensions=None, concurrency=None,
                      override_num_blocks=None):
    return _read("binary", paths, override_num_blocks=override_num_blocks,
                 parallelism=parallelism, include_paths=include_paths,
                 file_extensions=file_extensions, ignore_missing_paths=ignore_missing_paths,
                 ray_remote_args=ray_remote_args)


def read_images(paths, *, filesystem=None, parallelism=-1, meta_provider=None,
                ray_remote_args=None, arrow_open_file_args=None, partition_filter=None,
                partitioning=None, size=None, mode=None, include_paths=False,
                ignore_missing_paths=False, shuffle=None, file_extensions=None,
                concurrency=None, override_num_blocks=None):
    import importlib.util
    if importlib.util.find_spec("PIL") is None:
        raise ImportError("read_images needs Pillow: pip install pillow")
    exts = file_extensions if file_extensions is not None else \
        ["png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif"]
    return _read("images", paths, override_num_blocks=override_num_blocks,
                 parallelism=parallelism, include_paths=include_paths, file_extensions=exts,
                 ignore_missing_paths=ignore_missing_paths, ray_remote_args=ray_remote_args,
                 opts={"size": size, "mode": mode})
