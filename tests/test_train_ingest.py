"""Data ingest into Train: TorchTrainer(datasets={"train": zray.data...}) and
`train.get_dataset_shard("train").iter_torch_batches(...)` on 2 gloo workers, every row seen
by exactly one rank in every epoch, a DDP model trained on the batches."""
import json
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pyarrow")

import zray  # noqa: E402
from zray import train  # noqa: E402
from zray.train import RunConfig, ScalingConfig  # noqa: E402
from zray.train.torch import TorchTrainer  # noqa: E402

pytestmark = pytest.mark.timeout(400)      # importing torch in 2 workers on a shared machine

ROWS = 1000
EPOCHS = 2


def ingest_loop(config):
    from torch import nn
    from zray.train.torch import prepare_model
    ctx = train.get_context()
    rank = ctx.get_world_rank()
    shard = train.get_dataset_shard("train")
    model = prepare_model(nn.Linear(1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    for epoch in range(EPOCHS):
        seen, batches, loss = [], 0, None
        for batch in shard.iter_torch_batches(batch_size=64, dtypes=torch.float32):
            assert isinstance(batch["x"], torch.Tensor) and batch["x"].dtype == torch.float32
            seen.extend(int(i) for i in batch["id"].tolist())
            pred = model(batch["x"].unsqueeze(1))
            loss = nn.functional.mse_loss(pred, batch["y"].unsqueeze(1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            batches += 1
        with open(os.path.join(config["out"], f"rank{rank}_epoch{epoch}.json"), "w") as f:
            json.dump(seen, f)
        train.report({"epoch": epoch, "rows": len(seen), "batches": batches,
                      "loss": float(loss)})


@pytest.fixture(scope="module")
def cluster():
    if zray.is_initialized():
        zray.shutdown()
    zray.init(num_cpus=2)
    yield
    zray.shutdown()


def test_dataset_shards_feed_two_workers_each_row_once_per_epoch(cluster, tmp_path):
    out = tmp_path / "seen"
    out.mkdir()
    # a lazy, transformed dataset: the split streams the transform's output to the ranks
    ds = zray.data.range(ROWS, override_num_blocks=8).map_batches(
        lambda b: {"id": b["id"], "x": b["id"] / ROWS, "y": 2.0 * b["id"] / ROWS})
    result = TorchTrainer(
        ingest_loop, train_loop_config={"out": str(out)},
        scaling_config=ScalingConfig(num_workers=2), datasets={"train": ds},
        run_config=RunConfig(storage_path=str(tmp_path), name="ingest", verbose=0)).fit()
    assert result.error is None and result.metrics["epoch"] == EPOCHS - 1
    assert result.metrics["rows"] == ROWS // 2          # equal shards
    for epoch in range(EPOCHS):
        per_rank = []
        for rank in range(2):
            with open(out / f"rank{rank}_epoch{epoch}.json") as f:
                per_rank.append(json.load(f))
        assert len(per_rank[0]) == len(per_rank[1]) == ROWS // 2
        assert not set(per_rank[0]) & set(per_rank[1])            # disjoint
        assert sorted(per_rank[0] + per_rank[1]) == list(range(ROWS))   # each row once
