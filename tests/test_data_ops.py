"""zray.data's all-to-all operations, combinations, splits and aggregations, against Ray's
documented results."""
import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pytest.importorskip("pandas")

import zray                      # noqa: E402
import zray.data as rd           # noqa: E402


@pytest.fixture(autouse=True)
def _quiet_context():
    rd.DataContext.get_current().enable_progress_bars = False
    yield
    rd.DataContext._set_current(None)


def _kv(n=20, keys=3):
    return rd.from_items([{"k": i % keys, "v": i} for i in range(n)], override_num_blocks=4)


def test_groupby_aggregations(shared_cluster):
    ds = _kv(10)
    assert ds.groupby("k").sum("v").take_all() == \
        [{"k": 0, "sum(v)": 18}, {"k": 1, "sum(v)": 12}, {"k": 2, "sum(v)": 15}]
    assert ds.groupby("k").count().take_all() == \
        [{"k": 0, "count()": 4}, {"k": 1, "count()": 3}, {"k": 2, "count()": 3}]
    assert ds.groupby("k").mean(["v"]).take_all() == \
        [{"k": 0, "mean(v)": 4.5}, {"k": 1, "mean(v)": 4.0}, {"k": 2, "mean(v)": 5.0}]
    assert ds.groupby("k").min("v").take_all()[1] == {"k": 1, "min(v)": 1}
    assert ds.groupby("k").max("v").take_all()[1] == {"k": 1, "max(v)": 7}
    std = ds.groupby("k").std("v").take_all()
    assert np.isclose(std[0]["std(v)"], np.std([0, 3, 6, 9], ddof=1))
    multi = ds.groupby("k").aggregate(rd.Sum("v"), rd.Count()).take_all()
    assert multi[0] == {"k": 0, "sum(v)": 18, "count()": 4}


def test_groupby_user_aggregate_and_map_groups(shared_cluster):
    ds = _kv(10)
    agg = rd.AggregateFn(init=lambda k: 0, accumulate_row=lambda a, r: a + r["v"],
                         merge=lambda a, b: a + b, name="total")
    assert ds.groupby("k").aggregate(agg).take_all() == \
        [{"k": 0, "total": 18}, {"k": 1, "total": 12}, {"k": 2, "total": 15}]

    def top(group):
        order = np.argsort(group["v"])[::-1][:1]
        return {"k": group["k"][order], "v": group["v"][order]}
    got = sorted(ds.groupby("k").map_groups(top).take_all(), key=lambda r: r["k"])
    assert got == [{"k": 0, "v": 9}, {"k": 1, "v": 7}, {"k": 2, "v": 8}]


def test_global_aggregations(shared_cluster):
    ds = rd.range(10)
    assert ds.sum("id") == 45 and ds.min("id") == 0 and ds.max("id") == 9
    assert ds.mean("id") == 4.5
    assert np.isclose(ds.std("id"), 3.0276503540974917)
    assert ds.aggregate(rd.Count(), rd.Sum("id")) == {"count()": 10, "sum(id)": 45}
    assert sorted(_kv(10).unique("k")) == [0, 1, 2]


def test_sort(shared_cluster):
    rng = np.random.default_rng(1)
    values = rng.integers(0, 1000, 300)
    ds = rd.from_items([{"a": int(v)} for v in values], override_num_blocks=5)
    assert [r["a"] for r in ds.sort("a").take_all()] == sorted(values.tolist())
    assert [r["a"] for r in ds.sort("a", descending=True).take_all()] == \
        sorted(values.tolist(), reverse=True)
    two = rd.from_items([{"a": i % 3, "b": i} for i in range(9)])
    assert [(r["a"], r["b"]) for r in two.sort(["a", "b"], descending=[False, True]).take_all()] \
        == [(0, 6), (0, 3), (0, 0), (1, 7), (1, 4), (1, 1), (2, 8), (2, 5), (2, 2)]


