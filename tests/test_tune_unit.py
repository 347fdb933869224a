"""zray.tune's decisions without processes: search spaces, searchers, schedulers, stoppers,
checkpoint bookkeeping and the trial controller, driven by events on a fake clock."""
import random

import pytest

from zray import tune
from zray.tune.checkpoint import Checkpoint
from zray.tune.config import CheckpointConfig
from zray.tune.controller import (ContinueTrial, DeleteCheckpoint, Notify, StartTrial, StopTrial,
                                  TrialController)
from zray.tune.schedulers import (ASHAScheduler, FIFOScheduler, HyperBandScheduler,
                                  MedianStoppingRule, PopulationBasedTraining, TrialScheduler)
from zray.tune.schedulers.pbt import explore
from zray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher, SearchGenerator
from zray.tune.search.variant_generator import format_vars, generate_variants
from zray.tune.stopper import (CombinedStopper, DictStopper, MaximumIterationStopper,
                               TrialPlateauStopper, as_stopper)
from zray.tune.trial import CheckpointManager, Trial


# ---- search spaces ----

def test_grid_order_first_axis_fastest_like_ray():
    space = {"a": tune.grid_search([1, 2]), "b": tune.grid_search([3, 4]),
             "n": {"c": tune.grid_search([5, 6])}, "k": 7}
    configs = [c for _, c in generate_variants(space)]
    assert [(c["a"], c["b"], c["n"]["c"]) for c in configs] == [
        (1, 3, 5), (2, 3, 5), (1, 4, 5), (2, 4, 5), (1, 3, 6), (2, 3, 6), (1, 4, 6), (2, 4, 6)]
    assert all(c["k"] == 7 for c in configs)


def test_domains_sample_within_bounds():
    rng = random.Random(0)
    for _ in range(200):
        assert 1 <= tune.uniform(1, 2).sample(random_state=rng) <= 2
        assert 1e-4 <= tune.loguniform(1e-4, 1e-1).sample(random_state=rng) <= 1e-1
        assert tune.randint(0, 3).sample(random_state=rng) in (0, 1, 2)
        assert tune.qrandint(0, 10, 5).sample(random_state=rng) in (0, 5, 10)
        assert tune.choice(["x", "y"]).sample(random_state=rng) in ("x", "y")
        v = tune.quniform(0, 1, 0.25).sample(random_state=rng)
        assert v in (0, 0.25, 0.5, 0.75, 1.0)
        assert 1 <= tune.lograndint(1, 100).sample(random_state=rng) < 100
    assert isinstance(tune.randn().sample(random_state=rng), float)


def test_sample_from_sees_resolved_config():
    space = {"a": tune.grid_search([1, 2]), "b": tune.sample_from(lambda spec: spec.config.a * 10)}
    assert [(c["a"], c["b"]) for _, c in generate_variants(space)] == [(1, 10), (2, 20)]


def test_format_vars_is_dirname_safe():
    assert format_vars({("a",): 0.001, ("n", "b"): "x y/z"}) == "a=0.0010,b=x_y_z"


def test_basic_variant_grid_times_num_samples():
    bvg = BasicVariantGenerator(random_state=1)
    bvg.setup({"a": tune.grid_search([1, 2, 3]), "u": tune.uniform(0, 1)}, 2)
    assert bvg.total_samples == 6
    configs = [bvg.next_config(f"t{i}") for i in range(7)]
    assert configs[-1] is None and bvg.is_finished()
    assert [s.config["a"] for s in configs[:6]] == [1, 2, 3, 1, 2, 3]
    assert len({s.config["u"] for s in configs[:6]}) == 6


def test_basic_variant_points_to_evaluate_first():
    bvg = BasicVariantGenerator(points_to_evaluate=[{"a": 9}])
    bvg.setup({"a": tune.randint(0, 3), "b": tune.choice([5])}, 2)
    first = bvg.next_config("t0")
    assert first.config == {"a": 9, "b": 5}
    assert bvg.total_samples == 3


class _CountingSearcher(Searcher):
    def __init__(self, n=None):
        super().__init__(metric="m", mode="max")
        self.n, self.i, self.completed = n, 0, []

    def suggest(self, trial_id):
        if self.n is not None and self.i >= self.n:
            return Searcher.FINISHED
        self.i += 1
        return {"x": self.i}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.completed.append((trial_id, error))


