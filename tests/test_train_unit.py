"""zray.train's decisions without processes: report aggregation, checkpoint retention, the
failure policy, rank assignment, configs, Checkpoint and Result."""
import os

import pytest

from zray.train import (Checkpoint, CheckpointConfig, FailureConfig, Result, RunConfig,
                        ScalingConfig, TrainTunables)
from zray.train.policy import (CheckpointRetention, FailurePolicy, GiveUp, IterationDone,
                               ReportAggregator, Restart, TrackedCheckpoint)
from zray.train.worker_group import assign_ranks, node_visible_gpus


# -- report aggregation ---------------------------------------------------------------------------
def test_an_iteration_completes_when_every_rank_reported_it():
    agg = ReportAggregator(2, report_timeout_s=10)
    assert agg.handle_report(1, 0, {"loss": 2}, False, now=0.0) == []
    done = agg.handle_report(0, 0, {"loss": 1}, True, now=0.5)
    assert done == [IterationDone(0, {"loss": 1}, (0,), 0.5)]
    assert agg.completed == 1


def test_ranks_may_run_ahead_of_each_other():
    agg = ReportAggregator(2, report_timeout_s=10)
    for i in range(3):
        assert agg.handle_report(0, i, {"i": i}, False, now=i) == []
    assert [d.iteration for i in range(3)
            for d in agg.handle_report(1, i, {}, False, now=5)] == [0, 1, 2]


def test_a_rank_out_of_order_is_a_bug():
    agg = ReportAggregator(2, report_timeout_s=10)
    with pytest.raises(ValueError, match="expected 0"):
        agg.handle_report(0, 1, {}, False, now=0)
    with pytest.raises(ValueError, match="out of range"):
        agg.handle_report(2, 0, {}, False, now=0)


def test_a_rank_that_finishes_with_fewer_reports_is_named():
    agg = ReportAggregator(3, report_timeout_s=10)
    agg.handle_report(0, 0, {}, False, now=0)
    agg.handle_report(2, 0, {}, False, now=0)
    [s] = agg.handle_finished(1)
    assert (s.rank, s.reported, s.expected, s.ahead, s.finished) == (1, 0, 1, (0, 2), True)
    assert "rank 1 finished" in s.message()


def test_a_finished_rank_is_named_when_another_reports_past_it():
    agg = ReportAggregator(2, report_timeout_s=10)
    agg.handle_report(1, 0, {}, False, now=0)
    agg.handle_report(0, 0, {}, False, now=0)
    assert agg.handle_finished(1) == []
    [s] = agg.handle_report(0, 1, {}, False, now=1)
    assert (s.rank, s.reported, s.expected, s.finished) == (1, 1, 2, True)


def test_a_silent_rank_is_named_after_the_report_timeout():
    agg = ReportAggregator(2, report_timeout_s=10)
    agg.handle_report(0, 0, {}, False, now=100.0)
    assert agg.next_deadline() == 110.0
    assert agg.check_timeouts(now=109.9) == []
    [s] = agg.check_timeouts(now=110.5)
    assert (s.rank, s.reported, s.expected, s.ahead, s.finished) == (1, 0, 1, (0,), False)
    assert "rank 1 has not called zray.train.report() for iteration 0" in s.message()


def test_nothing_pending_means_no_deadline():
    agg = ReportAggregator(1, report_timeout_s=1)
    assert agg.handle_report(0, 0, {}, False, now=0)[0].iteration == 0
    assert agg.next_deadline() is None and agg.check_timeouts(now=1e9) == []
    assert agg.handle_finished(0) == [] and agg.all_finished


def test_aggregator_checks_its_arguments():
    with pytest.raises(ValueError):
        ReportAggregator(0, 1)
    with pytest.raises(ValueError):
        ReportAggregator(1, 0)


# -- checkpoint retention -------------------------------------------------------------------------
def _ck(i, **metrics):
    return TrackedCheckpoint(i, f"checkpoint_{i:06d}", metrics)


def test_retention_keeps_everything_by_default():
    ret = CheckpointRetention()
    assert all(ret.register(_ck(i)) == [] for i in range(5))
    assert [c.index for c in ret.best()] == [4, 3, 2, 1, 0]


