"""All-to-all operations: repartition, random_shuffle, sort, groupby aggregate/map_groups, zip,
join. The driver plans (which rows go where, from metadata and key samples) and submits tasks; the
tasks move blocks through the store, so on several nodes the data goes peer to peer.

Sort and groupby partition by range: a sample of the key from each block gives boundaries, so each
reducer's output is sorted and the outputs in order are sorted too. Joins partition by hash.
"""
import numpy as np
import pyarrow as pa

import zray

from . import block as B
from .. import aggregate as A

_GET_S = 600


def _bundles_of(pairs):
    """RefBundles from [(block_ref, meta_ref)], waiting for the metadata."""
    from .executor import RefBundle
    metas = zray.get([m for _, m in pairs], timeout=_GET_S)
    return [RefBundle(b, m) for (b, _), m in zip(pairs, metas)]


def _out(table):
    table = B.compact(table)
    return table, B.metadata_of(table)


def _refs(result, n):
    return [result] if n == 1 else list(result)


def _parts(tables):
    """Partitions returned as separate objects: each must hold only its own rows."""
    return tuple(B.compact(t) for t in tables)


# ------------------------------------------------------------------------- slicing and merging

def _gather(pieces, *blocks):
    """Concatenate block[i].slice(start, length) for each (i, start, length)."""
    return _out(B.concat([blocks[i].slice(s, n) for i, s, n in pieces]))


_gather_task = zray.remote(num_returns=2, max_retries=0)(_gather)


_DRIVER_SLICE_BYTES = 8 << 20


def slice_bundle(bundle, start, length):
    """Rows [start, start+length) of a block as a new bundle. Small blocks are cut on the
    driver (a zero-copy read, a put of the rows kept), saving a task round trip."""
    from .executor import RefBundle
    if (bundle.meta.size_bytes or 0) <= _DRIVER_SLICE_BYTES:
        table, meta = _gather([(0, start, length)], zray.get(bundle.ref, timeout=_GET_S))
        return RefBundle(zray.put(table), meta)
    [out] = _bundles_of([_gather_task.options(num_cpus=0).remote([(0, start, length)],
                                                                  bundle.ref)])
    return out


def _row_ranges(bundles):
    starts, pos = [], 0
    for b in bundles:
        starts.append(pos)
        pos += b.meta.num_rows
    return starts, pos


def _pieces_for(bundles, starts, lo, hi):
    """(bundle index, start, length) covering global rows [lo, hi)."""
    out = []
    for i, b in enumerate(bundles):
        s, e = starts[i], starts[i] + b.meta.num_rows
        if e <= lo or s >= hi:
            continue
        a, z = max(s, lo), min(e, hi)
        out.append((i, a - s, z - a))
    return out


def split_rows(bundles, bounds, num_cpus=1):
    """Bundles for each global row range [bounds[k], bounds[k+1]) (`num_cpus` per gather task:
    0 where other work holds every CPU)."""
    starts, _ = _row_ranges(bundles)
    pairs = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        pieces = _pieces_for(bundles, starts, lo, hi)
        used = sorted({i for i, _, _ in pieces})
        remap = {i: k for k, i in enumerate(used)}
        pairs.append(_gather_task.options(num_cpus=num_cpus).remote(
            [(remap[i], s, n) for i, s, n in pieces], *[bundles[i].ref for i in used]))
    return _bundles_of(pairs)