def test_concurrency_limiter_holds_suggestions():
    inner = _CountingSearcher()
    lim = ConcurrencyLimiter(inner, max_concurrent=2)
    assert lim.suggest("a") == {"x": 1} and lim.suggest("b") == {"x": 2}
    assert lim.suggest("c") is None
    lim.on_trial_complete("a", {"m": 1})
    assert lim.suggest("c") == {"x": 3}
    assert inner.completed == [("a", False)]


def test_search_generator_merges_constants_and_stops_at_num_samples():
    gen = SearchGenerator(_CountingSearcher())
    gen.setup({"const": 5, "x": tune.uniform(0, 1)}, 2)
    s1, s2 = gen.next_config("a"), gen.next_config("b")
    assert s1.config == {"const": 5, "x": 1} and s2.config["x"] == 2
    assert gen.next_config("c") is None and gen.is_finished()


# ---- schedulers ----

class _View:
    """The controller view a scheduler sees, for scheduler-only tests."""

    def __init__(self, trials=(), finished=False):
        self.trials = list(trials)
        self.finished = finished
        self.stopped = []

    def get_trials(self):
        return self.trials

    def has_resources_for_trial(self, trial):
        return True

    def search_finished(self):
        return self.finished

    def stop_trial(self, tid):
        self.stopped.append(tid)


def _trial(i):
    return Trial("f", f"t{i}", {"i": i}, str(i))


