"""TorchTrainer with torch on CPU, 2 workers: the quickstart shape over gloo, and DDP over
the zray torch.distributed backend."""
import json
import os
import tempfile

import pytest

torch = pytest.importorskip("torch")

import zray                                                      # noqa: E402
from zray import train                                           # noqa: E402
from zray.train import CheckpointConfig, RunConfig, ScalingConfig  # noqa: E402
from zray.train.torch import TorchConfig, TorchTrainer           # noqa: E402

pytestmark = pytest.mark.timeout(400)      # importing torch in 2 workers on a shared machine


@pytest.fixture(scope="module")
def cluster():
    if zray.is_initialized():
        zray.shutdown()
    zray.init(num_cpus=2)
    yield
    zray.shutdown()


def _model():
    from torch import nn
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))


def quickstart_loop(config):
    import torch.distributed as dist
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from zray.train.torch import get_device, prepare_data_loader, prepare_model
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = x.sum(1, keepdim=True)
    loader = prepare_data_loader(DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True))
    model = prepare_model(_model())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ctx = train.get_context()
    for epoch in range(config["epochs"]):
        loader.sampler.set_epoch(epoch)
        batches = 0
        for xb, yb in loader:
            loss = nn.functional.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            batches += 1
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if ctx.get_world_rank() == 0:
                torch.save(model.module.state_dict(), os.path.join(d, "model.pt"))
                checkpoint = train.Checkpoint.from_directory(d)
            train.report({"epoch": epoch, "loss": loss.item(), "batches": batches},
                         checkpoint=checkpoint)
    t = torch.tensor([float(ctx.get_world_rank() + 1)])
    dist.all_reduce(t)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    with open(os.path.join(config["out"], f"rank{ctx.get_world_rank()}.json"), "w") as f:
        json.dump({"backend": dist.get_backend(), "sum": t.item(), "params": flat.tolist(),
                   "device": str(get_device()), "ddp": type(model).__name__,
                   "sampler": type(loader.sampler).__name__}, f)


def _check_ranks(out, backend):
    seen = [json.load(open(os.path.join(out, f"rank{r}.json"))) for r in range(2)]
    for s in seen:
        assert s["backend"] == backend and s["sum"] == 3.0
        assert s["device"] == "cpu" and s["ddp"] == "DistributedDataParallel"
        assert s["sampler"] == "DistributedSampler"
    assert seen[0]["params"] == pytest.approx(seen[1]["params"])     # DDP kept them in sync


def test_quickstart_over_gloo(cluster, tmp_path):
    result = TorchTrainer(
        quickstart_loop, train_loop_config={"epochs": 3, "out": str(tmp_path)},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="quickstart", storage_path=str(tmp_path), verbose=0,
                             checkpoint_config=CheckpointConfig(num_to_keep=2))).fit()
    assert result.metrics["epoch"] == 2 and result.metrics["batches"] == 2   # half of 4
    _check_ranks(str(tmp_path), "gloo")
    model = _model()
    with result.checkpoint.as_directory() as d:
        model.load_state_dict(torch.load(os.path.join(d, "model.pt")))
    assert sorted(e for e in os.listdir(result.path) if e.startswith("checkpoint_")) == [
        "checkpoint_000001", "checkpoint_000002"]
    assert list(result.metrics_dataframe["epoch"]) == [0, 1, 2]


def test_ddp_over_the_zray_backend(cluster, tmp_path):
    result = TorchTrainer(
        quickstart_loop, train_loop_config={"epochs": 1, "out": str(tmp_path)},
        torch_config=TorchConfig(backend="zray", timeout_s=120),
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="zray-backend", storage_path=str(tmp_path), verbose=0)).fit()
    assert result.metrics["epoch"] == 0
    _check_ranks(str(tmp_path), "zray")


def resumable_loop(config):
    """DDP over gloo; rank 1 kills itself (SIGKILL) in epoch 2 of the first attempt, while
    rank 0 may be inside an allreduce with it."""
    import signal

    from torch import nn
    from zray.train.torch import prepare_model
    ctx = train.get_context()
    model = prepare_model(_model(), parallel_strategy=config["strategy"])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    start = 0
    checkpoint = train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = json.load(open(os.path.join(d, "epoch.json")))["epoch"] + 1
    x = torch.randn(32, 8)
    for epoch in range(start, 4):
        if epoch == 2 and ctx.get_world_rank() == 1 and not os.path.exists(config["flag"]):
            open(config["flag"], "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
        with tempfile.TemporaryDirectory() as d:
            ck = None
            if ctx.get_world_rank() == 0:
                json.dump({"epoch": epoch}, open(os.path.join(d, "epoch.json"), "w"))
                ck = train.Checkpoint.from_directory(d)
            train.report({"epoch": epoch, "start": start, "model": type(model).__name__},
                         checkpoint=ck)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_killed_ddp_worker_resumes_from_its_checkpoint(cluster, tmp_path, strategy):
    from zray.train import FailureConfig
    result = TorchTrainer(
        resumable_loop, train_loop_config={"flag": str(tmp_path / "once"), "strategy": strategy},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="resume", storage_path=str(tmp_path), verbose=0,
                             failure_config=FailureConfig(max_failures=1))).fit()
    # Resumed from a checkpoint, not from scratch: epoch 1's when rank 0 had reported it
    # before rank 1 died, else epoch 0's (the kill races with rank 0's report).
    assert result.metrics["epoch"] == 3 and result.metrics["start"] in (1, 2)
    assert result.metrics["model"] == {"ddp": "DistributedDataParallel",
                                       "fsdp": "FullyShardedDataParallel"}[strategy]
    assert result._stats["failures"] == 1
