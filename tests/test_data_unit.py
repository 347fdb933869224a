"""zray.data's decisions without a cluster: the streaming scheduler, the actor pool policy, the
plan optimizer, blocks and aggregations. Each test runs in microseconds to milliseconds."""
import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

from zray.data import aggregate as A                       # noqa: E402
from zray.data._internal import block as B                 # noqa: E402
from zray.data._internal import plan as P                  # noqa: E402
from zray.data._internal import transforms as T            # noqa: E402
from zray.data._internal.scheduling import (ActorPoolState, MapStageState,  # noqa: E402
                                            MemoryBudget, PoolRequest, allocate_pools)


# ------------------------------------------------------------------ MapStageState

def test_stage_submits_up_to_its_slots():
    s = MapStageState(2, MemoryBudget(1 << 30))
    assert s.can_submit(10)
    s.on_submitted(10)
    s.on_submitted(10)
    assert not s.can_submit(10)


def test_budget_blocks_submission_but_one_task_always_runs():
    budget = MemoryBudget(100)
    s = MapStageState(8, budget, default_estimate=60)
    assert s.can_submit()          # liveness: nothing running
    seq = s.on_submitted()
    assert not s.can_submit()      # 60 reserved + 60 estimated > 100
    s.on_finished(seq, 80)
    assert budget.used == 80
    assert not s.can_submit()      # an output is buffered and the budget is full
    s.on_emitted(s.next_emittable())
    budget.release(80)             # the consumer is done with it
    assert s.can_submit()


def test_estimate_follows_observed_outputs():
    s = MapStageState(4, MemoryBudget(1 << 30), default_estimate=5)
    assert s.estimate() == 5
    assert s.estimate(7) == 7
    seq = s.on_submitted()
    s.on_finished(seq, 100)
    assert s.estimate(7) == 100


def test_outputs_emit_in_input_order():
    s = MapStageState(4, MemoryBudget(1 << 30))
    a, b = s.on_submitted(), s.on_submitted()
    s.on_finished(b, 1)
    assert s.next_emittable() is None       # b waits for a
    s.on_finished(a, 1)
    assert s.next_emittable() == a
    s.on_emitted(a)
    assert s.next_emittable() == b


def test_outputs_emit_as_finished_without_order():
    s = MapStageState(4, MemoryBudget(1 << 30), preserve_order=False)
    a, b = s.on_submitted(), s.on_submitted()
    s.on_finished(b, 1)
    assert s.next_emittable() == b
    s.on_emitted(b)
    s.on_finished(a, 1)
    assert s.next_emittable() == a


def test_skipped_task_does_not_block_order():
    s = MapStageState(4, MemoryBudget(1 << 30))
    a, b = s.on_submitted(), s.on_submitted()
    s.on_skipped(a)
    s.on_finished(b, 1)
    assert s.next_emittable() == b


def test_stage_done_after_input_and_outputs():
    s = MapStageState(1, MemoryBudget(1 << 30))
    seq = s.on_submitted()
    s.on_input_exhausted()
    assert not s.done and not s.can_submit()
    s.on_finished(seq, 0)
    s.on_emitted(s.next_emittable())
    assert s.done


def test_memory_budget_rejects_nonpositive_limit():
    with pytest.raises(ValueError):
        MemoryBudget(0)


# ------------------------------------------------------------------ actor pool

def test_pool_picks_least_loaded_actor():
    p = ActorPoolState(2, 2, 2)
    p.on_actor_added()
    p.on_actor_added()
    p.on_call(0)
    assert p.pick() == 1
    p.on_call(1)
    p.on_call(1)
    assert p.pick() == 0
    p.on_call(0)
    assert p.pick() is None


def test_pool_grows_when_busy_and_below_max():
    p = ActorPoolState(1, 3, 1)
    assert p.should_grow(0)                 # below min
    p.on_actor_added()
    assert not p.should_grow(0)
    p.on_call(0)
    assert p.should_grow(1)
    p.on_actor_added()
    p.on_actor_added()
    p.on_call(1)
    p.on_call(2)
    assert not p.should_grow(1)             # at max


def _pools(total, task_cpus, *requests):
    return allocate_pools(total, task_cpus, [PoolRequest(f"pool{i}", *r)
                                             for i, r in enumerate(requests)])


def test_pool_that_takes_every_cpu_is_scaled_down_with_a_warning():
    plan = _pools(4, 1, (1, 4, 4))
    size = plan.sizes[0]
    assert (size.min_size, size.max_size, size.actor_cpus) == (3, 3, 1)
    assert size.warning and "scales it to 3" in size.warning
    assert not plan.tasks_without_cpu


def test_pool_that_fits_is_unchanged():
    size = _pools(4, 1, (1, 2, 2)).sizes[0]
    assert (size.min_size, size.max_size, size.warning) == (2, 2, None)


def test_autoscaling_pool_bound_leaves_room_silently():
    size = _pools(4, 1, (1, 1, None)).sizes[0]
    assert (size.min_size, size.max_size, size.warning) == (1, 3, None)


def test_single_actor_holding_every_cpu_runs_tasks_without_cpu():
    plan = _pools(2, 1, (2, 1, 1))
    assert plan.tasks_without_cpu and plan.sizes[0].max_size == 1 and plan.sizes[0].warning


def test_pool_without_tasks_takes_what_it_asks():
    size = _pools(2, 0, (1, 2, 2)).sizes[0]
    assert (size.min_size, size.max_size, size.warning) == (2, 2, None)


