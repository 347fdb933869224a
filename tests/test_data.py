"""zray.data against Ray Data's documented results: the quickstart, creation, transforms,
consumption, actor pools (also at full CPU), and UDF errors."""
import csv
import os
import re

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pytest.importorskip("pandas")

import zray                      # noqa: E402
import zray.data as rd           # noqa: E402


@pytest.fixture(autouse=True)
def _quiet_context():
    ctx = rd.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield
    rd.DataContext._set_current(None)


@pytest.fixture
def iris_csv(tmp_path):
    path = tmp_path / "iris.csv"
    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                    "petal width (cm)", "target"])
        w.writerow([5.1, 3.5, 1.4, 0.2, 0])
        for i in range(149):
            w.writerow([round(4 + rng.random() * 4, 1), round(2 + rng.random() * 2, 1),
                        round(1 + rng.random() * 6, 1), round(0.1 + rng.random() * 2, 1),
                        (i + 1) // 50])
    return str(path)


def test_quickstart(shared_cluster, iris_csv, tmp_path, capsys):
    ds = rd.read_csv(iris_csv)
    ds.show(limit=1)
    assert capsys.readouterr().out.strip() == (
        "{'sepal length (cm)': 5.1, 'sepal width (cm)': 3.5, 'petal length (cm)': 1.4, "
        "'petal width (cm)': 0.2, 'target': 0}")
    assert repr(ds.schema()).splitlines() == [
        "Column             Type", "------             ----",
        "sepal length (cm)  double", "sepal width (cm)   double",
        "petal length (cm)  double", "petal width (cm)   double", "target             int64"]

    def transform_batch(batch):
        vec_a = batch["petal length (cm)"]
        vec_b = batch["petal width (cm)"]
        batch["petal area (cm^2)"] = vec_a * vec_b
        return batch

    transformed = ds.map_batches(transform_batch)
    assert repr(transformed) == ("MapBatches(transform_batch)\n"
                                 "+- Dataset(num_rows=?, schema=Unknown schema)")
    mat = transformed.materialize()
    assert re.fullmatch(
        r"MaterializedDataset\(num_blocks=\d+, num_rows=150, schema=\{sepal length \(cm\): "
        r"double, sepal width \(cm\): double, petal length \(cm\): double, petal width \(cm\): "
        r"double, target: int64, petal area \(cm\^2\): double\}\)", repr(mat)), repr(mat)
    batch = transformed.take_batch(batch_size=3)
    assert list(batch) == ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                           "petal width (cm)", "target", "petal area (cm^2)"]
    assert np.allclose(batch["petal area (cm^2)"][0], 1.4 * 0.2)
    assert len(batch["target"]) == 3
    out = tmp_path / "iris_out"
    transformed.repartition(2).write_parquet(str(out))
    files = sorted(os.listdir(out))
    assert len(files) == 2 and all(f.endswith(".parquet") for f in files)
    assert rd.read_parquet(str(out)).count() == 150


def test_range_and_from_sources(shared_cluster):
    import pandas as pd
    assert repr(rd.range(10)) == "Dataset(num_rows=10, schema={id: int64})"
    assert rd.range(10).take(3) == [{"id": 0}, {"id": 1}, {"id": 2}]
    assert rd.from_items([1, 2, 3]).take_all() == [{"item": 1}, {"item": 2}, {"item": 3}]
    ds = rd.from_pandas(pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]}))
    assert repr(ds) == "MaterializedDataset(num_blocks=1, num_rows=3, schema={a: int64, b: int64})"
    assert repr(rd.from_arrow([pa.table({"x": [1]})] * 2)) == \
        "MaterializedDataset(num_blocks=2, num_rows=2, schema={x: int64})"
    rows = rd.from_numpy(np.ones((3, 2))).take_all()
    assert len(rows) == 3 and rows[0]["data"].tolist() == [1.0, 1.0]
    assert rd.range_tensor(4, shape=(2, 2)).take(1)[0]["data"].shape == (2, 2)
    assert rd.range(1000).count() == 1000
    assert rd.range(5).columns() == ["id"]


