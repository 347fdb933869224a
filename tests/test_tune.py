"""zray.tune on a real cluster: the quickstart, the function and class APIs, schedulers,
searchers, checkpoints, errors, the legacy tune.run. Trials are tiny; every run has a bound."""
import json
import os
import sys

import pytest

import zray
from zray import tune
from zray.tune.schedulers import ASHAScheduler, PopulationBasedTraining


def _run_config(tmp_path, **kw):
    kw.setdefault("verbose", 0)
    return tune.RunConfig(storage_path=str(tmp_path), **kw)


def test_import_zray_does_not_import_tune_or_heavy_deps():
    import subprocess
    code = ("import sys, zray; assert 'zray.tune' not in sys.modules; "
            "from zray import tune; "
            "assert not {'pandas', 'optuna', 'tensorboardX'} & set(sys.modules), sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_quickstart_grid_and_choice(shared_cluster, tmp_path):
    def objective(config):
        score = config["a"] ** 2 + config["b"]
        return {"score": score}

    tuner = tune.Tuner(objective, param_space={"a": tune.grid_search([0.001, 0.01, 0.1, 1.0]),
                                               "b": tune.choice([1, 2, 3])},
                       run_config=_run_config(tmp_path, name="quick"))
    results = tuner.fit()
    assert len(results) == 4 and results.num_errors == 0
    best = results.get_best_result(metric="score", mode="min")
    assert best.config["a"] in (0.001, 0.01, 0.1, 1.0)
    assert best.metrics["score"] == min(r.metrics["score"] for r in results)
    assert [r.config["a"] for r in results] == [0.001, 0.01, 0.1, 1.0]
    df = results.get_dataframe()
    assert {"score", "config/a", "config/b", "trial_id", "training_iteration"} <= set(df.columns)
    # Ray's on-disk layout
    exp = os.path.join(str(tmp_path), "quick")
    assert os.path.exists(os.path.join(exp, "tuner.pkl"))
    assert any(f.startswith("experiment_state-") for f in os.listdir(exp))
    trial_dir = results[0].path
    assert os.path.basename(trial_dir).startswith("objective_")
    for name in ("params.json", "params.pkl", "result.json", "progress.csv"):
        assert os.path.exists(os.path.join(trial_dir, name)), name
    with open(os.path.join(trial_dir, "params.json")) as f:
        assert json.load(f)["a"] == 0.001
    assert results[0].metrics["done"] is True


def test_report_dict_kwargs_track_log_and_context(shared_cluster, tmp_path):
    def trainable(config):
        ctx = tune.get_context()
        assert tune.get_checkpoint() is None
        tune.report({"a": 1}, b=2)
        tune.report(c=3)
        tune.track.log(d=4, trial_name=ctx.get_trial_name(), trial_id=ctx.get_trial_id(),
                       trial_dir=ctx.get_trial_dir(), exp=ctx.get_experiment_name())

    (res,) = tune.Tuner(trainable, run_config=_run_config(tmp_path, name="ctx")).fit()
    assert res.error is None
    m = res.metrics
    assert m["d"] == 4 and m["training_iteration"] == 3
    assert m["trial_id"] in m["trial_name"] and m["exp"] == "ctx"
    assert m["trial_dir"] == res.path
    rows = res.metrics_dataframe
    assert list(rows["a"][:1]) == [1] and list(rows["b"][:1]) == [2]


def test_asha_stops_bad_trials_early(shared_cluster, tmp_path):
    def trainer(config):
        for i in range(10):
            tune.report({"score": config["q"] * (i + 1)})

    # Best first: every later trial is worse than its rung's record, whatever the order in
    # which the trials run, so ASHA has trials to stop.
    results = tune.Tuner(
        trainer, param_space={"q": tune.grid_search([0.1 * i for i in range(8, 0, -1)])},
        tune_config=tune.TuneConfig(metric="score", mode="max",
                                    scheduler=ASHAScheduler(max_t=10, grace_period=1,
                                                            reduction_factor=2)),
        run_config=_run_config(tmp_path)).fit()
    iters = {round(r.config["q"], 1): r.metrics["training_iteration"] for r in results}
    assert iters[0.8] == 10                     # the best goes to max_t
    assert min(iters.values()) < 10             # some were stopped early
    assert sum(iters.values()) < 80
    # report() waits for ASHA's decision, so a trial stops at the rung that stopped it
    assert set(iters.values()) <= {1, 2, 4, 8, 10}
    assert results.get_best_result().config["q"] == pytest.approx(0.8)


def test_trial_that_raises_is_recorded_and_others_go_on(shared_cluster, tmp_path):
    def trainable(config):
        if config["x"] == 2:
            raise ValueError("bad x")
        tune.report({"x": config["x"]})

    results = tune.Tuner(trainable, param_space={"x": tune.grid_search([1, 2, 3])},
                         run_config=_run_config(tmp_path)).fit()
    assert results.num_errors == 1 and results.num_terminated == 2
    (err,) = results.errors
    assert isinstance(err, ValueError) and "bad x" in str(err)
    assert os.path.exists(os.path.join(results[1].path, "error.txt"))
    assert [r.metrics.get("x") for r in (results[0], results[2])] == [1, 3]


def test_fail_fast(shared_cluster, tmp_path):
    def trainable(config):
        if config["x"] == 0:
            raise RuntimeError("first fails")
        import time
        for i in range(200):
            tune.report({"i": i})
            time.sleep(0.01)

    results = tune.Tuner(
        trainable, param_space={"x": tune.grid_search(list(range(6)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=_run_config(tmp_path, failure_config=tune.FailureConfig(fail_fast=True))).fit()
    assert results.num_errors == 1
    assert all(r.metrics.get("training_iteration", 0) < 200 for r in results)
    with pytest.raises(RuntimeError, match="first fails"):
        tune.Tuner(trainable, param_space={"x": tune.grid_search([0, 1])},
                   run_config=_run_config(tmp_path, failure_config=tune.FailureConfig(
                       fail_fast="raise"))).fit()


def test_max_failures_retries_from_checkpoint(shared_cluster, tmp_path):
    marker = tmp_path / "failed_once"

    def trainable(config):
        import tempfile
        start = 0
        ckpt = tune.get_checkpoint()
        if ckpt:
            with open(os.path.join(ckpt.path, "i")) as f:
                start = int(f.read()) + 1
        for i in range(start, 4):
            if i == 2 and not marker.exists():
                marker.write_text("x")
                raise RuntimeError("once")
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "i"), "w") as f:
                    f.write(str(i))
                tune.report({"i": i, "start": start}, checkpoint=tune.Checkpoint.from_directory(d))

    (res,) = tune.Tuner(trainable, run_config=_run_config(
        tmp_path, failure_config=tune.FailureConfig(max_failures=1))).fit()
    assert res.error is None
    assert res.metrics["i"] == 3 and res.metrics["start"] == 2
    assert res.metrics["training_iteration"] == 4


def test_checkpoint_keep_and_score(shared_cluster, tmp_path):
    def trainable(config):
        import tempfile
        for i, acc in enumerate([0.5, 0.9, 0.6, 0.7, 0.3]):
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "acc"), "w") as f:
                    f.write(str(acc))
                tune.report({"acc": acc}, checkpoint=tune.Checkpoint.from_directory(d))

    (res,) = tune.Tuner(trainable, run_config=_run_config(
        tmp_path, checkpoint_config=tune.CheckpointConfig(
            num_to_keep=2, checkpoint_score_attribute="acc", checkpoint_score_order="max"))).fit()
    kept = sorted(d for d in os.listdir(res.path) if d.startswith("checkpoint_"))
    assert kept == ["checkpoint_000001", "checkpoint_000003", "checkpoint_000004"]
    assert res.checkpoint.path.endswith("checkpoint_000004")     # the latest
    best_ckpt, best_metrics = res.best_checkpoints[-1]
    assert best_metrics["acc"] == 0.9
    with best_ckpt.as_directory() as d, open(os.path.join(d, "acc")) as f:
        assert f.read() == "0.9"