def repartition(bundles, num_blocks):
    _, total = _row_ranges(bundles)
    bounds = [total * k // num_blocks for k in range(num_blocks + 1)]
    return split_rows(bundles, bounds)


# ------------------------------------------------------------------------- random shuffle

def _shuffle_map(block, n_out, seed):
    rng = np.random.default_rng(seed)
    perm = rng.permutation(block.num_rows)
    parts = np.array_split(perm, n_out)
    out = [block.take(pa.array(p)) for p in parts]
    return out[0] if n_out == 1 else tuple(out)


def _shuffle_reduce(seed, *parts):
    table = B.concat(list(parts))
    rng = np.random.default_rng(seed)
    return _out(table.take(pa.array(rng.permutation(table.num_rows))))


def random_shuffle(bundles, seed, num_blocks):
    n_out = num_blocks or max(1, len(bundles))
    base = np.random.SeedSequence(seed).generate_state(2 * len(bundles) + 2 * n_out + 2)
    mapper = zray.remote(max_retries=0)(_shuffle_map).options(num_returns=n_out)
    parts = [_refs(mapper.remote(b.ref, n_out, int(base[i])), n_out)
             for i, b in enumerate(bundles)]
    reducer = zray.remote(num_returns=2, max_retries=0)(_shuffle_reduce)
    pairs = [reducer.remote(int(base[len(bundles) + j]), *[p[j] for p in parts])
             for j in range(n_out)]
    return _bundles_of(pairs)


# ------------------------------------------------------------------------- sort

def _sample(block, column, k, seed):
    if block.num_rows == 0:
        return np.array([])
    values = B.column_to_numpy(block.column(column))
    rng = np.random.default_rng(seed)
    idx = rng.choice(block.num_rows, size=min(k, block.num_rows), replace=False)
    return values[idx]


def boundaries(bundles, column, n_out, descending=False):
    """n_out - 1 range boundaries of `column` from a sample of each block."""
    if n_out <= 1:
        return []
    sampler = zray.remote(max_retries=0)(_sample)
    k = max(10, 20 * n_out // max(1, len(bundles)))
    samples = zray.get([sampler.remote(b.ref, column, k, i) for i, b in enumerate(bundles)],
                       timeout=_GET_S)
    values = np.sort(np.concatenate([s for s in samples if len(s)]) if samples else np.array([]))
    if len(values) == 0:
        return []
    qs = [values[min(len(values) - 1, len(values) * j // n_out)] for j in range(1, n_out)]
    out = []
    for q in qs:
        if not out or q != out[-1]:
            out.append(q)
    return out


def _partition_ids(values, bounds, descending):
    ids = np.searchsorted(np.asarray(bounds, dtype=values.dtype if values.dtype != object else object),
                          values, side="right")
    return (len(bounds) - ids) if descending else ids


def _sort_keys(keys, descending):
    return [(k, "descending" if d else "ascending") for k, d in zip(keys, descending)]


def _sort_table(table, keys, descending):
    """table sorted by keys. One numeric key without nulls sorts with numpy: values alone when
    the key is the only column (several times faster than sorting indices), else a stable
    argsort, which merges the presorted runs a reducer receives in linear time."""
    if table.num_rows == 0:
        return table
    if len(keys) == 1:
        col = table.column(keys[0])
        if col.null_count == 0 and (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            values = B.column_to_numpy(col)
            if table.num_columns == 1:
                out = np.sort(values, kind="stable")
                out = out[::-1].copy() if descending[0] else out
                return pa.Table.from_arrays([pa.array(out)], schema=table.schema)
            idx = np.argsort(values, kind="stable")
            return table.take(pa.array(idx[::-1] if descending[0] else idx))
    return table.sort_by(_sort_keys(keys, descending))


def _range_map(block, keys, descending, bounds, n_out, presort):
    if presort and block.num_rows:
        block = _sort_table(block, keys, descending)
    if n_out == 1:
        return block
    values = B.column_to_numpy(block.column(keys[0]))
    ids = _partition_ids(values, bounds, descending[0])
    if presort:
        if np.all(np.diff(ids) >= 0):       # sorted by the key: partitions are contiguous
            cuts = np.searchsorted(ids, np.arange(1, n_out), side="left")
            edges = [0, *cuts.tolist(), block.num_rows]
            return _parts(block.slice(edges[j], edges[j + 1] - edges[j]) for j in range(n_out))
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    taken = block.take(pa.array(order))
    edges = np.searchsorted(sorted_ids, np.arange(n_out + 1), side="left")
    return _parts(taken.slice(edges[j], edges[j + 1] - edges[j]) for j in range(n_out))


def _sort_reduce(keys, descending, *parts):
    return _out(_sort_table(B.compact(B.concat(list(parts))), keys, descending))


def _range_partition(bundles, keys, descending, n_out, presort):
    bounds = boundaries(bundles, keys[0], n_out, descending[0])
    n_out = len(bounds) + 1
    mapper = zray.remote(max_retries=0)(_range_map).options(num_returns=n_out)
    return [_refs(mapper.remote(b.ref, keys, descending, bounds, n_out, presort), n_out)
            for b in bundles], n_out


def sort(bundles, keys, descending):
    bundles = [b for b in bundles if b.meta.num_rows]
    if not bundles:
        return []
    parts, n_out = _range_partition(bundles, keys, descending, len(bundles), presort=True)
    reducer = zray.remote(num_returns=2, max_retries=0)(_sort_reduce)
    return _bundles_of([reducer.remote(keys, descending, *[p[j] for p in parts])
                        for j in range(n_out)])


# ------------------------------------------------------------------------- groupby

def _agg_map(block, keys, aggs, bounds, n_out):
    part = A.partial(block, keys, aggs)
    if not keys or n_out == 1:
        return part
    return _range_map(part, keys, [False] * len(keys), bounds, n_out, presort=False)


def _agg_reduce(keys, aggs, *parts):
    table = B.concat([p for p in parts if p.num_rows])
    if table.num_rows == 0:
        return _out(pa.table({}))
    combined = A.combine(table, keys, aggs)
    return _out(A.finish(combined, keys, aggs))


def _generic_map(block, keys, aggs, bounds, n_out):
    """Per-key accumulators of user AggregateFns (a pickled column)."""
    groups = _groups(block, keys)
    rows = []
    for key_vals, sub in groups:
        accs = [agg.accumulate_table(agg.init(key_vals if len(keys) > 1 else
                                              (key_vals[0] if keys else None)), sub)
                for agg in aggs]
        rows.append((key_vals, accs))
    table = _acc_table(keys, rows)
    if not keys or n_out == 1:
        return table
    return _range_map(table, keys, [False] * len(keys), bounds, n_out, presort=False)


def _acc_table(keys, rows):
    import pickle
    cols = {k: [r[0][i] for r in rows] for i, k in enumerate(keys)}
    cols["__accs"] = [pickle.dumps(r[1]) for r in rows]
    return pa.table(cols) if rows else pa.table({**{k: pa.array([]) for k in keys},
                                                 "__accs": pa.array([], type=pa.binary())})


def _generic_reduce(keys, aggs, *parts):
    import pickle
    table = B.concat([p for p in parts if p.num_rows])
    merged = {}
    if table.num_rows:
        key_cols = [table.column(k).to_pylist() for k in keys]
        for i, blob in enumerate(table.column("__accs").to_pylist()):
            kv = tuple(c[i] for c in key_cols)
            accs = pickle.loads(blob)
            if kv in merged:
                merged[kv] = [agg.merge(a, b) for agg, a, b in zip(aggs, merged[kv], accs)]
            else:
                merged[kv] = accs
    if not keys and not merged:
        merged[()] = [agg.init(None) for agg in aggs]
    out_rows = []
    for kv in sorted(merged, key=lambda t: tuple((x is None, x) for x in t)):
        row = {k: v for k, v in zip(keys, kv)}
        for agg, acc in zip(aggs, merged[kv]):
            row[agg.name] = agg.finalize(acc)
        out_rows.append(row)
    return _out(B.block_from_rows(out_rows))


def _groups(block, keys):
    """[(key values tuple, sub-table)] of a block, by key."""
    if not keys:
        return [((), block)]
    if block.num_rows == 0:
        return []
    block = block.sort_by([(k, "ascending") for k in keys])
    cols = [B.column_to_numpy(block.column(k)) for k in keys]
    change = np.zeros(block.num_rows, dtype=bool)
    change[0] = True
    for c in cols:
        change[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(change).tolist() + [block.num_rows]
    out = []
    for s, e in zip(starts[:-1], starts[1:]):
        kv = tuple(c[s].item() if hasattr(c[s], "item") else c[s] for c in cols)
        out.append((kv, block.slice(s, e - s)))
    return out


def aggregate(bundles, keys, aggs, num_partitions, total_cpus):
    bundles = [b for b in bundles if b.meta.num_rows] or bundles[:1]
    if not bundles:
        return []
    vectorized = all(getattr(a, "vectorized", False) for a in aggs)
    n_out = 1 if not keys else (num_partitions or max(1, min(len(bundles), int(total_cpus))))
    bounds = boundaries(bundles, keys[0], n_out) if keys and n_out > 1 else []
    n_out = len(bounds) + 1
    map_fn, reduce_fn = (_agg_map, _agg_reduce) if vectorized else (_generic_map, _generic_reduce)
    mapper = zray.remote(max_retries=0)(map_fn).options(num_returns=n_out)
    parts = [_refs(mapper.remote(b.ref, keys, aggs, bounds, n_out), n_out) for b in bundles]
    reducer = zray.remote(num_returns=2, max_retries=0)(reduce_fn)
    out = _bundles_of([reducer.remote(keys, aggs, *[p[j] for p in parts]) for j in range(n_out)])
    return [b for b in out if b.meta.num_rows] or out[:1]


def _map_groups_reduce(keys, fn, batch_format, fn_args, fn_kwargs, *parts):
    from .transforms import _udf_error
    table = B.concat(list(parts))
    outs = []
    for _kv, sub in _groups(table, keys):
        try:
            res = fn(B.to_batch(sub, batch_format), *fn_args, **fn_kwargs)
        except Exception as exc:
            raise _udf_error(f"MapGroups({getattr(fn, '__name__', 'fn')})", exc, sub) from exc
        outs.append(B.block_from_batch(res))
    return _out(B.concat(outs))


def map_groups(bundles, keys, fn, batch_format, fn_args, fn_kwargs, num_partitions, total_cpus):
    bundles = [b for b in bundles if b.meta.num_rows]
    if not bundles:
        return []
    n_out = 1 if not keys else (num_partitions or max(1, min(len(bundles), int(total_cpus))))
    if keys:
        parts, n_out = _range_partition(bundles, keys, [False] * len(keys), n_out, presort=False)
    else:
        parts = [[b.ref] for b in bundles]
    reducer = zray.remote(num_returns=2, max_retries=0)(_map_groups_reduce)
    return _bundles_of([reducer.remote(keys, fn, batch_format, tuple(fn_args or ()),
                                       dict(fn_kwargs or {}), *[p[j] for p in parts])
                        for j in range(n_out)])


# ------------------------------------------------------------------------- zip and join

def _zip(left, pieces, *rights):
    right = B.concat([rights[i].slice(s, n) for i, s, n in pieces])
    names = set(left.column_names)
    out = left
    for name, col, f in zip(right.column_names, right.columns, right.schema):
        new = name
        k = 1
        while new in names:
            new = f"{name}_{k}"
            k += 1
        names.add(new)
        out = out.append_column(pa.field(new, f.type, metadata=f.metadata), col)
    return _out(out)


def zip_bundles(inputs):
    left, right = inputs
    _, nl = _row_ranges(left)
    starts, nr = _row_ranges(right)
    if nl != nr:
        raise ValueError(f"Cannot zip datasets of different numbers of rows: {nl} and {nr}")
    zipper = zray.remote(num_returns=2, max_retries=0)(_zip)
    lstarts, _ = _row_ranges(left)
    pairs = []
    for b, lo in zip(left, lstarts):
        pieces = _pieces_for(right, starts, lo, lo + b.meta.num_rows)
        used = sorted({i for i, _, _ in pieces})
        remap = {i: k for k, i in enumerate(used)}
        pairs.append(zipper.remote(b.ref, [(remap[i], s, n) for i, s, n in pieces],
                                   *[right[i].ref for i in used]))
    return _bundles_of(pairs)


def _hash_map(block, keys, n_out):
    if n_out == 1:
        return block
    import pandas as pd
    if block.num_rows == 0:
        return tuple(block for _ in range(n_out))
    h = pd.util.hash_pandas_object(B.to_pandas(block.select(keys)), index=False).to_numpy()
    ids = (h % np.uint64(n_out)).astype(np.int64)
    order = np.argsort(ids, kind="stable")
    taken = block.take(pa.array(order))
    edges = np.searchsorted(ids[order], np.arange(n_out + 1), side="left")
    return _parts(taken.slice(edges[j], edges[j + 1] - edges[j]) for j in range(n_out))


_JOIN_TYPES = {"inner": "inner", "left_outer": "left outer", "right_outer": "right outer",
               "full_outer": "full outer", "left_semi": "left semi", "right_semi": "right semi",
               "left_anti": "left anti", "right_anti": "right anti"}


def _join_reduce(params, n_left, *parts):
    left = B.concat(list(parts[:n_left]))
    right = B.concat(list(parts[n_left:]))
    if left.num_columns == 0 or right.num_columns == 0:
        return _out(pa.table({}))
    out = left.join(right, keys=list(params["on"]), right_keys=list(params["right_on"]),
                    join_type=_JOIN_TYPES[params["join_type"]],
                    left_suffix=params.get("left_suffix"), right_suffix=params.get("right_suffix"),
                    use_threads=False)
    return _out(out)


def join(left, right, params):
    n = params["num_partitions"]
    mapper = zray.remote(max_retries=0)(_hash_map).options(num_returns=n)
    lparts = [_refs(mapper.remote(b.ref, list(params["on"]), n), n) for b in left]
    rparts = [_refs(mapper.remote(b.ref, list(params["right_on"]), n), n) for b in right]
    reducer = zray.remote(num_returns=2, max_retries=0)(_join_reduce)
    return _bundles_of([reducer.remote(params, len(lparts), *[p[j] for p in lparts],
                                       *[p[j] for p in rparts]) for j in range(n)])


# ------------------------------------------------------------------------- dispatch

def run(kind, params, bundles, total_cpus):
    if kind == "repartition":
        if params.get("shuffle"):
            return random_shuffle(bundles, params.get("seed"), params["num_blocks"])
        return repartition(bundles, params["num_blocks"])
    if kind == "random_shuffle":
        return random_shuffle(bundles, params.get("seed"), params.get("num_blocks"))
    if kind == "randomize_block_order":
        rng = np.random.default_rng(params.get("seed"))
        return [bundles[i] for i in rng.permutation(len(bundles))]
    if kind == "sort":
        return sort(bundles, params["keys"], params["descending"])
    if kind == "aggregate":
        return aggregate(bundles, params["keys"], params["aggs"], params.get("num_partitions"),
                         total_cpus)
    if kind == "map_groups":
        return map_groups(bundles, params["keys"], params["fn"], params["batch_format"],
                          params.get("fn_args"), params.get("fn_kwargs"),
                          params.get("num_partitions"), total_cpus)
    raise ValueError(f"unknown all-to-all operation {kind!r}")


def _to_pandas(block):
    return B.to_pandas(block)


def _to_numpy(block, column):
    cols = B.to_numpy_dict(block)
    return cols[column] if column is not None else cols


_to_pandas_task = zray.remote(max_retries=0)(_to_pandas)
_to_numpy_task = zray.remote(max_retries=0)(_to_numpy)