def test_row_transforms(shared_cluster):
    ds = rd.range(10)
    assert ds.map(lambda r: {"id": r["id"] * 2}).filter(lambda r: r["id"] > 12).take_all() == \
        [{"id": 14}, {"id": 16}, {"id": 18}]
    assert rd.range(2).flat_map(lambda r: [r, r]).take_all() == \
        [{"id": 0}, {"id": 0}, {"id": 1}, {"id": 1}]
    assert rd.range(3).add_column("b", lambda df: df["id"] * 2).take_all() == \
        [{"id": 0, "b": 0}, {"id": 1, "b": 2}, {"id": 2, "b": 4}]
    both = rd.from_items([{"a": 1, "b": 2, "c": 3}])
    assert both.drop_columns(["b"]).take_all() == [{"a": 1, "c": 3}]
    assert both.select_columns(["c", "a"]).take_all() == [{"c": 3, "a": 1}]
    assert ds.filter(expr="id >= 8").take_all() == [{"id": 8}, {"id": 9}]
    assert ds.limit(4).count() == 4
    assert ds.map(lambda r: r).limit(3).take_all() == [{"id": 0}, {"id": 1}, {"id": 2}]


def test_map_batches_formats_and_args(shared_cluster):
    ds = rd.range(8, override_num_blocks=2)

    def add(batch, n, *, m):
        return {"id": batch["id"] + n + m}
    assert ds.map_batches(add, fn_args=(1,), fn_kwargs={"m": 10}).take(2) == \
        [{"id": 11}, {"id": 12}]
    assert ds.map_batches(lambda df: df.assign(x=df["id"] * 2), batch_format="pandas") \
        .take(2) == [{"id": 0, "x": 0}, {"id": 1, "x": 2}]
    assert ds.map_batches(lambda t: t.slice(0, 1), batch_format="pyarrow", batch_size=2) \
        .take_all() == [{"id": i} for i in (0, 2, 4, 6)]
    b = ds.take_batch(3, batch_format="pandas")
    assert list(b["id"]) == [0, 1, 2]
    with pytest.raises(ValueError):
        ds.map_batches(lambda b: b, batch_format="polars")


class AddN:
    def __init__(self, n):
        self.n = n
        self.pid = os.getpid()

    def __call__(self, batch):
        return {"id": batch["id"] + self.n, "pid": np.full(len(batch["id"]), self.pid)}


def test_callable_class_on_actor_pool(shared_cluster):
    out = rd.range(20, override_num_blocks=4).map_batches(
        AddN, fn_constructor_args=(100,), concurrency=1).take_all()
    assert [r["id"] for r in out] == list(range(100, 120))
    assert len({r["pid"] for r in out}) == 1          # one actor, constructed once
    out = rd.range(20, override_num_blocks=4).map_batches(
        AddN, fn_constructor_kwargs={"n": 1}, compute=rd.ActorPoolStrategy(size=1)).take_all()
    assert [r["id"] for r in out] == list(range(1, 21))


def test_actor_pool_asking_for_every_cpu_finishes(zray_cluster, capsys):
    zray_cluster(num_cpus=2)
    ds = rd.range(40, override_num_blocks=8).map_batches(AddN, fn_constructor_args=(1,),
                                                         concurrency=2)
    capsys.readouterr()
    rows = ds.take_all()
    assert [r["id"] for r in rows] == list(range(1, 41))
    # what the user sees: one line on stderr (zray's records do not reach the root logger)
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("zray: WARNING") and "actor pool" in line.lower()]
    assert len(warnings) == 1, warnings
    # one actor holding both CPUs: its feeders run without a CPU reservation
    ds = rd.range(40, override_num_blocks=4).map_batches(AddN, fn_constructor_args=(1,),
                                                         concurrency=1, num_cpus=2)
    assert ds.count() == 40 and len(ds.take_all()) == 40


def test_a_run_whose_cpus_are_all_held_elsewhere_shares_them(zray_cluster, capsys):
    """What zray.train's ingest does: its workers' placement group holds every CPU and the
    run excludes them (exclude_resources); reads, maps and the split's gathers then run
    without a CPU reservation, with one warning, instead of waiting for ever."""
    from zray.util import placement_group, remove_placement_group
    zray_cluster(num_cpus=2)
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(30)
    try:
        ctx = rd.DataContext.get_current()
        ctx.execution_options.exclude_resources = rd.ExecutionResources(cpu=2)
        capsys.readouterr()
        ds = rd.range(40, override_num_blocks=4).map_batches(lambda b: {"id": b["id"] + 1})
        assert sorted(r["id"] for r in ds.take_all()) == list(range(1, 41))
        err = capsys.readouterr().err
        assert err.count("without a CPU reservation") == 1, err
        a, b = ds.streaming_split(2, equal=True)     # the coordinator gets this context
        ids = [r["id"] for r in a.iter_rows()] + [r["id"] for r in b.iter_rows()]
        assert sorted(ids) == list(range(1, 41))
    finally:
        remove_placement_group(pg)