def test_pbt_exploits_and_explores_with_checkpoints(shared_cluster, tmp_path):
    def trainable(config):
        import tempfile
        value, step = 0.0, 0
        ckpt = tune.get_checkpoint()
        if ckpt:
            with open(os.path.join(ckpt.path, "state")) as f:
                value, step = map(float, f.read().split())
        while step < 12:
            step += 1
            value += config["lr"]
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "state"), "w") as f:
                    f.write(f"{value} {step}")
                tune.report({"value": value, "lr": config["lr"], "restored": bool(ckpt)},
                            checkpoint=tune.Checkpoint.from_directory(d))

    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=3,
                                  hyperparam_mutations={"lr": tune.uniform(0.001, 1.0)},
                                  quantile_fraction=0.5)
    results = tune.Tuner(tune.with_resources(trainable, {"cpu": 0.5}),   # all 4 at once
                         param_space={"lr": tune.grid_search([0.001, 0.002, 0.5, 1.0])},
                         tune_config=tune.TuneConfig(metric="value", mode="max", scheduler=pbt),
                         run_config=_run_config(tmp_path)).fit()
    assert results.num_errors == 0
    assert pbt._num_perturbations >= 1
    exploited = {tid for (_, tid, _, _, _) in pbt.policy_log}
    first_exploit = {}
    for (t, tid, _, _, _) in pbt.policy_log:
        first_exploit.setdefault(tid, t)
    gained = 0
    for r in results:
        with open(os.path.join(r.checkpoint.path, "state")) as f:
            value, step = map(float, f.read().split())
        assert step == 12          # each ran to the end, itself or in the state it took last
        if r.metrics["trial_id"] in exploited:
            # report() waits for PBT's decision: the trial's own run ends at the exploit
            rows = r.metrics_dataframe
            own = rows[rows["restored"] == False]["training_iteration"]   # noqa: E712
            assert own.max() == first_exploit[r.metrics["trial_id"]]
            # A donor ranked at its last step leaves the trial nothing more to report.
            assert r.metrics["training_iteration"] <= 12
            gained += value > 1        # took a good trial's state
    assert gained >= 1
    assert results.get_best_result().metrics["value"] >= 6


