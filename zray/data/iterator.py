"""DataIterator: batches and rows out of a stream of blocks (a Dataset, or one shard of a
streaming_split), plus the batching itself.

Blocks are fetched from the store zero-copy; in the numpy format a block is converted to arrays
once and batches are views of them, so a batch costs a few slices however small it is.
"""
import logging

import numpy as np

import zray

from ._internal import block as B

logger = logging.getLogger("zray.data")
_GET_S = 600


def _blocks(bundles):
    for bundle in bundles:
        yield zray.get(bundle.ref, timeout=_GET_S)


def _numpy_batches(tables, batch_size, drop_last):
    pending, pending_rows = [], 0
    for table in tables:
        if table.num_rows == 0:
            continue
        cols = B.to_numpy_dict(table)
        n, pos = table.num_rows, 0
        if batch_size is None:
            yield cols
            continue
        if pending_rows:
            need = batch_size - pending_rows
            take = min(need, n)
            pending.append({k: v[:take] for k, v in cols.items()})
            pending_rows += take
            pos = take
            if pending_rows == batch_size:
                yield _concat_numpy(pending)
                pending, pending_rows = [], 0
        while n - pos >= batch_size:
            yield {k: v[pos:pos + batch_size] for k, v in cols.items()}
            pos += batch_size
        if pos < n:
            pending.append({k: v[pos:] for k, v in cols.items()})
            pending_rows += n - pos
    if pending_rows and not drop_last:
        yield _concat_numpy(pending)


def _concat_numpy(pieces):
    if len(pieces) == 1:
        return pieces[0]
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


def _table_batches(tables, batch_size, drop_last):
    pending, pending_rows = [], 0
    for table in tables:
        if batch_size is None:
            if table.num_rows:
                yield table
            continue
        pos, n = 0, table.num_rows
        while pos < n:
            take = min(batch_size - pending_rows, n - pos)
            pending.append(table.slice(pos, take))
            pending_rows += take
            pos += take
            if pending_rows == batch_size:
                yield B.concat(pending)
                pending, pending_rows = [], 0
    if pending_rows and not drop_last:
        yield B.concat(pending)


def _shuffled(tables, buffer_size, batch_size, seed):
    """Tables of batch_size rows drawn at random from a buffer of at least buffer_size rows."""
    import pyarrow as pa
    rng = np.random.default_rng(seed)
    buf, rows = [], 0
    step = batch_size or buffer_size
    for table in tables:
        buf.append(table)
        rows += table.num_rows
        while rows >= buffer_size + step:
            merged = B.concat(buf)
            idx = rng.permutation(merged.num_rows)
            yield merged.take(pa.array(idx[:step]))
            buf, rows = [merged.take(pa.array(idx[step:]))], merged.num_rows - step
    if rows:
        merged = B.concat(buf)
        yield merged.take(pa.array(rng.permutation(merged.num_rows)))


def batches_from_bundles(bundles, *, batch_size=256, batch_format="default", drop_last=False,
                         local_shuffle_buffer_size=None, local_shuffle_seed=None):
    B.check_batch_format(batch_format)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
    tables = _blocks(bundles)
    if local_shuffle_buffer_size:
        tables = _shuffled(tables, local_shuffle_buffer_size, batch_size, local_shuffle_seed)
    if batch_format in ("default", "numpy", None):
        yield from _numpy_batches(tables, batch_size, drop_last)
        return
    for table in _table_batches(tables, batch_size, drop_last):
        yield B.to_batch(table, batch_format)


class DataIterator:
    """Iterates a stream of blocks; what iterator() and streaming_split() return."""

    def __init__(self, bundle_source, name="DataIterator"):
        self._source = bundle_source      # callable -> iterator of RefBundles
        self._name = name

    def __repr__(self):
        return f"DataIterator({self._name})"

    def _bundles(self):
        return self._source()

    def iter_batches(self, *, prefetch_batches=1, batch_size=256, batch_format="default",
                     drop_last=False, local_shuffle_buffer_size=None, local_shuffle_seed=None,
                     _collate_fn=None):
        it = batches_from_bundles(self._bundles(), batch_size=batch_size,
                                  batch_format=batch_format, drop_last=drop_last,
                                  local_shuffle_buffer_size=local_shuffle_buffer_size,
                                  local_shuffle_seed=local_shuffle_seed)
        if _collate_fn is not None:
            return (_collate_fn(b) for b in it)
        return it

    def iter_rows(self):
        for table in _blocks(self._bundles()):
            yield from B.iter_rows(table)

    def iter_torch_batches(self, *, prefetch_batches=1, batch_size=256, dtypes=None,
                           device="auto", collate_fn=None, drop_last=False,
                           local_shuffle_buffer_size=None, local_shuffle_seed=None,
                           pin_memory=False):
        import torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() and zray.get_gpu_ids() else "cpu"
        for batch in self.iter_batches(batch_size=batch_size, drop_last=drop_last,
                                       local_shuffle_buffer_size=local_shuffle_buffer_size,
                                       local_shuffle_seed=local_shuffle_seed):
            if collate_fn is not None:
                yield collate_fn(batch)
                continue
            out = {}
            for k, v in batch.items():
                dtype = dtypes.get(k) if isinstance(dtypes, dict) else dtypes
                if v.dtype == object:
                    out[k] = v
                    continue
                t = torch.as_tensor(np.array(v) if not v.flags.writeable else v,
                                    dtype=dtype)
                if pin_memory and device != "cpu":
                    t = t.pin_memory()
                out[k] = t.to(device) if device != "cpu" else t
            yield out

    def materialize(self):
        from .dataset import MaterializedDataset
        return MaterializedDataset.from_bundles(list(self._bundles()))

    def stats(self):
        return f"{self._name}: stats are kept by the Dataset it iterates"