def test_asha_stops_the_worse_trials_at_a_rung():
    s = ASHAScheduler(metric="acc", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    view = _View()
    trials = [_trial(i) for i in range(4)]
    for t in trials:
        s.on_trial_add(view, t)
    decisions = [s.on_trial_result(view, t, {"training_iteration": 1, "acc": acc})
                 for t, acc in zip(trials, [0.9, 0.5, 0.95, 0.1])]
    assert decisions[0] == TrialScheduler.CONTINUE     # nobody recorded yet
    assert decisions[1] == TrialScheduler.STOP         # below the top third of [0.9]
    assert decisions[2] == TrialScheduler.CONTINUE
    assert decisions[3] == TrialScheduler.STOP
    assert s.on_trial_result(view, trials[0], {"training_iteration": 9, "acc": 1}) == "STOP"


def test_asha_min_mode_and_missing_metric():
    s = ASHAScheduler(metric="loss", mode="min", max_t=10, grace_period=1, reduction_factor=2)
    view = _View()
    a, b = _trial(0), _trial(1)
    s.on_trial_add(view, a)
    s.on_trial_add(view, b)
    assert s.on_trial_result(view, a, {"training_iteration": 1, "loss": 0.1}) == "CONTINUE"
    assert s.on_trial_result(view, b, {"training_iteration": 1, "loss": 5.0}) == "STOP"
    assert s.on_trial_result(view, b, {"loss": 5.0}) == "CONTINUE"


def test_asha_needs_metric_and_mode():
    with pytest.raises(ValueError):
        ASHAScheduler().on_trial_add(_View(), _trial(0))


def test_hyperband_pauses_at_milestone_then_keeps_the_best():
    s = HyperBandScheduler(metric="acc", mode="max", max_t=9, reduction_factor=3)
    trials = [_trial(i) for i in range(9)]
    view = _View(trials)
    for t in trials:
        s.on_trial_add(view, t)
        t.status = Trial.RUNNING
    bracket = s._trial_bracket["t0"]
    assert bracket.capacity == 9 and bracket.milestone == 1
    out = []
    for i, t in enumerate(trials):
        d = s.on_trial_result(view, t, {"training_iteration": 1, "acc": i})
        out.append(d)
        if d == TrialScheduler.PAUSE:
            t.status = Trial.PAUSED
    assert out[:8] == [TrialScheduler.PAUSE] * 8
    assert out[8] == TrialScheduler.CONTINUE            # the best, and it completes the rung
    assert sorted(view.stopped) == [f"t{i}" for i in range(6)]
    assert bracket.milestone == 3
    chosen = s.choose_trial_to_run(view)
    assert chosen.trial_id in ("t6", "t7")


def test_median_stopping_rule():
    s = MedianStoppingRule(metric="m", mode="max", time_attr="training_iteration",
                           grace_period=1, min_samples_required=2)
    view = _View()
    trials = [_trial(i) for i in range(3)]
    for t in trials:
        s.on_trial_add(view, t)
    for it in (1, 2):
        assert s.on_trial_result(view, trials[0], {"training_iteration": it, "m": 10}) == "CONTINUE"
        assert s.on_trial_result(view, trials[1], {"training_iteration": it, "m": 8}) == "CONTINUE"
    assert s.on_trial_result(view, trials[2], {"training_iteration": 1, "m": 1}) == "STOP"


def test_pbt_explore_perturbs_and_resamples():
    rng = random.Random(0)
    mutations = {"lr": tune.uniform(0.001, 1), "bs": [16, 32, 64], "n": {"k": [1, 2]}}
    seen_factors, seen_bs = set(), set()
    for _ in range(100):
        new = explore({"lr": 0.1, "bs": 32, "n": {"k": 1}, "keep": 3}, mutations, 0.25,
                      (1.2, 0.8), None, rng)
        assert new["keep"] == 3 and new["n"]["k"] in (1, 2)
        seen_factors.add(round(new["lr"] / 0.1, 6))
        seen_bs.add(new["bs"])
    assert {1.2, 0.8} <= seen_factors and seen_bs <= {16, 32, 64} and len(seen_bs) >= 2


# ---- stoppers and checkpoints ----

def test_stoppers():
    d = as_stopper({"training_iteration": 3})
    assert isinstance(d, DictStopper) and not d("t", {"training_iteration": 2})
    assert d("t", {"training_iteration": 3})
    assert as_stopper(lambda tid, r: r["x"] > 1)("t", {"x": 2})
    m = MaximumIterationStopper(2)
    assert [m("t", {}), m("t", {})] == [False, True]
    p = TrialPlateauStopper("m", std=0.01, num_results=3, grace_period=3)
    assert [p("t", {"m": 1.0}) for _ in range(3)] == [False, False, True]
    c = CombinedStopper(MaximumIterationStopper(5), DictStopper({"x": 1}))
    assert c("t", {"x": 1}) and not c.stop_all()


def test_dict_stopper_reads_nested_results_by_flattened_name():
    d = as_stopper({"env_runners/episode_return_mean": 450})
    assert not d("t", {"env_runners": {"episode_return_mean": 449.0}})
    assert d("t", {"env_runners": {"episode_return_mean": 450.0}})
    assert not d("t", {"env_runners": 3}) and not d("t", {})     # absent: not a stop
    assert d("t", {"env_runners/episode_return_mean": 500})      # an already flat key


def test_placement_of_keeps_bundles_only_when_a_trial_needs_several():
    from zray.tune.trainable import PlacementGroupFactory, placement_of, with_resources

    def fn(config):
        pass
    assert placement_of(fn) is None
    assert placement_of(with_resources(fn, {"cpu": 2})) is None
    assert placement_of(with_resources(fn, PlacementGroupFactory([{"cpu": 1}]))) is None
    pgf = placement_of(with_resources(fn, PlacementGroupFactory([{"cpu": 1}, {"cpu": 2}],
                                                                strategy="SPREAD")))
    assert pgf.bundles == [{"CPU": 1}, {"CPU": 2}] and pgf.strategy == "SPREAD"


def test_checkpoint_manager_keeps_best_and_latest():
    m = CheckpointManager(num_to_keep=1, score_attribute="acc", score_order="max")
    assert m.register("c0", {"acc": 0.9}) == []
    assert m.register("c1", {"acc": 0.5}) == []           # c0 best, c1 latest
    assert sorted(m.register("c2", {"acc": 0.7})) == ["c1"]
    assert m.best.path == "c0" and m.latest.path == "c2"
    plain = CheckpointManager(num_to_keep=2)
    for i in range(4):
        plain.register(f"p{i}", {})
    assert [r.path for r in plain.records] == ["p2", "p3"]


# ---- the controller ----

class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _controller(space, num_samples=1, **kw):
    bvg = kw.pop("search_alg", None) or BasicVariantGenerator(random_state=0)
    bvg.setup(space, num_samples)
    kw.setdefault("max_slots", 2)
    return TrialController(trainable_name="f", search_alg=bvg, clock=kw.pop("clock", _Clock()),
                           checkpoint_config=kw.pop("checkpoint_config", CheckpointConfig()),
                           **kw)


def _of(cmds, kind):
    return [c for c in cmds if isinstance(c, kind)]


def test_controller_runs_trials_in_slots_and_finishes():
    c = _controller({"a": tune.grid_search([1, 2, 3])})
    cmds = c.start()
    starts = _of(cmds, StartTrial)
    assert [s.trial_id for s in starts] == [f"{c.run_id}_00000", f"{c.run_id}_00001"]
    t0 = starts[0].trial_id
    cmds = c.on_result(t0, {"score": 1, "training_iteration": 1})
    assert _of(cmds, ContinueTrial) == [ContinueTrial(t0)]
    assert c.get_trial(t0).last_result["config"] == {"a": 1}
    cmds = c.on_returned(t0)
    assert c.get_trial(t0).status == Trial.TERMINATED
    assert [n.kind for n in _of(cmds, Notify)][:1] == ["complete"]
    assert len(_of(cmds, StartTrial)) == 1                # the third trial takes the slot
    for tid in list(c.running):
        c.on_returned(tid)
    assert c.is_finished()


def test_controller_stopper_and_done():
    c = _controller({"a": 1}, stopper=as_stopper({"training_iteration": 2}))
    (start,) = _of(c.start(), StartTrial)
    assert _of(c.on_result(start.trial_id, {"training_iteration": 1}), ContinueTrial)
    stop = _of(c.on_result(start.trial_id, {"training_iteration": 2}), StopTrial)
    assert stop == [StopTrial(start.trial_id)]
    c.on_stopped(start.trial_id)
    assert c.is_finished() and c.trials[0].status == Trial.TERMINATED
    assert c.trials[0].last_result["done"] is True


def test_controller_error_retry_then_error_and_others_go_on():
    c = _controller({"a": tune.grid_search([1, 2])}, max_failures=1)
    a, b = [s.trial_id for s in _of(c.start(), StartTrial)]
    c.on_result(a, {"training_iteration": 1}, checkpoint_path="/x/checkpoint_000000")
    cmds = c.on_error(a, "boom")
    (restart,) = _of(cmds, StartTrial)                    # retried from its checkpoint
    assert restart.trial_id == a and restart.restore.path == "/x/checkpoint_000000"
    cmds = c.on_error(a, "boom again")
    assert c.get_trial(a).status == Trial.ERROR and "error" in [n.kind for n in _of(cmds, Notify)]
    assert c.get_trial(b).status == Trial.RUNNING
    c.on_returned(b)
    assert c.is_finished()


def test_controller_fail_fast_stops_the_rest():
    c = _controller({"a": tune.grid_search([1, 2, 3])}, fail_fast=True)
    a, b = [s.trial_id for s in _of(c.start(), StartTrial)]
    cmds = c.on_error(a, "boom", ValueError("boom"))
    assert _of(cmds, StopTrial) == [StopTrial(b)]
    assert not _of(cmds, StartTrial)
    c.on_result(b, {"training_iteration": 1})
    c.on_stopped(b)
    assert c.is_finished() and isinstance(c.fail_fast_error, ValueError)
    assert [t.status for t in c.trials] == [Trial.ERROR, Trial.TERMINATED]


def test_controller_time_budget():
    clock = _Clock()
    c = _controller({"a": tune.grid_search([1, 2, 3])}, time_budget_s=10, clock=clock)
    a, b = [s.trial_id for s in _of(c.start(), StartTrial)]
    clock.t += 11
    cmds = c.on_tick()
    assert sorted(s.trial_id for s in _of(cmds, StopTrial)) == sorted([a, b])
    c.on_stopped(a)
    c.on_stopped(b)
    assert c.is_finished()


def test_controller_checkpoint_deletion_and_state_restore():
    c = _controller({"a": 1}, checkpoint_config=CheckpointConfig(num_to_keep=1))
    (s,) = _of(c.start(), StartTrial)
    c.on_result(s.trial_id, {"training_iteration": 1}, "/c0")
    cmds = c.on_result(s.trial_id, {"training_iteration": 2}, "/c1")
    assert _of(cmds, DeleteCheckpoint) == [DeleteCheckpoint("/c0")]
    state = c.get_state()
    c2 = _controller({"a": 1})
    c2.set_state(state)
    assert c2.trials[0].status == Trial.PENDING       # was running: resumes
    (restart,) = _of(c2.start(), StartTrial)
    assert restart.restore.path == "/c1" and restart.restore.iteration == 2


def test_controller_pbt_exploit_restarts_from_donor():
    pbt = PopulationBasedTraining(time_attr="training_iteration", metric="m", mode="max",
                                  perturbation_interval=1, hyperparam_mutations={"lr": [1, 2, 3]},
                                  quantile_fraction=0.5, resample_probability=0)
    c = _controller({"lr": tune.grid_search([1, 3])}, scheduler=pbt)
    a, b = [s.trial_id for s in _of(c.start(), StartTrial)]
    c.on_result(a, {"training_iteration": 1, "m": 10}, "/a0")
    cmds = c.on_result(b, {"training_iteration": 1, "m": 1}, "/b0")
    assert _of(cmds, StopTrial) == [StopTrial(b, save=False)]   # paused to exploit a
    assert c.get_trial(b).config["lr"] in (1, 2)     # a's lr (1), moved to a neighbour or kept
    cmds = c.on_stopped(b)
    (restart,) = _of(cmds, StartTrial)
    assert restart.trial_id == b and restart.restore.path == "/a0"


def test_controller_searcher_finished_and_errors_reported_to_it():
    searcher = _CountingSearcher(n=2)
    gen = SearchGenerator(searcher)
    c = _controller({}, num_samples=-1, search_alg=gen, max_slots=4)
    starts = _of(c.start(), StartTrial)
    assert len(starts) == 2
    c.on_error(starts[0].trial_id, "x")
    c.on_returned(starts[1].trial_id)
    assert c.is_finished()
    assert sorted(e for _, e in searcher.completed) == [False, True]


def test_fifo_is_default_and_checkpoint_repr():
    assert isinstance(_controller({}).scheduler, FIFOScheduler)
    assert "path=/p" in repr(Checkpoint("/p"))


def test_controller_state_roundtrip_keeps_scheduler_and_searcher_and_error_flags():
    import cloudpickle
    asha = ASHAScheduler(metric="m", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    c = _controller({"a": tune.grid_search([1, 2, 3])}, scheduler=asha)
    a, b = [s.trial_id for s in _of(c.start(), StartTrial)]
    c.on_result(a, {"training_iteration": 1, "m": 5})
    c.on_error(b, "boom")
    state = cloudpickle.loads(cloudpickle.dumps(c.get_state()))
    rungs = state["scheduler"]._brackets[0].rungs
    assert any(a in recorded for _, recorded in rungs)          # ASHA's rung kept its record
    assert state["search_alg"]._next == 3                       # the searcher's position kept
    keep = _controller({"a": 1})
    keep.set_state(state)
    assert [t.status for t in keep.trials] == [Trial.PENDING, Trial.ERROR, Trial.PENDING]
    retry = _controller({"a": 1})
    retry.set_state(cloudpickle.loads(cloudpickle.dumps(c.get_state())), resume_errored=True)
    assert retry.trials[1].status == Trial.PENDING and retry.trials[1].error_msg is None
    done = _controller({"a": 1})
    done.set_state(cloudpickle.loads(cloudpickle.dumps(c.get_state())), resume_unfinished=False)
    assert done.trials[0].status == Trial.TERMINATED


def test_controller_pbt_exploit_takes_donor_checkpoint_from_its_ranking_and_its_clock():
    # As Ray: the donor's state when it was last ranked, not whatever it has reported since
    # (a donor that ran ahead to its end would leave the exploiting trial nothing to run).
    pbt = PopulationBasedTraining(time_attr="training_iteration", metric="m", mode="max",
                                  perturbation_interval=2, hyperparam_mutations={"lr": [1, 2, 3]},
                                  quantile_fraction=0.5, resample_probability=0)
    c = _controller({"lr": tune.grid_search([1, 3])}, scheduler=pbt)
    a, b = [s.trial_id for s in _of(c.start(), StartTrial)]
    c.on_result(b, {"training_iteration": 1, "m": 0}, "/b1")
    for t in range(1, 6):        # a runs ahead; ranked (alone) at 2 and 4, not at 5
        assert _of(c.on_result(a, {"training_iteration": t, "m": 10 + t}, f"/a{t}"),
                   StopTrial) == []
    cmds = c.on_result(b, {"training_iteration": 2, "m": 1}, "/b2")   # ranked: below a
    assert _of(cmds, StopTrial) == [StopTrial(b, save=False)]
    (restart,) = _of(c.on_stopped(b), StartTrial)
    assert restart.restore.path == "/a4" and restart.restore.iteration == 4
    assert pbt._trial_state[b].last_perturbation_time == 4     # next ranked at 6, as a is
