"""Blocks are pyarrow Tables; this module converts them to and from batches and rows.

Column encodings, chosen so that a block stays a plain Arrow table that zray's store maps
zero-copy:
- numeric/bool/string 1-D data: native Arrow arrays;
- n-D numeric arrays (a tensor per row, same shape): pyarrow's `fixed_shape_tensor` extension;
- anything else (ragged arrays, arbitrary Python objects): pickled into a binary column whose
  field metadata says so (`zray.pickled`), decoded back to objects on read.
"""
import pickle
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pyarrow as pa

PICKLED = {b"zray": b"pickled"}
BATCH_FORMATS = ("default", "numpy", "pandas", "pyarrow", None)


@dataclass(frozen=True)
class BlockMetadata:
    """What the driver knows of a block without fetching it."""
    num_rows: Optional[int]
    size_bytes: Optional[int]
    schema: Any = None
    input_files: tuple = ()
    exec_stats: Any = None
    extra: dict = field(default_factory=dict)


def empty_table():
    return pa.table({})


def metadata_of(table, exec_stats=None, **extra):
    return BlockMetadata(table.num_rows, table.nbytes, table.schema, exec_stats=exec_stats,
                         extra=extra)


# ---- numpy <-> arrow columns -------------------------------------------------------------

def _is_pickled(f):
    return f.metadata is not None and f.metadata.get(b"zray") == b"pickled"


def _pickled_column(values):
    return pa.array([pickle.dumps(v, protocol=5) for v in values], type=pa.binary())


def column_from_numpy(arr):
    """(arrow array, field metadata) for one numpy column."""
    if not isinstance(arr, np.ndarray):
        arr = np.asarray(arr) if not isinstance(arr, (list, tuple)) else _list_to_numpy(arr)
    if arr.ndim > 1 and arr.dtype != object:
        arr = np.ascontiguousarray(arr)
        if arr.shape[0] == 0 or arr.dtype.kind in "biufc":
            for candidate in (arr, arr.copy()):   # a copy has canonical strides
                try:
                    return pa.FixedShapeTensorArray.from_numpy_ndarray(candidate), None
                except (pa.ArrowException, ValueError, TypeError):
                    pass
        return _pickled_column(list(arr)), PICKLED
    if arr.dtype == object:
        return column_from_list(list(arr))
    try:
        return pa.array(arr), None
    except (pa.ArrowException, ValueError, TypeError):
        return _pickled_column(list(arr)), PICKLED


def _list_to_numpy(values):
    out = np.empty(len(values), dtype=object)
    out[:] = values if not values or not isinstance(values[0], (list, tuple)) else [None] * len(values)
    if values and isinstance(values[0], (list, tuple)):
        for i, v in enumerate(values):
            out[i] = v
    return out


def column_from_list(values):
    """(arrow array, field metadata) for a list of Python values (one per row)."""
    if values and any(isinstance(v, np.ndarray) for v in values):
        if all(isinstance(v, np.ndarray) for v in values):
            first = values[0]
            if (first.dtype.kind in "biufc" and
                    all(v.shape == first.shape and v.dtype == first.dtype for v in values)):
                return column_from_numpy(np.stack(values))
        return _pickled_column(values), PICKLED
    try:
        return pa.array(values), None
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        return _pickled_column(values), PICKLED


def column_to_numpy(col, f=None):
    """A numpy array for one column (zero-copy where Arrow allows)."""
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            col = col.chunk(0)
        elif col.num_chunks == 0:
            col = pa.array([], type=col.type)
        else:
            col = pa.concat_arrays(col.chunks)
    if f is not None and _is_pickled(f):
        out = np.empty(len(col), dtype=object)
        for i, v in enumerate(col.to_pylist()):
            out[i] = None if v is None else pickle.loads(v)
        return out
    if isinstance(col.type, pa.FixedShapeTensorType):
        return col.to_numpy_ndarray()
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_binary(col.type):
        return np.array(col.to_pylist(), dtype=object)
    if pa.types.is_list(col.type) or pa.types.is_struct(col.type) or pa.types.is_large_list(col.type):
        out = np.empty(len(col), dtype=object)
        out[:] = [np.asarray(v) if isinstance(v, list) else v for v in col.to_pylist()]
        return out
    return col.to_numpy(zero_copy_only=False)


# ---- blocks from batches / rows ------------------------------------------------------------

def table_from_columns(columns):
    """A block from {name: numpy array | list}."""
    arrays, fields = [], []
    n = None
    for name, values in columns.items():
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            arr, meta = values, None
        elif isinstance(values, np.ndarray):
            arr, meta = column_from_numpy(values)
        else:
            values = list(values)
            arr, meta = column_from_list(values)
        if n is not None and len(arr) != n:
            raise ValueError(f"Column {name!r} has {len(arr)} rows and another has {n}; a batch's "
                             f"columns must have equal lengths")
        n = len(arr)
        arrays.append(arr)
        fields.append(pa.field(str(name), arr.type, metadata=meta))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def block_from_batch(batch):
    """Normalize a UDF's output (dict of arrays, pandas DataFrame or Arrow table) to a block."""
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, dict):
        return table_from_columns(batch)
    typename = type(batch).__module__ + "." + type(batch).__name__
    if typename.startswith("pandas") and typename.endswith("DataFrame"):
        return _table_from_pandas(batch)
    raise ValueError(
        f"A map_batches function must return a dict of numpy arrays, a pandas DataFrame or a "
        f"pyarrow Table; got {type(batch).__name__}")