def test_retention_keeps_the_most_recent_without_a_score():
    ret = CheckpointRetention(num_to_keep=2)
    dropped = [c.index for i in range(5) for c in ret.register(_ck(i))]
    assert dropped == [0, 1, 2]
    assert [c.index for c in ret.kept] == [3, 4]


def test_retention_keeps_the_best_by_score_and_always_the_latest():
    ret = CheckpointRetention(num_to_keep=1, score_attribute="acc", score_order="max")
    assert ret.register(_ck(0, acc=0.9)) == []
    assert [c.index for c in ret.register(_ck(1, acc=0.5))] == []     # latest stays
    assert [c.index for c in ret.register(_ck(2, acc=0.7))] == [1]
    assert [c.index for c in ret.best()] == [0, 2]


def test_retention_min_order_and_nested_attribute():
    ret = CheckpointRetention(num_to_keep=2, score_attribute="val/loss", score_order="min")
    for i, loss in enumerate([3.0, 1.0, 2.0, 5.0]):
        ret.register(_ck(i, val={"loss": loss}))
    assert sorted(c.index for c in ret.kept) == [1, 2, 3]
    assert [c.index for c in ret.best()][:2] == [1, 2]


def test_retention_ranks_checkpoints_missing_the_attribute_last():
    ret = CheckpointRetention(num_to_keep=1, score_attribute="acc")
    ret.register(_ck(0))
    assert [c.index for c in ret.register(_ck(1, acc=0.1))] == [0]


def test_retention_checks_its_arguments():
    with pytest.raises(ValueError):
        CheckpointRetention(num_to_keep=0)
    with pytest.raises(ValueError):
        CheckpointRetention(score_order="best")


# -- failures -------------------------------------------------------------------------------------
def test_failure_policy_restarts_max_failures_times():
    policy = FailurePolicy(2)
    assert policy.handle_failure("a") == Restart(1, "a")
    assert policy.handle_failure("b") == Restart(2, "b")
    assert policy.handle_failure("c") == GiveUp(3, "c")


def test_failure_policy_zero_gives_up_and_minus_one_never_does():
    assert isinstance(FailurePolicy(0).handle_failure("x"), GiveUp)
    forever = FailurePolicy(-1)
    assert all(isinstance(forever.handle_failure("x"), Restart) for _ in range(100))
    with pytest.raises(ValueError):
        FailurePolicy(-2)


# -- ranks ----------------------------------------------------------------------------------------
def test_ranks_are_contiguous_per_node_with_the_drivers_node_first():
    infos = [{"node_id": "b"}, {"node_id": "a"}, {"node_id": "b"}, {"node_id": "a"}]
    ranks = assign_ranks(infos, first_node_id="a")
    assert [(r.world_rank, r.local_rank, r.local_world_size, r.node_rank) for r in ranks] == [
        (2, 0, 2, 1), (0, 0, 2, 0), (3, 1, 2, 1), (1, 1, 2, 0)]


def test_local_ranks_follow_gpu_ids():
    infos = [{"node_id": "a", "gpu_ids": ["3"]}, {"node_id": "a", "gpu_ids": ["1"]}]
    assert [r.local_rank for r in assign_ranks(infos)] == [1, 0]
    assert node_visible_gpus(infos + [{"node_id": "b", "gpu_ids": ["0"]}], "a") == ["1", "3"]


# -- configs, Checkpoint, Result ------------------------------------------------------------------
def test_configs_check_their_arguments():
    with pytest.raises(ValueError):
        ScalingConfig(num_workers=-1)
    with pytest.raises(ValueError):
        ScalingConfig(placement_strategy="ANY")
    with pytest.raises(ValueError):
        CheckpointConfig(num_to_keep=0)
    with pytest.raises(ValueError):
        FailureConfig(max_failures=-3)
    with pytest.raises(NotImplementedError):
        RunConfig(storage_path="s3://bucket/x")
    assert ScalingConfig(num_workers=2, use_gpu=True).total_resources == {"CPU": 2, "GPU": 2}
    assert ScalingConfig(resources_per_worker={"CPU": 2}).total_resources == {"CPU": 2}


def test_tunables_from_the_environment():
    t = TrainTunables.from_env({"ZRAY_TRAIN_REPORT_TIMEOUT_S": "3"})
    assert t.report_timeout_s == 3.0
    with pytest.raises(ValueError):
        TrainTunables.from_env({"ZRAY_TRAIN_POLL_S": "0"})
    with pytest.raises(ValueError):
        TrainTunables.from_env({"ZRAY_TRAIN_POLL_S": "soon"})


