"""A zray.train TorchTrainer run inside Tune trials: `Tuner(trainer, param_space={
"train_loop_config": ...})`, with 2 gloo workers per trial, the scheduler's decisions, the
trial's checkpoints and a trial retried from its checkpoint."""
import json
import os
import tempfile

import pytest

torch = pytest.importorskip("torch")

from zray import train, tune  # noqa: E402
from zray.train.torch import TorchTrainer  # noqa: E402
from zray.tune.schedulers import ASHAScheduler  # noqa: E402


def train_loop(config):
    import torch.distributed as dist
    ctx = train.get_context()
    start = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d, open(os.path.join(d, "state.json")) as f:
            start = json.load(f)["epoch"] + 1
    crash_marker = config.get("crash_once_at")
    for epoch in range(start, config["epochs"]):
        if crash_marker and epoch == 2 and not os.path.exists(crash_marker):
            open(crash_marker, "w").close()
            raise RuntimeError("the loop fails once")
        # a collective each epoch: the 2 ranks really form one gloo group
        t = torch.tensor([float(ctx.get_world_rank() + 1)])
        dist.all_reduce(t)
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if ctx.get_world_rank() == 0:
                with open(os.path.join(d, "state.json"), "w") as f:
                    json.dump({"epoch": epoch, "q": config["q"]}, f)
                ckpt = train.Checkpoint.from_directory(d)
            train.report({"loss": config["q"] / (epoch + 1), "epoch": epoch, "resumed_at": start,
                          "world_size": ctx.get_world_size(), "rank_sum": t.item()},
                         checkpoint=ckpt)


def _trainer(**loop_config):
    return TorchTrainer(train_loop, train_loop_config={"epochs": 6, **loop_config},
                        scaling_config=train.ScalingConfig(num_workers=2))


def _checkpoints(path):
    return sorted(d for d in os.listdir(path) if d.startswith("checkpoint_"))


@pytest.mark.timeout(600)
def test_torch_trainer_in_trials_with_asha_and_checkpoints(shared_cluster, tmp_path):
    # best first, so ASHA stops the second trial at its first rung
    results = tune.Tuner(
        _trainer(), param_space={"train_loop_config": {"q": tune.grid_search([1.0, 2.0])}},
        tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=ASHAScheduler(
            max_t=6, grace_period=1, reduction_factor=2)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="tt", verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2))).fit()
    assert results.num_errors == 0
    by_q = {r.config["train_loop_config"]["q"]: r for r in results}
    best, stopped = by_q[1.0], by_q[2.0]
    assert os.path.basename(best.path).startswith("TorchTrainer_")
    m = best.metrics
    assert m["training_iteration"] == 6 and m["epoch"] == 5
    assert m["world_size"] == 2 and m["rank_sum"] == 3.0
    assert results.get_best_result().config["train_loop_config"]["q"] == 1.0
    # Train wrote its checkpoints in the trial's directory; Tune kept the last 2
    assert _checkpoints(best.path) == ["checkpoint_000004", "checkpoint_000005"]
    with best.checkpoint.as_directory() as d, open(os.path.join(d, "state.json")) as f:
        assert json.load(f) == {"epoch": 5, "q": 1.0}
    # the stop at the first rung ended the Train run there; the checkpoint the ranks wrote for
    # the iteration after it (which Tune never heard of) is gone
    assert stopped.metrics["training_iteration"] == 1
    assert _checkpoints(stopped.path) == ["checkpoint_000000"]
    rows = best.metrics_dataframe
    assert list(rows["epoch"]) == [0, 1, 2, 3, 4, 5]


@pytest.mark.timeout(600)
def test_a_failed_trainer_trial_is_retried_from_its_checkpoint(shared_cluster, tmp_path):
    marker = str(tmp_path / "crashed")
    results = tune.Tuner(
        _trainer(epochs=4, crash_once_at=marker),
        param_space={"train_loop_config": {"q": 1.0}},
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="retry", verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1))).fit()
    (r,) = results
    assert r.error is None and os.path.exists(marker)
    # epochs 0 and 1, then a failure; the retry resumed from epoch 1's checkpoint
    assert r.metrics["resumed_at"] == 2 and r.metrics["epoch"] == 3
    assert list(r.metrics_dataframe["epoch"]) == [0, 1, 2, 3]


def test_trainer_param_spaces_that_cannot_work_are_refused(shared_cluster, tmp_path):
    rc = tune.RunConfig(storage_path=str(tmp_path), verbose=0)
    with pytest.raises(ValueError, match="unknown keys \\['lr'\\]"):
        tune.Tuner(_trainer(), param_space={"lr": 0.1}, run_config=rc).fit()
    big = TorchTrainer(train_loop, scaling_config=train.ScalingConfig(num_workers=3))
    with pytest.raises(tune.TuneError, match="no trial could ever start"):
        tune.Tuner(big, run_config=rc).fit()
    with pytest.raises(ValueError, match="unknown fields \\['workers'\\]"):
        tune.Tuner(_trainer(), param_space={"scaling_config": {"workers": 2}},
                   run_config=rc).fit()