def test_actor_pools_never_starve_their_inputs(zray_cluster):
    """Pools that want every CPU after a shuffle, behind a limit, and chained."""
    zray_cluster(num_cpus=2)
    after_sort = rd.range(20, override_num_blocks=4).sort("id", descending=True) \
        .map_batches(AddN, fn_constructor_args=(0,), concurrency=2)
    assert [r["id"] for r in after_sort.take_all()] == list(range(19, -1, -1))
    limited = rd.range(40, override_num_blocks=4).map_batches(lambda b: b).limit(10) \
        .map_batches(AddN, fn_constructor_args=(0,), concurrency=2)
    assert limited.count() == 10 and len(limited.take_all()) == 10
    chained = rd.range(20, override_num_blocks=4) \
        .map_batches(AddN, fn_constructor_args=(1,), concurrency=2, num_gpus=0) \
        .drop_columns(["pid"]) \
        .map_batches(AddN, fn_constructor_args=(1,), concurrency=2, num_cpus=2)
    assert [r["id"] for r in chained.take_all()] == list(range(2, 22))


def _bad(batch):
    if batch["id"][0] >= 4:
        raise ValueError("boom")
    return batch


def test_failing_udf_names_operator_and_batch(shared_cluster):
    with pytest.raises(rd.UserCodeException) as info:
        rd.range(8, override_num_blocks=2).map_batches(_bad).take_all()
    text = str(info.value)
    assert "MapBatches(_bad)" in text and "boom" in text and "{'id': 4}" in text


def test_max_errored_blocks_skips_bad_blocks(shared_cluster):
    rd.DataContext.get_current().max_errored_blocks = 1
    rows = rd.range(8, override_num_blocks=2).map_batches(_bad).take_all()
    assert rows == [{"id": i} for i in range(4)]


def test_count_skips_row_preserving_maps(shared_cluster):
    def explode(row):
        raise RuntimeError("count() must not run this")
    assert rd.range(10).map(explode).count() == 10
    assert rd.range(10).add_column("x", lambda df: df["id"]).count() == 10


def test_iteration(shared_cluster):
    ds = rd.range(10, override_num_blocks=3)
    sizes = [len(b["id"]) for b in ds.iter_batches(batch_size=4)]
    assert sizes == [4, 4, 2]
    assert [len(b["id"]) for b in ds.iter_batches(batch_size=4, drop_last=True)] == [4, 4]
    got = np.concatenate([b["id"] for b in ds.iter_batches(
        batch_size=3, local_shuffle_buffer_size=4, local_shuffle_seed=0)])
    assert sorted(got.tolist()) == list(range(10))
    assert [r["id"] for r in ds.iter_rows()] == list(range(10))
    assert list(ds.to_pandas()["id"]) == list(range(10))
    tables = zray.get(ds.to_arrow_refs())
    assert sum(t.num_rows for t in tables) == 10
    batch = next(iter(ds.iter_batches(batch_size=None)))
    assert not batch["id"].flags.writeable       # zero-copy from the store


def test_stats_and_schema(shared_cluster):
    mat = rd.range(10).map_batches(lambda b: b).materialize()
    text = mat.stats()
    assert "ReadRange->MapBatches(<lambda>)" in text and "tasks executed" in text
    assert mat.schema().names == ["id"]


class _BadInit:
    def __init__(self):
        raise RuntimeError("no model")

    def __call__(self, batch):
        return batch


def test_failing_constructor_raises_without_hanging(shared_cluster):
    with pytest.raises(zray.exceptions.RayActorError) as info:
        rd.range(10, override_num_blocks=2).map_batches(_BadInit, concurrency=1).take_all()
    assert "no model" in str(info.value) and "MapBatches(_BadInit)" in str(info.value)


def test_progress_lines_per_operator(shared_cluster, capsys):
    ctx = rd.DataContext.get_current()
    ctx.enable_progress_bars = True
    ctx.progress_bar_min_seconds = 0
    rd.range(10, override_num_blocks=2).map_batches(lambda b: b).materialize()
    err = capsys.readouterr().err
    assert "ReadRange->MapBatches(<lambda>)" in err and "rows done" in err
    ctx.enable_progress_bars = False
    rd.range(10, override_num_blocks=2).map_batches(lambda b: b).materialize()
    assert capsys.readouterr().err == ""


def test_iter_torch_batches(shared_cluster):
    torch = pytest.importorskip("torch")
    batches = list(rd.range(10).iter_torch_batches(batch_size=4, dtypes=torch.float32))
    assert [len(b["id"]) for b in batches] == [4, 4, 2]
    assert batches[0]["id"].dtype == torch.float32