def test_chained_pools_share_the_cpus_left_by_tasks():
    plan = _pools(4, 1, (1, 2, 2), (1, 2, 2))
    assert [(s.max_size, s.actor_cpus) for s in plan.sizes] == [(2, 1), (1, 1)]
    plan = _pools(2, 1, (1, 1, 1), (1, 1, 1))
    assert [(s.max_size, s.actor_cpus) for s in plan.sizes] == [(1, 1), (1, 1)]
    assert plan.tasks_without_cpu
    plan = _pools(2, 1, (1, 1, 1), (1, 1, 1), (1, 1, 1))
    assert plan.sizes[2].actor_cpus == 0 and plan.sizes[2].warning


# ------------------------------------------------------------------ the optimizer

class _Source:
    def get_name(self):
        return "Range"


class _Task:
    def __init__(self, rows):
        self.metadata = B.BlockMetadata(rows, rows * 8, None)
        self.schema = None


def _read(rows=(5, 5)):
    return P.Read(datasource=_Source(), read_tasks=tuple(_Task(r) for r in rows))


def _map(inp, name="f", row_preserving=False, compute=P.Compute(), **remote_args):
    t = T.MapBatches(f"MapBatches({name})", lambda b: b, row_preserving=row_preserving)
    return P.MapOp(inputs=(inp,), transform=t, compute=compute, remote_args=remote_args)


def test_read_and_maps_fuse_into_one_stage():
    stage = P.plan(_map(_map(_read(), "f"), "g"))
    assert isinstance(stage, P.MapStage)
    assert stage.name == "ReadRange->MapBatches(f)->MapBatches(g)"
    assert len(stage.read_tasks) == 2 and stage.upstream is None


def test_maps_with_different_resources_do_not_fuse():
    stage = P.plan(_map(_map(_read(), "f"), "g", num_gpus=1))
    assert stage.name == "MapBatches(g)"
    assert stage.upstream.name == "ReadRange->MapBatches(f)"


def test_actor_map_is_its_own_stage_and_absorbs_following_task_maps():
    actors = P.Compute("actors", 1, 1)
    stage = P.plan(_map(_map(_read(), "Model", compute=actors), "post"))
    assert stage.compute.kind == "actors"
    assert stage.name == "MapBatches(Model)->MapBatches(post)"
    assert stage.upstream.name == "ReadRange"


def test_limit_moves_below_row_preserving_maps():
    op = P.push_down_limits(P.Limit(inputs=(_map(_read(), row_preserving=True),), n=3))
    assert isinstance(op, P.MapOp) and isinstance(op.inputs[0], P.Limit)
    op = P.push_down_limits(P.Limit(inputs=(_map(_read(), row_preserving=False),), n=3))
    assert isinstance(op, P.Limit)


def test_count_skips_row_preserving_maps_and_reads_metadata():
    known, _ = P.count_plan(_map(_read((3, 4)), row_preserving=True))
    assert known == 7
    known, _ = P.count_plan(_map(_read((3, 4)), row_preserving=False))
    assert known is None


# ------------------------------------------------------------------ blocks

def test_tensor_columns_round_trip():
    arr = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    table = B.table_from_columns({"x": arr, "y": np.array([1, 2, 3])})
    back = B.to_numpy_dict(table)
    assert back["x"].shape == (3, 2, 2) and np.array_equal(back["x"], arr)
    rows = list(B.iter_rows(table))
    assert np.array_equal(rows[1]["x"], arr[1]) and rows[1]["y"] == 2


def test_ragged_and_object_columns_are_pickled():
    table = B.block_from_rows([{"a": np.zeros(2)}, {"a": np.zeros(3)}])
    out = B.to_numpy_dict(table)["a"]
    assert out[0].shape == (2,) and out[1].shape == (3,)
    from fractions import Fraction
    table = B.block_from_rows([{"o": Fraction(1, 3)}, {"o": Fraction(2, 3)}])
    assert B.to_numpy_dict(table)["o"][1] == Fraction(2, 3)


def test_batch_formats():
    table = pa.table({"a": [1, 2]})
    assert B.to_batch(table, "pyarrow") is table
    assert list(B.to_batch(table, "pandas")["a"]) == [1, 2]
    assert B.to_batch(table, "numpy")["a"].tolist() == [1, 2]
    with pytest.raises(ValueError):
        B.to_batch(table, "polars")


def test_udf_error_names_operator_and_sample():
    t = T.MapBatches("MapBatches(bad)", lambda b: 1 / 0)
    with pytest.raises(Exception) as info:
        list(t.apply(iter([pa.table({"a": [7, 8]})]), T.TaskContext(0)))
    assert "MapBatches(bad)" in str(info.value) and "'a': 7" in str(info.value)


# ------------------------------------------------------------------ aggregations

def test_partial_combine_finish_match_pandas():
    pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    t = pa.table({"k": rng.integers(0, 5, 200), "v": rng.random(200)})
    aggs = [A.Count(), A.Sum("v"), A.Mean("v"), A.Std("v"), A.Min("v"), A.Max("v")]
    parts = [A.partial(t.slice(i, 50), ["k"], aggs) for i in range(0, 200, 50)]
    out = A.finish(A.combine(pa.concat_tables(parts), ["k"], aggs), ["k"], aggs).to_pandas()
    g = t.to_pandas().groupby("k")["v"]
    assert np.allclose(out["sum(v)"], g.sum().values)
    assert np.allclose(out["mean(v)"], g.mean().values)
    assert np.allclose(out["std(v)"], g.std().values)
    assert list(out["count()"]) == list(g.count().values)