class _Counter(tune.Trainable):
    def setup(self, config, data=None):
        self.x = 0
        self.data = data
        self.resets = 0

    def step(self):
        self.x += self.config["inc"]
        return {"x": self.x, "data": self.data, "resets": self.resets,
                "cpus": self.trial_resources.get("CPU")}

    def save_checkpoint(self, checkpoint_dir):
        return {"x": self.x}

    def load_checkpoint(self, checkpoint):
        self.x = checkpoint["x"]

    def reset_config(self, new_config):
        self.x = 0
        self.resets += 1
        return True


def test_class_api_with_parameters_and_resources(shared_cluster, tmp_path):
    trainable = tune.with_resources(tune.with_parameters(_Counter, data=[1, 2, 3]), {"cpu": 1})
    results = tune.Tuner(
        trainable, param_space={"inc": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=_run_config(tmp_path, stop={"training_iteration": 3},
                               checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2,
                                                                       checkpoint_at_end=True))
    ).fit()
    assert results.num_errors == 0
    assert [r.metrics["x"] for r in results] == [3, 6, 9]
    assert all(r.metrics["data"] == [1, 2, 3] and r.metrics["cpus"] == 1 for r in results)
    assert max(r.metrics["resets"] for r in results) >= 1          # the actor was reused
    ckpts = sorted(d for d in os.listdir(results[0].path) if d.startswith("checkpoint_"))
    assert ckpts == ["checkpoint_000000", "checkpoint_000001"]     # at iteration 2 and the end


def test_function_with_parameters(shared_cluster, tmp_path):
    import numpy as np

    def trainable(config, data):
        tune.report({"sum": float(data.sum()) * config["k"]})

    results = tune.Tuner(tune.with_parameters(trainable, data=np.ones(1000)),
                         param_space={"k": tune.grid_search([1, 2])},
                         run_config=_run_config(tmp_path)).fit()
    assert [r.metrics["sum"] for r in results] == [1000.0, 2000.0]


