"""The streaming executor: runs a physical plan on zray tasks and actors, yielding RefBundles.

Each map stage is a generator over its upstream's bundles. It asks its MapStageState (and the
execution's shared MemoryBudget) whether to submit, submits, waits on the small metadata objects
of its running tasks (never on the blocks), and emits outputs in order. The blocks themselves stay
in the shared-memory store; the driver only holds ObjectRefs and BlockMetadata.
"""
import dataclasses
import logging
import math
import time
import uuid
from dataclasses import dataclass

import zray

from . import plan as P
from .block import BlockMetadata
from .errors import UserCodeException
from .progress import Progress
from .remote import MapActor, map_task
from .scheduling import (ActorPoolState, MapStageState, MemoryBudget, PoolRequest,
                         allocate_pools)
from .stats import ExecutionStats

logger = logging.getLogger("zray.data")

_WAIT_S = 1.0       # poll period of waits on running tasks (each wait is bounded)


@dataclass(frozen=True)
class RefBundle:
    """One block in the store and what the driver knows of it. `counted`: its bytes are in the
    execution's memory budget until the consumer releases them."""
    ref: object
    meta: BlockMetadata
    counted: bool = False


REMOTE_MODULES = ("pyarrow", "pyarrow.compute", "zray.data", "zray.data._internal.remote",
                  "zray.data.read_api")   # read_api: the datasources, plan and context (~60 ms)


def _remote_modules():
    """pandas too where it is installed: pyarrow imports it at its first table from numpy
    arrays (~0.3-0.4 s of CPU in every fresh worker's first read task otherwise)."""
    import importlib.util
    return REMOTE_MODULES + (("pandas",) if importlib.util.find_spec("pandas") else ())


def ensure_initialized():
    if not zray.is_initialized():
        zray.init()


def cluster_cpus(ctx, resources):
    limit = ctx.execution_options.resource_limits.cpu
    total = resources.get("CPU", 1.0)
    excluded = getattr(ctx.execution_options, "exclude_resources", None)
    if excluded is not None and excluded.cpu:
        total = max(0.0, total - excluded.cpu)
    return min(total, limit) if limit is not None else total


