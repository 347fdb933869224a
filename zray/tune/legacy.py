"""The legacy `tune.run(...) -> ExperimentAnalysis`, on top of `Tuner` (module `legacy`: a
module named `run` would shadow the function as an attribute of the package)."""
import logging

from .analysis import ExperimentAnalysis
from .config import CheckpointConfig, FailureConfig, RunConfig, TuneConfig
from .result_grid import TuneError
from .trainable import with_resources
from .tuner import Tuner

logger = logging.getLogger("zray.tune")


def run(run_or_experiment, name=None, metric=None, mode=None, stop=None, time_budget_s=None,
        config=None, resources_per_trial=None, num_samples=1, storage_path=None,
        search_alg=None, scheduler=None, checkpoint_config=None, verbose=None,
        progress_reporter=None, log_to_file=False, trial_name_creator=None,
        trial_dirname_creator=None, max_failures=0, fail_fast=False, restore=None, resume=None,
        reuse_actors=None, raise_on_failed_trial=True, callbacks=None,
        max_concurrent_trials=None, keep_checkpoints_num=None, checkpoint_score_attr=None,
        checkpoint_freq=0, checkpoint_at_end=False, local_dir=None, **kwargs):
    if kwargs:
        logger.warning("tune.run ignores the arguments %s", sorted(kwargs))
    trainable = run_or_experiment
    if resources_per_trial is not None:
        trainable = with_resources(trainable, resources_per_trial)
    if checkpoint_config is None:
        order = "max"
        attr = checkpoint_score_attr
        if attr and attr.startswith("min-"):
            attr, order = attr[4:], "min"
        checkpoint_config = CheckpointConfig(num_to_keep=keep_checkpoints_num,
                                             checkpoint_score_attribute=attr,
                                             checkpoint_score_order=order,
                                             checkpoint_frequency=checkpoint_freq,
                                             checkpoint_at_end=checkpoint_at_end)
    tune_config = TuneConfig(metric=metric, mode=mode, search_alg=search_alg,
                             scheduler=scheduler, num_samples=num_samples,
                             max_concurrent_trials=max_concurrent_trials,
                             time_budget_s=time_budget_s, reuse_actors=reuse_actors,
                             trial_name_creator=trial_name_creator,
                             trial_dirname_creator=trial_dirname_creator)
    run_config = RunConfig(name=name, storage_path=storage_path or local_dir, stop=stop,
                           callbacks=callbacks, checkpoint_config=checkpoint_config,
                           failure_config=FailureConfig(max_failures=max_failures,
                                                        fail_fast=fail_fast),
                           verbose=verbose, progress_reporter=progress_reporter)
    if restore is not None or resume:
        path = restore
        if path is None:
            raise ValueError("resume=True needs the experiment's path in restore=...")
        tuner = Tuner.restore(path, run_or_experiment, resume_unfinished=True,
                              resume_errored=resume in ("ERRORED_ONLY", "AUTO+ERRORED"),
                              restart_errored=resume in ("RESTART_ERRORED",))
    else:
        tuner = Tuner(trainable, param_space=config or {}, tune_config=tune_config,
                      run_config=run_config)
    grid = tuner.fit()
    analysis = ExperimentAnalysis(grid._trials, grid.experiment_path, metric, mode)
    failed = [t for t in analysis.trials if t.status == "ERROR"]
    if failed and raise_on_failed_trial:
        raise TuneError(f"Trials did not complete: {failed}")
    return analysis
