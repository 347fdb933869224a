"""zray.data's reads and writes: round trips through parquet, CSV, JSON, numpy, text, binary
files and images, and user Datasources/Datasinks."""
import os

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pytest.importorskip("pandas")

import zray.data as rd           # noqa: E402
from zray.data._internal import block as B   # noqa: E402


@pytest.fixture(autouse=True)
def _quiet_context():
    rd.DataContext.get_current().enable_progress_bars = False
    yield
    rd.DataContext._set_current(None)


def _rows(n=12):
    return [{"i": i, "f": i / 2, "s": f"r{i}"} for i in range(n)]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_round_trip(shared_cluster, tmp_path, fmt):
    ds = rd.from_items(_rows(), override_num_blocks=3)
    getattr(ds, f"write_{fmt}")(str(tmp_path / fmt))
    files = sorted(os.listdir(tmp_path / fmt))
    assert len(files) == 3 and all(f.endswith("." + fmt) for f in files)
    back = getattr(rd, f"read_{fmt}")(str(tmp_path / fmt))
    assert sorted(back.take_all(), key=lambda r: r["i"]) == _rows()
    assert back.count() == 12


def test_parquet_count_and_columns_from_metadata(shared_cluster, tmp_path):
    rd.range(30, override_num_blocks=3).write_parquet(str(tmp_path / "p"))
    ds = rd.read_parquet(str(tmp_path / "p"), columns=["id"])
    assert ds.count() == 30 and ds.schema().names == ["id"]
    assert len(rd.read_parquet(str(tmp_path / "p"), include_paths=True).take(1)[0]["path"]) > 0


def test_numpy_round_trip(shared_cluster, tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(6, 2)
    rd.from_numpy(arr).write_numpy(str(tmp_path / "n"), column="data")
    back = rd.read_numpy(str(tmp_path / "n"))
    assert np.array_equal(np.stack([r["data"] for r in back.take_all()]), arr)


def test_text_and_binary(shared_cluster, tmp_path):
    (tmp_path / "a.txt").write_text("hello\nworld\n\n")
    assert rd.read_text(str(tmp_path / "a.txt")).take_all() == [{"text": "hello"},
                                                                {"text": "world"}]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.bin").write_bytes(b"\x00\x01")
    rows = rd.read_binary_files(str(tmp_path / "b"), include_paths=True).take_all()
    assert rows[0]["bytes"] == b"\x00\x01" and rows[0]["path"].endswith("x.bin")


def test_images(shared_cluster, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    for i in range(2):
        Image.fromarray(np.full((4, 5, 3), i * 100, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    ds = rd.read_images(str(tmp_path))
    assert repr(ds.schema()).splitlines()[-1] == \
        "image   numpy.ndarray(shape=(4, 5, 3), dtype=uint8)"
    imgs = [r["image"] for r in ds.take_all()]
    assert imgs[1].shape == (4, 5, 3) and int(imgs[1][0, 0, 0]) == 100


class _Squares(rd.Datasource):
    def __init__(self, n):
        self.n = n

    def get_read_tasks(self, parallelism, per_task_row_limit=None):
        tasks = []
        for k in range(parallelism):
            lo, hi = self.n * k // parallelism, self.n * (k + 1) // parallelism
            meta = B.BlockMetadata(hi - lo, None, None)
            tasks.append(rd.ReadTask(lambda lo=lo, hi=hi: [
                {"x": np.arange(lo, hi) ** 2}], meta))
        return tasks


class _Collect(rd.Datasink):
    def __init__(self, path):
        self.path = path
        self.result = None

    def write(self, blocks, ctx):
        rows = sum(b.num_rows for b in blocks)
        with open(os.path.join(self.path, f"part{ctx.task_idx}"), "w") as f:
            f.write(str(rows))
        return rows

    def on_write_complete(self, write_result):
        with open(os.path.join(self.path, "done"), "w") as f:
            f.write(f"{write_result.num_rows} {sorted(write_result.write_returns)}")


def test_user_datasource_and_datasink(shared_cluster, tmp_path):
    ds = rd.read_datasource(_Squares(10), override_num_blocks=2)
    assert ds.count() == 10
    assert [r["x"] for r in ds.take_all()] == [i * i for i in range(10)]
    ds.write_datasink(_Collect(str(tmp_path)))
    assert (tmp_path / "done").read_text() == "10 [5, 5]"


def test_missing_path_raises(shared_cluster, tmp_path):
    with pytest.raises(FileNotFoundError):
        rd.read_csv(str(tmp_path / "nope.csv"))