def memory_limit(ctx, resources):
    limit = ctx.execution_options.resource_limits.object_store_memory
    if limit is not None:
        return int(limit)
    store = resources.get("object_store_memory", 2 << 30)
    return max(64 << 20, int(store // 4))


class Execution:
    """One run of a physical plan. Iterate it for RefBundles; close() stops it."""

    def __init__(self, stage, ctx, name="dataset"):
        ensure_initialized()
        # Workers forked from now on start with the remote side of zray.data imported (~0.5 s
        # per fresh worker otherwise: pyarrow); sent once per process.
        from zray.util.worker_preload import preload_worker_modules
        preload_worker_modules(_remote_modules())
        self.ctx = ctx
        self.stage = stage
        resources = zray.cluster_resources()
        self.budget = MemoryBudget(memory_limit(ctx, resources))
        self.stats = ExecutionStats(name)
        self.total_cpus = cluster_cpus(ctx, resources)
        self.progress = Progress(ctx)
        self._errored = 0
        self._warned = set()
        self._gen = None
        self._actors = []
        requests, self._pool_index, task_cpus = _pool_requests(stage)
        self._pools = allocate_pools(self.total_cpus, task_cpus, requests)
        if task_cpus and self.total_cpus < task_cpus and not self._pools.tasks_without_cpu:
            # Other work holds every CPU (exclude_resources: a zray.train worker group fed by
            # this run): reserving a CPU per task would wait for ever, so tasks share them.
            self._pools = dataclasses.replace(self._pools, tasks_without_cpu=True)
            self._warn(name, f"{self.total_cpus:g} CPU(s) are left for this run once "
                             "execution_options.exclude_resources is taken out: its tasks run "
                             "without a CPU reservation")

    def __iter__(self):
        self._gen = self._run(self.stage)
        previous = None
        try:
            for bundle in self._gen:
                if previous is not None and previous.counted:
                    self.budget.release(previous.meta.size_bytes or 0)
                previous = bundle
                yield bundle
        finally:
            self.close()

    def close(self):
        if self._gen is not None:
            close = getattr(self._gen, "close", None)
            if close is not None:
                close()
            self._gen = None
        for actor in self._actors:
            _kill(actor)
        self._actors = []
        self.stats.finish()
        self.progress.close()

    def collect(self):
        return list(self)

    # ---------------------------------------------------------------- dispatch by stage type
    def _run(self, stage):
        if isinstance(stage, P.InputStage):
            return iter(stage.bundles)
        if isinstance(stage, P.MapStage):
            if stage.compute.kind == "actors":
                return self._run_actors(stage)
            return self._run_tasks(stage)
        if isinstance(stage, P.LimitStage):
            return self._run_limit(stage)
        if isinstance(stage, P.UnionStage):
            return self._run_union(stage)
        if isinstance(stage, (P.AllToAllStage, P.ZipStage, P.JoinStage)):
            return self._run_barrier(stage)
        raise TypeError(f"unknown stage {stage!r}")

    def _upstream_items(self, stage):
        if stage.read_tasks:
            return iter(stage.read_tasks)
        return self._run(stage.upstream)

    @staticmethod
    def _item_bytes(item):
        meta = item.meta if isinstance(item, RefBundle) else getattr(item, "metadata", None)
        return getattr(meta, "size_bytes", None)

    @staticmethod
    def _item_arg(item):
        return item.ref if isinstance(item, RefBundle) else item

    # ---------------------------------------------------------------- task stages
    def _run_tasks(self, stage):
        args = dict(stage.remote_args)
        cpus = 0 if self._pools.tasks_without_cpu else args.get("num_cpus", 1)
        args["num_cpus"] = cpus
        slots = self.total_cpus / cpus if cpus else max(1.0, self.total_cpus)
        max_in_flight = max(1, int(math.floor(slots + 1e-9)) + 1)
        if stage.compute.max_concurrency:
            max_in_flight = min(max_in_flight, stage.compute.max_concurrency)
        fn = map_task.options(**_task_options(args))
        key = uuid.uuid4().hex
        holder = [zray.put(tuple(stage.transforms))]

        def submit(item, seq):
            block_ref, meta_ref = fn.remote(key, holder, self._item_arg(item), seq, stage.name)
            return block_ref, meta_ref
        return self._stream(stage, self._upstream_items(stage), max_in_flight,
                            submit, lambda seq: None)

    # ---------------------------------------------------------------- actor stages
    def _run_actors(self, stage):
        args = dict(stage.remote_args)
        args.pop("num_cpus", None)
        size = self._pools.sizes[self._pool_index[id(stage)]]
        if size.warning:
            self._warn(stage.name, size.warning)
        comp = stage.compute
        pool = ActorPoolState(size.min_size, size.max_size,
                              comp.max_tasks_in_flight_per_actor or self.ctx.max_tasks_in_flight_per_actor)
        actor_cls = zray.remote(MapActor).options(num_cpus=size.actor_cpus, **_actor_options(args))
        chain = tuple(stage.transforms)
        actors = []
        calls = {}

        def grow():
            handle = actor_cls.remote(chain)
            actors.append(handle)
            self._actors.append(handle)
            return pool.on_actor_added()

        # Start the pool before the first input so actors construct while it is made; after a
        # barrier, only when its output arrives (the barrier's tasks come first).
        if not _barrier_upstream(stage):
            for _ in range(size.min_size):
                grow()

        def submit(item, seq):
            idx = pool.pick()
            if idx is None and pool.should_grow(1):
                idx = grow()
            if idx is None:
                return None
            pool.on_call(idx)
            calls[seq] = idx
            return actors[idx].process.options(num_returns=2).remote(
                self._item_arg(item), seq, stage.name)

        def done(seq):
            pool.on_call_done(calls.pop(seq))
        try:
            yield from self._stream(stage, self._upstream_items(stage),
                                    pool.max_size * pool.per_actor, submit, done,
                                    has_room=lambda: pool.pick() is not None or pool.should_grow(1))
        finally:
            # The stage is done (or abandoned): its actors' CPUs go back to later stages.
            for handle in actors:
                _kill(handle)
                self._actors.remove(handle)

    def _warn(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)

    # ---------------------------------------------------------------- the streaming loop
    def _stream(self, stage, upstream, max_in_flight, submit, done, has_room=lambda: True):
        state = MapStageState(max_in_flight, self.budget,
                              self.ctx.execution_options.preserve_order)
        op = self.stats.op(stage.name)
        bar = self.progress.bar(stage.name)
        running = {}       # meta_ref -> (seq, block_ref, input item)
        outputs = {}       # seq -> RefBundle
        staged = None
        end = object()
        try:
            while True:
                while not state.input_done and has_room():
                    if staged is None:
                        staged = next(upstream, end)
                        if staged is end:
                            staged = None
                            state.on_input_exhausted()
                            break
                    if not state.can_submit(self._item_bytes(staged)):
                        break
                    seq = state.next_seq
                    refs = submit(staged, seq)
                    if refs is None:
                        break
                    state.on_submitted(self._item_bytes(staged))
                    running[refs[1]] = (seq, refs[0], staged)
                    op.on_submitted()
                    staged = None
                seq = state.next_emittable()
                if seq is not None:
                    state.on_emitted(seq)
                    yield outputs.pop(seq)
                    continue
                if state.done:
                    return
                if not running:
                    continue
                ready, _ = zray.wait(list(running), num_returns=1, timeout=_WAIT_S)
                for meta_ref in ready:
                    seq, block_ref, item = running.pop(meta_ref)
                    done(seq)
                    if isinstance(item, RefBundle) and item.counted:
                        self.budget.release(item.meta.size_bytes or 0)
                    try:
                        meta = zray.get(meta_ref, timeout=300)
                    except UserCodeException as exc:
                        if not self._may_skip(exc, stage.name):
                            raise
                        state.on_skipped(seq)
                        continue
                    state.on_finished(seq, meta.size_bytes or 0)
                    outputs[seq] = RefBundle(block_ref, meta, counted=True)
                    op.on_finished(meta)
                    bar.update(meta.num_rows or 0)
        finally:
            close = getattr(upstream, "close", None)
            if close is not None:
                close()
            for _seq, _block, item in running.values():
                if isinstance(item, RefBundle) and item.counted:
                    self.budget.release(item.meta.size_bytes or 0)
            op.on_done()
            bar.close()

    def _may_skip(self, exc, name):
        limit = self.ctx.max_errored_blocks
        if limit == -1 or self._errored < limit:
            self._errored += 1
            logger.warning("Skipping a block that failed in %s (%d errored so far, "
                           "max_errored_blocks=%s): %s", name, self._errored, limit,
                           str(exc).splitlines()[0][:300])
            return True
        return False

    # ---------------------------------------------------------------- other stages
    def _run_limit(self, stage):
        from .shuffle import slice_bundle
        remaining = stage.n
        if remaining <= 0:
            return
        upstream = self._run(stage.upstream)
        try:
            for bundle in upstream:
                rows = bundle.meta.num_rows
                if rows <= remaining:
                    remaining -= rows
                    yield bundle
                else:
                    if bundle.counted:
                        self.budget.release(bundle.meta.size_bytes or 0)
                    yield slice_bundle(bundle, 0, remaining)
                    remaining = 0
                if remaining <= 0:
                    return
        finally:
            upstream.close() if hasattr(upstream, "close") else None

    def _run_union(self, stage):
        for up in stage.upstreams:
            yield from self._run(up)

    def _run_barrier(self, stage):
        from . import shuffle
        ups = getattr(stage, "upstreams", None) or (stage.upstream,)
        inputs = []
        for up in ups:
            bundles = []
            for b in self._run(up):
                if b.counted:
                    self.budget.release(b.meta.size_bytes or 0)
                bundles.append(RefBundle(b.ref, b.meta))
            inputs.append(bundles)
        op = self.stats.op(stage.name)
        start = time.perf_counter()
        if isinstance(stage, P.ZipStage):
            out = shuffle.zip_bundles(inputs)
        elif isinstance(stage, P.JoinStage):
            out = shuffle.join(inputs[0], inputs[1], stage.params)
        else:
            out = shuffle.run(stage.kind, stage.params, inputs[0], self.total_cpus)
        for b in out:
            op.on_finished(b.meta)
        op.elapsed = time.perf_counter() - start
        op.on_done()
        yield from out


_STREAMING = (P.MapStage, P.LimitStage, P.UnionStage)


def _upstreams(stage):
    if isinstance(stage, (P.UnionStage, P.ZipStage, P.JoinStage)):
        return list(stage.upstreams)
    up = getattr(stage, "upstream", None)
    return [up] if up is not None else []


def _pool_requests(stage):
    """(the actor pools of a plan, most upstream first; their index by stage id; the largest CPU
    request of its tasks: maps and reads, 1 for shuffles; a limit's slicing task asks none)."""
    requests, index, task_cpus = [], {}, 0

    def visit(st):
        nonlocal task_cpus
        for up in _upstreams(st):
            visit(up)
        if isinstance(st, P.MapStage):
            if st.compute.kind == "actors":
                index[id(st)] = len(requests)
                c = st.compute
                requests.append(PoolRequest(f"The actor pool of {st.name}",
                                            st.remote_args.get("num_cpus", 1), c.min_size,
                                            c.max_size))
            else:
                task_cpus = max(task_cpus, st.remote_args.get("num_cpus", 1))
        elif not isinstance(st, (P.InputStage, P.UnionStage, P.LimitStage)):
            task_cpus = max(task_cpus, 1)       # shuffles, zips, joins
    visit(stage)
    return requests, index, task_cpus


def _kill(actor):
    try:
        zray.kill(actor)
    except Exception as exc:      # the actor may already be gone
        logger.debug("kill of a map actor failed: %s", exc)


def _barrier_upstream(stage):
    """Whether a barrier stage (shuffle, zip, join) feeds `stage` through streaming stages."""
    todo = _upstreams(stage)
    while todo:
        up = todo.pop()
        if not isinstance(up, _STREAMING) and not isinstance(up, P.InputStage):
            return True
        if isinstance(up, _STREAMING):
            todo.extend(_upstreams(up))
    return False


def _task_options(args):
    allowed = {"num_cpus", "num_gpus", "resources", "memory", "scheduling_strategy",
               "max_retries", "retry_exceptions", "accelerator_type", "label_selector",
               "runtime_env", "placement_group", "placement_group_bundle_index"}
    out = {k: v for k, v in args.items() if k in allowed and v is not None}
    out.setdefault("max_retries", 0)
    return out


def _actor_options(args):
    allowed = {"num_gpus", "resources", "memory", "scheduling_strategy", "max_restarts",
               "max_task_retries", "accelerator_type", "runtime_env", "label_selector"}
    return {k: v for k, v in args.items() if k in allowed and v is not None}