def _table_from_pandas(df):
    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
        return table.replace_schema_metadata(None)
    except (pa.ArrowException, ValueError, TypeError):
        return table_from_columns({str(c): df[c].to_numpy() for c in df.columns})


def block_from_rows(rows):
    """A block from a list of row dicts (the output of map/flat_map, or from_items)."""
    if not rows:
        return empty_table()
    names = list(rows[0].keys())
    seen = set(names)
    for r in rows:
        if not isinstance(r, dict):
            raise ValueError(f"A row must be a dict, got {type(r).__name__}: {r!r:.80}")
        if len(r) != len(names) or r.keys() != seen:
            for k in r:
                if k not in seen:
                    seen.add(k)
                    names.append(k)
    columns = {k: [r.get(k) for r in rows] for k in names}
    return table_from_columns(columns)


# ---- blocks to batches / rows --------------------------------------------------------------

def to_numpy_dict(table):
    schema = table.schema
    return {name: column_to_numpy(table.column(i), schema.field(i))
            for i, name in enumerate(table.column_names)}


def to_pandas(table):
    import pandas as pd
    if any(_is_pickled(f) or isinstance(f.type, pa.FixedShapeTensorType) for f in table.schema):
        d = to_numpy_dict(table)
        return pd.DataFrame({k: (list(v) if v.ndim > 1 else v) for k, v in d.items()})
    return table.to_pandas()


def to_batch(table, batch_format):
    if batch_format in ("default", "numpy", None):
        return to_numpy_dict(table)
    if batch_format == "pandas":
        return to_pandas(table)
    if batch_format in ("pyarrow", "arrow"):
        return table
    raise ValueError(f"batch_format must be one of 'default', 'numpy', 'pandas', 'pyarrow'; "
                     f"got {batch_format!r}")


def check_batch_format(batch_format):
    if batch_format not in BATCH_FORMATS and batch_format != "arrow":
        raise ValueError(f"batch_format must be one of 'default', 'numpy', 'pandas', 'pyarrow'; "
                         f"got {batch_format!r}")


def needs_numpy_rows(schema):
    return any(_is_pickled(f) or isinstance(f.type, pa.FixedShapeTensorType) for f in schema)


def iter_rows(table):
    """Row dicts, Python scalars for plain columns and numpy arrays for tensor columns."""
    if table.num_rows == 0:
        return iter(())
    if not needs_numpy_rows(table.schema):
        return iter(table.to_pylist())
    plain = [f.name for f in table.schema
             if not (_is_pickled(f) or isinstance(f.type, pa.FixedShapeTensorType))]
    cols = to_numpy_dict(table)
    lists = {k: (table.column(k).to_pylist() if k in plain else cols[k]) for k in table.column_names}
    names = table.column_names
    return ({k: lists[k][i] for k in names} for i in range(table.num_rows))


def concat(tables):
    tables = [t for t in tables if t.num_columns > 0 or t.num_rows > 0]
    if not tables:
        return empty_table()
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowException, TypeError):
        return pa.concat_tables(tables, promote_options="permissive")


def _tight(chunk):
    """The chunk itself, or a copy when it is a slice of larger buffers: pickling a slice
    ships its whole buffers, so a block cut out of a big one would carry all of it."""
    if chunk.get_total_buffer_size() <= chunk.nbytes + 4096:
        return chunk
    import pyarrow.compute as pc
    t = chunk.type
    if chunk.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return pa.array(np.array(chunk.to_numpy(zero_copy_only=False)), type=t)
    return pc.take(chunk, pa.array(np.arange(len(chunk), dtype=np.int64)))


def compact(table):
    """One chunk per column, holding only the block's own rows, so pickling moves each column
    as one out-of-band buffer of its own size."""
    if any(c.num_chunks > 1 for c in table.columns):
        table = table.combine_chunks()
    columns, changed = [], False
    for col in table.columns:
        if col.num_chunks == 1:
            chunk = col.chunk(0)
            tight = _tight(chunk)
            changed |= tight is not chunk
            columns.append(tight)
        else:
            columns.append(col)
    if not changed:
        return table
    return pa.Table.from_arrays(columns, schema=table.schema)


def sample_repr(table, n=3, width=600):
    """A short text of the first rows of a block, for error messages."""
    try:
        rows = list(iter_rows(table.slice(0, n)))
        text = repr(rows)
    except Exception as exc:     # the sample is best effort: never hide the user's error
        text = f"<unprintable batch: {exc}>"
    if len(text) > width:
        text = text[:width - 3] + "..."
    return text


def schema_of_batch_format(table):
    return table.schema