def test_optuna_search(shared_cluster, tmp_path):
    pytest.importorskip("optuna")
    from zray.tune.search.optuna import OptunaSearch

    def objective(config):
        tune.report({"loss": (config["x"] - 2) ** 2 + config["nested"]["y"]})

    results = tune.Tuner(
        objective, param_space={"x": tune.uniform(-5, 5), "nested": {"y": tune.choice([0, 1])},
                                "const": 7},
        tune_config=tune.TuneConfig(search_alg=OptunaSearch(seed=1), metric="loss", mode="min",
                                    num_samples=20, max_concurrent_trials=2),
        run_config=_run_config(tmp_path)).fit()
    assert len(results) == 20 and results.num_errors == 0
    best = results.get_best_result()
    assert best.config["const"] == 7 and best.metrics["loss"] < 2


def test_stoppers_and_time_budget(shared_cluster, tmp_path):
    def forever(config):
        import time
        i = 0
        while True:
            i += 1
            tune.report({"i": i})
            time.sleep(0.01)

    results = tune.Tuner(forever, param_space={"a": tune.grid_search([1, 2])},
                         run_config=_run_config(tmp_path, stop=tune.stopper.CombinedStopper(
                             tune.stopper.MaximumIterationStopper(5),
                             tune.stopper.TimeoutStopper(30)))).fit()
    assert [r.metrics["training_iteration"] for r in results] == [5, 5]
    results = tune.Tuner(forever, param_space={"a": tune.grid_search([1, 2, 3])},
                         tune_config=tune.TuneConfig(time_budget_s=1.0),
                         run_config=_run_config(tmp_path)).fit()
    assert all(r.error is None for r in results)


def test_callbacks_and_progress_output(shared_cluster, tmp_path):
    import io
    events = []

    class Recorder(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            events.append(("start", trial.trial_id))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            events.append(("result", result["x"]))

        def on_trial_complete(self, iteration, trials, trial, **info):
            events.append(("complete", trial.trial_id))

    def trainable(config):
        tune.report(x=config["x"])

    out = io.StringIO()
    tune.Tuner(trainable, param_space={"x": tune.grid_search([1, 2])},
               run_config=_run_config(tmp_path, callbacks=[Recorder()], verbose=1,
                                      progress_reporter=tune.CLIReporter(stream=out))).fit()
    assert sorted(e[0] for e in events) == ["complete"] * 2 + ["result"] * 2 + ["start"] * 2
    text = out.getvalue()
    assert "TERMINATED" in text and "trainable_" in text


def test_legacy_tune_run(shared_cluster, tmp_path):
    def trainable(config):
        for i in range(3):
            tune.report(mean_loss=config["lr"] * (3 - i))

    analysis = tune.run(trainable, config={"lr": tune.grid_search([0.1, 0.2, 0.3])},
                        metric="mean_loss", mode="min", storage_path=str(tmp_path), verbose=0)
    assert analysis.best_config == {"lr": 0.1}
    assert analysis.get_best_config(metric="mean_loss", mode="max") == {"lr": 0.3}
    assert len(analysis.results_df) == 3 and len(analysis.dataframe()) == 3
    assert "mean_loss" in analysis.dataframe(metric="mean_loss", mode="min")

    def bad(config):
        raise ValueError("nope")

    with pytest.raises(tune.TuneError):
        tune.run(bad, storage_path=str(tmp_path), verbose=0)


def test_actors_are_reused_across_trials(shared_cluster, tmp_path):
    def trainable(config):
        tune.report(pid=os.getpid())

    results = tune.Tuner(trainable, param_space={"i": tune.grid_search(list(range(8)))},
                         tune_config=tune.TuneConfig(max_concurrent_trials=2),
                         run_config=_run_config(tmp_path)).fit()
    assert len({r.metrics["pid"] for r in results}) <= 2


def test_hyperband_pauses_and_resumes_from_checkpoints(shared_cluster, tmp_path):
    from zray.tune.schedulers import HyperBandScheduler

    def trainable(config):
        import tempfile
        step = 0
        ckpt = tune.get_checkpoint()
        if ckpt:
            with open(os.path.join(ckpt.path, "step")) as f:
                step = int(f.read())
        while step < 9:
            step += 1
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "step"), "w") as f:
                    f.write(str(step))
                tune.report({"score": config["q"] * step, "step": step},
                            checkpoint=tune.Checkpoint.from_directory(d))

    results = tune.Tuner(
        trainable, param_space={"q": tune.grid_search([0.1 * i for i in range(1, 10)])},
        tune_config=tune.TuneConfig(metric="score", mode="max",
                                    scheduler=HyperBandScheduler(max_t=9, reduction_factor=3)),
        run_config=_run_config(tmp_path)).fit()
    assert results.num_errors == 0
    for r in results:   # the step counter survives pauses: it resumed from its checkpoint
        assert r.metrics["step"] == r.metrics["training_iteration"]
    best = results.get_best_result()
    assert best.config["q"] == pytest.approx(0.9) and best.metrics["step"] == 9
    assert min(r.metrics["step"] for r in results) < 9