def test_checkpoint_directory_round_trip_and_metadata(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.txt").write_text("7")
    ck = Checkpoint.from_directory(str(src))
    ck.update_metadata({"epoch": 3})
    assert ck.get_metadata() == {"epoch": 3}
    out = ck.to_directory(str(tmp_path / "dst"))
    assert open(os.path.join(out, "w.txt")).read() == "7"
    with ck.as_directory() as d:
        assert d == str(src)
    from zray.train.checkpoint import pack_directory, unpack_directory
    back = unpack_directory(pack_directory(str(src)), str(tmp_path / "unpacked"))
    assert open(os.path.join(back, "w.txt")).read() == "7"


def test_result_best_checkpoint_and_dataframe():
    a, b = Checkpoint("/a"), Checkpoint("/b")
    r = Result(metrics={"loss": 1}, checkpoint=b, best_checkpoints=[(a, {"loss": 2}),
                                                                    (b, {"loss": 1})],
               metrics_history=[{"loss": 2}, {"loss": 1}])
    assert r.get_best_checkpoint("loss", "min") is b
    assert r.get_best_checkpoint("loss", "max") is a
    assert r.get_best_checkpoint("acc", "max") is None
    assert list(r.metrics_dataframe["loss"]) == [2, 1]


def test_import_zray_does_not_import_train_or_torch():
    import subprocess
    import sys
    code = ("import sys, zray; assert 'zray.train' not in sys.modules; import zray.train; "
            "assert 'torch' not in sys.modules and 'pandas' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_checkpoint_from_a_worker_without_the_storage_travels_packed(tmp_path):
    """The worker side packs when the run's marker is not visible; the driver side unpacks
    into the run's directory and registers it."""
    from zray.train.controller import Controller
    from zray.train.data_parallel_trainer import BackendConfig
    from zray.train.session import TrainContext, TrainSession, WorkerStorage
    ctl = Controller(train_fn=lambda: None, train_config=None, backend_config=BackendConfig(),
                     scaling_config=ScalingConfig(num_workers=1),
                     run_config=RunConfig(name="packed", storage_path=str(tmp_path), verbose=0),
                     datasets=None, resume_from_checkpoint=None, metadata=None)
    ctl._prepare_storage()
    ctl._attempt_first_index = 0
    events = []
    remote = WorkerStorage(str(tmp_path / "elsewhere"), "another-token", 0)   # not visible
    session = TrainSession(TrainContext(), remote, events.append)
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.txt").write_text("9")
    session.report({"loss": 1.0}, checkpoint=Checkpoint.from_directory(str(src)))
    [event] = events
    assert event.packed and event.checkpoint_name == "checkpoint_000000"
    agg = ReportAggregator(1, 10)
    assert ctl._on_report(agg, event) == []
    assert open(os.path.join(ctl.latest.path, "w.txt")).read() == "9"
    assert ctl.latest.path == str(tmp_path / "packed" / "checkpoint_000000")


# -- importing zray.train.torch asks for the workers' torch early -------------------------------
def test_importing_zray_train_torch_before_init_leaves_torch_for_the_next_init(monkeypatch):
    pytest.importorskip("torch")
    import importlib
    import zray.train.torch as train_torch
    from zray.util import worker_preload
    monkeypatch.setattr(worker_preload, "_pending", [])
    monkeypatch.setattr("zray.objects.object_ref.get_runtime", lambda: None)   # before init()
    monkeypatch.setattr("zray.is_initialized", lambda: False)
    importlib.reload(train_torch)
    assert worker_preload.take_pending() == train_torch.TorchConfig.preload_modules
    monkeypatch.setenv("ZRAY_TRAIN_PRELOAD_ON_IMPORT", "0")       # left to fit()
    importlib.reload(train_torch)
    assert worker_preload.take_pending() == ()
    monkeypatch.delenv("ZRAY_TRAIN_PRELOAD_ON_IMPORT")
    monkeypatch.setattr("zray.is_initialized", lambda: True)      # after init, or in a worker:
    importlib.reload(train_torch)                                  # fit() asks, once
    assert worker_preload.take_pending() == ()
