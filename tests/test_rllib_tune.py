"""RLlib algorithms as Tune trials: `Tuner("PPO", param_space=PPOConfig()...)` and
`tune.run("PPO", config=...)`, each trial in a placement group of 1 + num_env_runners bundles."""
import os

import pytest

torch = pytest.importorskip("torch")
gym = pytest.importorskip("gymnasium")

import zray  # noqa: E402
from zray import tune  # noqa: E402
from zray.rllib.algorithms.algorithm import Algorithm  # noqa: E402
from zray.rllib.algorithms.ppo import PPOConfig  # noqa: E402


class GroupRecordingCartPole(gym.Wrapper):
    """CartPole that writes down the placement group of the process it is built in."""

    def __init__(self, config):
        super().__init__(gym.make("CartPole-v1"))
        from zray.util import get_current_placement_group
        group = get_current_placement_group()
        name = f"{os.getpid()}_{config.worker_index}"
        with open(os.path.join(config["record_dir"], name), "w") as f:
            f.write(group.id.hex() if group is not None else "none")


def _tiny(config):
    return config.training(train_batch_size=256, minibatch_size=64, num_epochs=1) \
        .rl_module(model_config={"fcnet_hiddens": [16]}).debugging(seed=0)


def test_tuner_runs_ppo_by_name_with_a_config_object(shared_cluster, tmp_path):
    record = tmp_path / "groups"
    record.mkdir()
    config = _tiny(PPOConfig().environment(GroupRecordingCartPole,
                                           env_config={"record_dir": str(record)})
                   .env_runners(num_env_runners=1, num_envs_per_env_runner=2))
    config.training(lr=tune.grid_search([1e-3, 3e-4]))
    results = tune.Tuner(
        "PPO", param_space=config,
        run_config=tune.RunConfig(
            storage_path=str(tmp_path), name="ppo", verbose=0,
            stop={"env_runners/episode_return_mean": 1e9, "training_iteration": 2},
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True))).fit()
    assert results.num_errors == 0 and len(results) == 2
    assert sorted(r.config["lr"] for r in results) == [3e-4, 1e-3]
    # The env runners ran in their trial's placement group (the remote runner: worker_index
    # 1; the driver's probe env, index 0, runs in the trial actor, which is in it too), and
    # each group was removed once its trial actor was done (the second trial may
    # reuse the first one's actor and group).
    groups = {(p.read_text()) for p in record.iterdir()}
    assert "none" not in groups and len(groups) >= 1
    table = zray.util.placement_group_table()
    for pg_id in groups:
        assert table.get(pg_id, {"state": "REMOVED"})["state"] == "REMOVED"
    for r in results:
        m = r.metrics
        assert m["training_iteration"] == 2
        assert m["num_env_steps_sampled_lifetime"] == 512
        assert m["env_runners"]["episode_return_mean"] > 0
        assert "learners" in m
        assert os.path.basename(r.path).startswith("PPO_")
        # the trial's checkpoint is an RLlib checkpoint: an Algorithm comes back from it
        algo = Algorithm.from_checkpoint(r.checkpoint.path)
        try:
            assert algo.iteration == 2 and algo.config.lr == r.config["lr"]
            assert algo.compute_single_action([0.0, 0.0, 0.0, 0.0], explore=False) in (0, 1)
        finally:
            algo.stop()


def test_tune_run_ppo_stops_at_a_nested_metric(shared_cluster, tmp_path):
    config = _tiny(PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=1))
    analysis = tune.run("PPO", config=config.to_dict(), storage_path=str(tmp_path), verbose=0,
                        stop={"env_runners/episode_return_mean": 15, "training_iteration": 10},
                        metric="env_runners/episode_return_mean", mode="max")
    (trial,) = analysis.trials
    assert trial.status == "TERMINATED"
    last = trial.last_result
    assert last["env_runners"]["episode_return_mean"] >= 15 or last["training_iteration"] == 10
    assert analysis.best_config["num_env_runners"] == 1


def test_rllib_trials_that_cannot_run_are_refused_clearly(shared_cluster, tmp_path):
    rc = tune.RunConfig(storage_path=str(tmp_path), verbose=0, stop={"training_iteration": 1})
    with pytest.raises(tune.TuneError, match="unknown trainable 'NOPE'"):
        tune.Tuner("NOPE", run_config=rc)
    # 1 + 3 env runners do not fit in the 2 CPUs: refused before any trial starts
    big = _tiny(PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=3))
    with pytest.raises(tune.TuneError, match="no trial could ever start"):
        tune.Tuner("PPO", param_space=big, run_config=rc).fit()
    # the group size must be known before the trials are sampled
    odd = _tiny(PPOConfig().environment("CartPole-v1"))
    odd.num_env_runners = tune.choice([0, 1])
    with pytest.raises(ValueError, match="num_env_runners sizes each trial's placement group"):
        tune.Tuner("PPO", param_space=odd, run_config=rc).fit()
    # and the cluster still runs a trial after all of that
    ok = _tiny(PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=0))
    (result,) = tune.Tuner("PPO", param_space=ok, run_config=rc).fit()
    assert result.error is None and result.metrics["training_iteration"] == 1
