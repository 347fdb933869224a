"""A trainer as a Tune trial: what `Tuner(trainer, param_space={"train_loop_config": ...})` runs.

Each trial builds a copy of the trainer with the trial's config merged in and calls its `fit()`
in the trial actor. Every completed Train iteration (rank 0's metrics, and the checkpoint when
the ranks saved one) is handed to `tune.report`, which waits for the scheduler's decision: a
STOP ends `fit()` there (the worker group is torn down on the way out). Train writes its
checkpoints into the trial's directory, where Tune adopts them as they are (no copy) and
alone decides which to keep. A trial that restarts (PBT, PAUSE, a retry) resumes the trainer
from the trial's checkpoint (`resume_from_checkpoint`).

The worker group reserves its own placement group, as outside Tune; the trial actor asks only
for the trainer's resources (`ScalingConfig.trainer_resources`, default none when there are
workers), and the experiment's concurrency counts the workers' resources too.
"""
import copy
import dataclasses
import os
import shutil

from .config import CheckpointConfig, RunConfig, ScalingConfig

TUNABLE_KEYS = ("train_loop_config", "scaling_config")


class _ReportToTune:
    """A Train callback: each completed iteration becomes a Tune result."""

    def __init__(self):
        self.reported = set()

    def after_report(self, run_context=None, metrics=None, checkpoint=None):
        from zray.tune import session
        if checkpoint is not None:
            self.reported.add(os.path.basename(os.path.normpath(checkpoint.path)))
        session.report(dict(metrics[0]) if metrics else {}, checkpoint=checkpoint)


def _checkpoint_dirs(path):
    return {d for d in os.listdir(path) if d.startswith("checkpoint_")} \
        if os.path.isdir(path) else set()


def merged_scaling_config(base, value):
    """The trainer's ScalingConfig with the param space's `scaling_config` (a ScalingConfig or a
    dict of its fields) applied."""
    if value is None:
        return base
    if isinstance(value, ScalingConfig):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"param_space['scaling_config'] must be a ScalingConfig or a dict, got "
                        f"{type(value).__name__}")
    fields = {f.name for f in dataclasses.fields(ScalingConfig)}
    unknown = sorted(set(value) - fields)
    if unknown:
        raise ValueError(f"param_space['scaling_config'] has unknown fields {unknown}")
    return dataclasses.replace(base, **value)


def _deep_merge(base, update):
    out = dict(base or {})
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def check_param_space(param_space):
    unknown = sorted(set(param_space or {}) - set(TUNABLE_KEYS))
    if unknown:
        raise ValueError(f"a trainer's param_space takes {list(TUNABLE_KEYS)}; unknown keys "
                         f"{unknown}")


def trial_resources(trainer, param_space):
    """(the trial actor's resources, the whole trial's): the trainer's, plus every worker's."""
    scaling = trainer.scaling_config
    value = (param_space or {}).get("scaling_config")
    if isinstance(value, (ScalingConfig, dict)):
        try:
            scaling = merged_scaling_config(scaling, value)
        except TypeError:
            raise ValueError("the worker group's size must be fixed when tuning: give "
                             "scaling_config values, not search spaces") from None
    if isinstance(scaling.num_workers, dict):
        raise ValueError("the worker group's size must be fixed when tuning: give "
                         "scaling_config values, not search spaces")
    head = dict(scaling.trainer_resources) if scaling.trainer_resources is not None else \
        ({"CPU": 0} if scaling.num_workers else {"CPU": 1})
    total = dict(head)
    for key, value in scaling.total_resources.items():
        total[key] = total.get(key, 0) + value
    return head, total


def run_trainer_trial(trainer, config):
    """The body of a trial: fit a copy of `trainer` configured by the trial's `config`."""
    from zray import tune
    check_param_space(config)
    t = copy.copy(trainer)
    t.train_loop_config = _deep_merge(trainer.train_loop_config, config.get("train_loop_config"))
    t.scaling_config = merged_scaling_config(trainer.scaling_config, config.get("scaling_config"))
    ctx = tune.get_context()
    trial_dir = ctx.get_trial_dir()
    base = trainer.run_config
    forward = _ReportToTune()
    t.run_config = RunConfig(
        name=os.path.basename(trial_dir), storage_path=os.path.dirname(trial_dir),
        failure_config=base.failure_config, checkpoint_config=CheckpointConfig(),
        callbacks=list(base.callbacks or []) + [forward],
        verbose=0 if base.verbose is None else base.verbose,
        worker_runtime_env=base.worker_runtime_env)
    start = tune.get_checkpoint()
    if start is not None:
        t.resume_from_checkpoint = start
    before = _checkpoint_dirs(trial_dir)
    try:
        t.fit()
    except BaseException:
        # Stopped by the scheduler (or failed) while the ranks went on: the checkpoints of an
        # iteration Tune never heard of are nobody's.
        for name in _checkpoint_dirs(trial_dir) - before - forward.reported:
            shutil.rmtree(os.path.join(trial_dir, name), ignore_errors=True)
        raise


def trainer_trainable(trainer):
    """A function trainable running `trainer` in each trial, named after the trainer's class,
    with the resources of its worker group attached."""
    def trainable(config):
        run_trainer_trial(trainer, config)

    trainable.__name__ = trainable.__qualname__ = type(trainer).__name__
    trainable._zray_trainer = trainer
    return trainable