def test_shuffles_and_repartition(shared_cluster):
    ds = rd.range(100, override_num_blocks=4)
    shuffled = [r["id"] for r in ds.random_shuffle(seed=3).take_all()]
    assert sorted(shuffled) == list(range(100)) and shuffled != list(range(100))
    assert shuffled == [r["id"] for r in ds.random_shuffle(seed=3).take_all()]
    mat = ds.repartition(3).materialize()
    assert mat.num_blocks() == 3 and [r["id"] for r in mat.take_all()] == list(range(100))
    assert ds.repartition(7, shuffle=True).materialize().num_blocks() == 7
    order = [r["id"] for r in ds.randomize_block_order(seed=0).take_all()]
    assert sorted(order) == list(range(100))
    sample = ds.random_sample(0.5, seed=0).take_all()
    assert 20 < len(sample) < 80


def test_union_zip_join(shared_cluster):
    assert rd.range(3).union(rd.range(2)).take_all() == \
        [{"id": 0}, {"id": 1}, {"id": 2}, {"id": 0}, {"id": 1}]
    assert rd.range(3).zip(rd.range(3, override_num_blocks=2)).take_all() == \
        [{"id": 0, "id_1": 0}, {"id": 1, "id_1": 1}, {"id": 2, "id_1": 2}]
    left = rd.from_items([{"id": i, "a": i * 10} for i in range(5)])
    right = rd.from_items([{"id": i, "b": i * 100} for i in range(3, 8)])
    inner = sorted(left.join(right, "inner", 2).take_all(), key=lambda r: r["id"])
    assert inner == [{"id": 3, "a": 30, "b": 300}, {"id": 4, "a": 40, "b": 400}]
    outer = left.join(right, "left_outer", 3).take_all()
    assert len(outer) == 5 and sum(r["b"] is None for r in outer) == 3


def test_split_and_train_test_split(shared_cluster):
    ds = rd.range(10, override_num_blocks=5)
    parts = ds.split(2)
    assert [p.count() for p in parts] == [6, 4] or sum(p.count() for p in parts) == 10
    equal = ds.split(3, equal=True)
    assert [p.count() for p in equal] == [3, 3, 3]
    train, test = rd.range(10).train_test_split(0.3)
    assert [r["id"] for r in train.take_all()] == list(range(7))
    assert [r["id"] for r in test.take_all()] == [7, 8, 9]
    a, b, c = ds.split_at_indices([2, 5])
    assert (a.count(), b.count(), c.count()) == (2, 3, 5)


@zray.remote
class _Consumer:
    def consume(self, it):
        return [int(x) for b in it.iter_batches(batch_size=3) for x in b["id"]]


def test_streaming_split_consumed_by_two_actors(shared_cluster):
    ds = rd.range(40, override_num_blocks=8).map_batches(lambda b: b)
    a, b = ds.streaming_split(2)
    consumers = [_Consumer.remote(), _Consumer.remote()]
    out = zray.get([consumers[0].consume.remote(a), consumers[1].consume.remote(b)], timeout=120)
    assert sorted(out[0] + out[1]) == list(range(40))
    a, b = rd.range(40, override_num_blocks=8).streaming_split(2, equal=True)
    out = zray.get([consumers[0].consume.remote(a), consumers[1].consume.remote(b)], timeout=120)
    assert len(out[0]) == len(out[1]) == 20 and sorted(out[0] + out[1]) == list(range(40))
    for c in consumers:
        zray.kill(c)


def test_preprocessors(shared_cluster):
    from zray.data.preprocessors import Concatenator, OneHotEncoder, StandardScaler
    ds = rd.from_items([{"x": float(i), "y": 2.0 * i, "c": "ab"[i % 2]} for i in range(4)])
    scaled = StandardScaler(columns=["x"]).fit_transform(ds).take_all()
    xs = np.array([r["x"] for r in scaled])
    assert np.isclose(xs.mean(), 0) and np.isclose(xs.std(), 1)
    enc = OneHotEncoder(columns=["c"]).fit(ds)
    rows = enc.transform(ds).take_all()
    assert [list(r["c"]) for r in rows[:2]] == [[1, 0], [0, 1]]
    cat = Concatenator(columns=["x", "y"], output_column_name="f").transform(ds).take(2)
    assert cat[1]["f"].tolist() == [1.0, 2.0] and "x" not in cat[1]
