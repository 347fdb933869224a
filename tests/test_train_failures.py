"""zray.train without torch: ranks, in-process runs, a killed worker resumed from its
checkpoint, an exception in the loop, a rank that skips report()."""
import json
import os
import signal
import tempfile
import time

import pytest

import zray
from zray import train
from zray.train import (Checkpoint, DataParallelTrainer, FailureConfig, RunConfig,
                        ScalingConfig, WorkerGroupError)


@pytest.fixture(scope="module")
def cluster():
    if zray.is_initialized():
        zray.shutdown()
    zray.init(num_cpus=2)
    yield
    zray.shutdown()


def _run(tmp_path, loop, name, config=None, num_workers=2, **run_kwargs):
    return DataParallelTrainer(
        loop, train_loop_config=config, scaling_config=ScalingConfig(num_workers=num_workers),
        run_config=RunConfig(name=name, storage_path=str(tmp_path), verbose=0, **run_kwargs)
    ).fit()


def _save(state):
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "state.json"), "w") as f:
        json.dump(state, f)
    return Checkpoint.from_directory(d)


def _load(checkpoint):
    with checkpoint.as_directory() as d, open(os.path.join(d, "state.json")) as f:
        return json.load(f)


def context_loop(config):
    ctx = train.get_context()
    env = {k: os.environ[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                                      "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")}
    with open(os.path.join(config["out"], f"rank{ctx.get_world_rank()}.json"), "w") as f:
        json.dump({"rank": ctx.get_world_rank(), "size": ctx.get_world_size(),
                   "local": ctx.get_local_rank(), "local_size": ctx.get_local_world_size(),
                   "node": ctx.get_node_rank(), "name": ctx.get_experiment_name(),
                   "env": env}, f)
    for i in range(3):
        train.report({"i": i, "rank": ctx.get_world_rank()},
                     checkpoint=_save({"i": i}) if ctx.get_world_rank() == 0 else None)


def test_ranks_world_size_and_checkpoints_kept(cluster, tmp_path):
    from zray.train import CheckpointConfig
    result = _run(tmp_path, context_loop, "ctx", {"out": str(tmp_path)},
                  checkpoint_config=CheckpointConfig(num_to_keep=2))
    seen = [json.load(open(tmp_path / f"rank{r}.json")) for r in range(2)]
    for r, s in enumerate(seen):
        assert (s["rank"], s["size"], s["local"], s["local_size"], s["node"]) == (r, 2, r, 2, 0)
        assert s["env"]["RANK"] == str(r) and s["env"]["WORLD_SIZE"] == "2"
        assert s["env"]["LOCAL_WORLD_SIZE"] == "2" and s["env"]["NODE_RANK"] == "0"
        assert s["name"] == "ctx"
    assert seen[0]["env"]["MASTER_PORT"] == seen[1]["env"]["MASTER_PORT"]
    assert result.metrics == {"i": 2, "rank": 0}
    assert result.path == str(tmp_path / "ctx")
    assert _load(result.checkpoint) == {"i": 2}
    kept = sorted(e for e in os.listdir(result.path) if e.startswith("checkpoint_"))
    assert kept == ["checkpoint_000001", "checkpoint_000002"]
    assert [m["i"] for _, m in result.best_checkpoints] == [2, 1]
    assert all(lat < 5 for lat in result._stats["report_latency_s"])


def in_process_loop(config):
    ctx = train.get_context()
    start = _load(train.get_checkpoint())["i"] + 1 if train.get_checkpoint() else 0
    for i in range(start, config["n"]):
        train.report({"i": i, "size": ctx.get_world_size()}, checkpoint=_save({"i": i}))


def test_num_workers_zero_runs_in_the_driver_and_resumes(tmp_path):
    first = _run(tmp_path, in_process_loop, "local", {"n": 2}, num_workers=0)
    assert first.metrics == {"i": 1, "size": 1}
    again = DataParallelTrainer(in_process_loop, train_loop_config={"n": 4},
                                scaling_config=ScalingConfig(num_workers=0),
                                run_config=RunConfig(name="local2", storage_path=str(tmp_path),
                                                     verbose=0),
                                resume_from_checkpoint=first.checkpoint).fit()
    assert again.metrics == {"i": 3, "size": 1}
    assert list(again.metrics_dataframe["i"]) == [2, 3]


def killed_loop(config):
    ctx = train.get_context()
    ck = train.get_checkpoint()
    start = _load(ck)["epoch"] + 1 if ck else 0
    for epoch in range(start, 4):
        if epoch == 2 and ctx.get_world_rank() == 1 and not os.path.exists(config["flag"]):
            open(config["flag"], "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        train.report({"epoch": epoch, "start": start},
                     checkpoint=_save({"epoch": epoch}) if ctx.get_world_rank() == 0 else None)
        time.sleep(0.05)