def test_median_stopping_rule_on_a_cluster(shared_cluster, tmp_path):
    from zray.tune.schedulers import MedianStoppingRule

    def trainable(config):
        for i in range(6):
            tune.report({"acc": config["q"]})

    results = tune.Tuner(
        trainable, param_space={"q": tune.grid_search([1, 2, 3, 4, 0])},
        tune_config=tune.TuneConfig(metric="acc", mode="max", max_concurrent_trials=1,
                                    scheduler=MedianStoppingRule(
                                        time_attr="training_iteration", grace_period=1,
                                        min_samples_required=2)),
        run_config=_run_config(tmp_path)).fit()
    iters = [r.metrics["training_iteration"] for r in results]
    assert iters[-1] < 6 and iters[-2] == 6


def test_progress_table_in_a_terminal():
    import io
    from zray.tune.progress import CLIReporter
    from zray.tune.trial import Trial

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    r = CLIReporter(stream=out, metric="loss", mode="min")
    trials = [Trial("f", f"abc_0000{i}", {"lr": 0.1 * i}, str(i), {"lr": 0.1 * i})
              for i in range(3)]
    trials[0].status = Trial.RUNNING
    trials[0].last_result = {"loss": 0.5, "training_iteration": 2}
    assert r.should_report(trials)
    r.report(trials, done=False)
    r.report(trials, done=True)
    text = out.getvalue()
    assert "\x1b[" in text                   # the second table redraws the first in place
    assert "f_abc_00000" in text and "RUNNING" in text and "loss" in text and "lr" in text
    assert not r.should_report(trials)       # at most twice a second


def _read_event_file(path):
    """The events of a TensorBoard event file, each record's framing and CRCs checked (the
    TFRecord format TensorBoard reads), parsed with TensorBoard's Event protobuf."""
    import struct
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c
    events = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        assert header_crc == masked_crc32c(header)
        body = data[pos + 12:pos + 12 + length]
        (body_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        assert body_crc == masked_crc32c(body)
        event = Event()
        event.ParseFromString(body)
        events.append(event)
        pos += 16 + length
    return events


def test_tensorboard_event_files_are_written_and_readable(shared_cluster, tmp_path):
    pytest.importorskip("tensorboardX")
    import numpy as np

    def trainable(config):
        for i in range(3):
            tune.report({"score": config["k"] * i, "acc": np.float32(0.5), "name": "text",
                         "nested": {"loss": 1.0 / (i + 1)}, "flag": True})

    results = tune.Tuner(trainable, param_space={"k": tune.grid_search([1.5, 2.0])},
                         run_config=_run_config(tmp_path)).fit()
    assert results.num_errors == 0
    for r in results:
        (name,) = [n for n in os.listdir(r.path) if n.startswith("events.out.tfevents.")]
        scalars = {}
        for event in _read_event_file(os.path.join(r.path, name)):
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
        k = r.config["k"]
        assert scalars["ray/tune/score"] == [(1, 0.0), (2, k), (3, 2 * k)]
        assert scalars["ray/tune/acc"] == [(1, 0.5), (2, 0.5), (3, 0.5)]
        assert [round(v, 3) for _, v in scalars["ray/tune/nested/loss"]] == [1.0, 0.5, 0.333]
        assert [s for s, _ in scalars["ray/tune/training_iteration"]] == [1, 2, 3]
        assert "ray/tune/name" not in scalars and "ray/tune/flag" not in scalars