def test_a_killed_worker_restarts_the_group_from_the_latest_checkpoint(cluster, tmp_path):
    result = _run(tmp_path, killed_loop, "killed", {"flag": str(tmp_path / "killed-once")},
                  failure_config=FailureConfig(max_failures=1))
    # Rank 1 dies right after reporting epoch 1: whether that report (and so epoch 1's
    # checkpoint) reached the controller before the death did is a race, as in Ray; the group
    # resumes from the latest checkpoint that was persisted, epoch 0 or 1.
    assert result.metrics["epoch"] == 3 and result.metrics["start"] in (1, 2), result.metrics
    assert result._stats["failures"] == 1
    assert _load(result.checkpoint) == {"epoch": 3}


def test_a_killed_worker_past_max_failures_fails_fit_naming_the_rank(cluster, tmp_path):
    with pytest.raises(WorkerGroupError, match="rank 1") as info:
        _run(tmp_path, killed_loop, "killed0", {"flag": str(tmp_path / "killed-once")})
    assert 1 in info.value.worker_failures
    assert "max_failures=0" in str(info.value)


def raising_loop(config):
    train.report({"step": 0})
    if train.get_context().get_world_rank() == 1:
        raise ValueError("boom in the training loop")
    train.report({"step": 1})


def test_an_exception_in_the_loop_surfaces_with_its_traceback(cluster, tmp_path):
    with pytest.raises(WorkerGroupError) as info:
        _run(tmp_path, raising_loop, "raising")
    text = str(info.value)
    assert "rank 1" in text and "boom in the training loop" in text
    assert "raising_loop" in text                   # the worker's traceback
    assert isinstance(info.value.__cause__, ValueError)


def silent_loop(config):
    if train.get_context().get_world_rank() == 0:
        train.report({"step": 0})
    if config["hang"]:
        time.sleep(60)


def test_a_rank_that_skips_report_and_hangs_fails_fit_after_the_timeout(cluster, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("ZRAY_TRAIN_REPORT_TIMEOUT_S", "2")
    t0 = time.monotonic()
    with pytest.raises(WorkerGroupError, match="rank 1 has not called zray.train.report"):
        _run(tmp_path, silent_loop, "silent", {"hang": True})
    assert time.monotonic() - t0 < 40


def test_a_rank_that_returns_without_reporting_fails_fit_at_once(cluster, tmp_path):
    with pytest.raises(WorkerGroupError, match="rank 1 finished its training loop after 0"):
        _run(tmp_path, silent_loop, "skipped", {"hang": False})


class _Splittable:
    """Stands in for a zray.data Dataset (the end-to-end test waits for zray.data)."""

    def __init__(self, rows):
        self.rows = rows

    def streaming_split(self, n, equal=True):
        return [self.rows[i::n] for i in range(n)]


def shard_loop(config):
    shard = train.get_dataset_shard("train")
    train.report({"rows": list(shard), "rank": train.get_context().get_world_rank()})
    with open(os.path.join(config["out"], f"shard{train.get_context().get_world_rank()}"),
              "w") as f:
        json.dump({"train": list(shard), "plain": train.get_dataset_shard("plain")}, f)


def test_each_worker_gets_its_dataset_shard(cluster, tmp_path):
    DataParallelTrainer(
        shard_loop, train_loop_config={"out": str(tmp_path)},
        datasets={"train": _Splittable(list(range(6))), "plain": [1, 2]},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="shards", storage_path=str(tmp_path), verbose=0)).fit()
    got = [json.load(open(tmp_path / f"shard{r}")) for r in range(2)]
    assert got[0] == {"train": [0, 2, 4], "plain": [1, 2]}
    assert got[1] == {"train": [1, 3, 5], "plain": [1, 2]}


def test_progress_lines_one_per_report_and_quiet(tmp_path, capsys):
    DataParallelTrainer(in_process_loop, train_loop_config={"n": 2},
                        scaling_config=ScalingConfig(num_workers=0),
                        run_config=RunConfig(name="loud", storage_path=str(tmp_path))).fit()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "(zray.train loud)" in ln]
    assert len(lines) == 2 and "report 1" in lines[1] and "i=1" in lines[1]
    _run(tmp_path, in_process_loop, "quiet", {"n": 2}, num_workers=0)
    assert "zray.train" not in capsys.readouterr().out
