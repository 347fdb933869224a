"""The driver's side of fit(): start the worker group, gather reports as they are pushed,
persist and prune checkpoints, and restart or give up on failures.

Decisions come from the I/O-free objects in policy.py; this module only does the I/O.
"""
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import Optional

from ..core.gpus import masking

from .checkpoint import Checkpoint, pack_directory, unpack_directory
from .config import TrainTunables, default_storage_path
from .errors import ReportTimeoutError, WorkerGroupError
from .policy import (CheckpointRetention, FailurePolicy, GiveUp, IterationDone,
                     ReportAggregator, Straggler, TrackedCheckpoint)
from .progress import ProgressPrinter
from .result import Result
from .session import MARKER_FILE, TrainContext, TrainSession, WorkerStorage, set_session
from .worker import FINISHED, WorkerStats, call_train_loop

logger = logging.getLogger("zray.train")

_CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)$")


@dataclass(frozen=True)
class WorkerFailure:
    rank: int
    error: BaseException
    where: str

    def describe(self):
        return f"rank {self.rank} ({self.where}) failed: {self.error}"


def _is_zray_dataset(ds):
    import sys
    module = sys.modules.get("zray.data.dataset")
    return module is not None and isinstance(ds, module.Dataset)


def _ingest_context(scaling):
    from zray.data.context import DataContext
    ctx = DataContext.get_current().copy()
    excluded = ctx.execution_options.exclude_resources
    total = scaling.total_resources
    excluded.cpu = (excluded.cpu or 0) + total.get("CPU", 0)
    if total.get("GPU"):
        excluded.gpu = (excluded.gpu or 0) + total["GPU"]
    return ctx


def default_run_name():
    return time.strftime("zray_train_run-%Y-%m-%d_%H-%M-%S")


class Controller:
    def __init__(self, *, train_fn, train_config, backend_config, scaling_config, run_config,
                 datasets, resume_from_checkpoint, metadata):
        self.train_fn = train_fn
        self.train_config = train_config
        self.backend = backend_config
        self.scaling = scaling_config
        self.run_config = run_config
        self.datasets = dict(datasets or {})
        self.metadata = dict(metadata or {})
        self.tunables = TrainTunables.from_env()
        self.name = run_config.name or default_run_name()
        storage = run_config.storage_path or default_storage_path()
        self.run_dir = os.path.abspath(os.path.join(os.path.expanduser(str(storage)), self.name))
        cc = run_config.checkpoint_config
        self.retention = CheckpointRetention(cc.num_to_keep, cc.checkpoint_score_attribute,
                                             cc.checkpoint_score_order)
        self.failures = FailurePolicy(run_config.failure_config.max_failures)
        self.progress = ProgressPrinter(self.name, run_config.resolved_verbose())
        self.latest: Optional[Checkpoint] = resume_from_checkpoint
        self.metrics: Optional[dict] = None
        self.history = []
        self.latencies = []
        self.iterations = 0            # completed iterations over every attempt
        self.token = uuid.uuid4().hex
        self.next_index = 0
        self.phases = {}               # phase -> time.time() of its end (Result._stats)
        self.worker_stats = {}         # rank -> what its run() returned (timestamps, CPU)

    def _mark(self, phase):
        self.phases.setdefault(phase, time.time())

    # -- storage --------------------------------------------------------------------------------
    def _prepare_storage(self):
        os.makedirs(self.run_dir, exist_ok=True)
        with open(os.path.join(self.run_dir, MARKER_FILE), "w") as f:
            f.write(self.token)
        taken = [int(m.group(1)) for m in map(_CHECKPOINT_RE.match, os.listdir(self.run_dir)) if m]
        self.next_index = max(taken) + 1 if taken else 0

    def _drop_partial_checkpoints(self):
        """After a failed attempt: the checkpoint directories some ranks wrote for an
        iteration that never completed."""
        kept = {t.name for t in self.retention.kept}
        for entry in os.listdir(self.run_dir):
            m = _CHECKPOINT_RE.match(entry)
            if m and int(m.group(1)) >= self._attempt_first_index and entry not in kept:
                shutil.rmtree(os.path.join(self.run_dir, entry), ignore_errors=True)

    def _storage(self):
        return WorkerStorage(self.run_dir, self.token, self.next_index)

    # -- one report at a time -------------------------------------------------------------------
    def _on_report(self, agg, event):
        now = time.time()
        if event.rank == 0:
            self.phases.setdefault(f"rank0_report_{event.iteration}", event.sent_at)
        self.latencies.append(now - event.sent_at)
        self.next_index = max(self.next_index, self._storage_index(event) + 1)
        if event.packed is not None:
            unpack_directory(event.packed, os.path.join(self.run_dir, event.checkpoint_name))
        out = agg.handle_report(event.rank, event.iteration, event.metrics,
                                event.checkpoint_name is not None, time.monotonic())
        for record in out:
            if isinstance(record, IterationDone):
                self._on_iteration(record)
        return [r for r in out if isinstance(r, Straggler)]

    def _storage_index(self, event):
        return self._attempt_first_index + event.iteration

    def _on_iteration(self, done):
        self.iterations += 1
        self.metrics = done.metrics
        self.history.append(done.metrics)
        name = None
        if done.checkpoint_ranks:
            name = f"checkpoint_{self._attempt_first_index + done.iteration:06d}"
            path = os.path.join(self.run_dir, name)
            self.latest = Checkpoint(path)
            tracked = TrackedCheckpoint(self._attempt_first_index + done.iteration, name,
                                        done.metrics)
            for drop in self.retention.register(tracked):
                shutil.rmtree(os.path.join(self.run_dir, drop.name), ignore_errors=True)
        self.progress.report(self.iterations - 1, done.metrics, name)
        for cb in self.run_config.callbacks or []:
            hook = getattr(cb, "after_report", None)
            if hook is not None:
                hook(run_context=None, metrics=[done.metrics], checkpoint=self.latest if name
                     else None)

    # -- fit ------------------------------------------------------------------------------------
    def fit(self):
        self._mark("fit_start")
        self._prepare_storage()
        while True:
            self._attempt_first_index = self.next_index
            if self.scaling.num_workers == 0:
                failure = self._run_in_process()
            else:
                failure = self._run_group()
            if failure is None:
                break
            self._drop_partial_checkpoints()
            decision = self.failures.handle_failure(failure.describe())
            if isinstance(decision, GiveUp):
                raise self._error(failure, decision.failures)
            logger.warning("zray.train %s: %s; restarting the worker group (failure %d of %s) "
                           "from %s", self.name, failure.describe(), decision.attempt,
                           "unlimited" if self.failures.max_failures == -1
                           else self.failures.max_failures, self.latest or "the start")
            self.progress.message(f"restarting after a failure of rank {failure.rank} "
                                  f"from {self.latest.path if self.latest else 'the start'}")
        best = [(Checkpoint(os.path.join(self.run_dir, t.name)), t.metrics)
                for t in self.retention.best()]
        return Result(metrics=self.metrics, checkpoint=self.latest, path=self.run_dir,
                      best_checkpoints=best, metrics_history=list(self.history),
                      _stats={"report_latency_s": list(self.latencies),
                              "failures": self.failures.failures,
                              "phases": dict(self.phases), "workers": dict(self.worker_stats)})

    def _error(self, failure, failures):
        tries = "no restart was allowed" if failures == 1 else f"after {failures - 1} restart(s)"
        err = WorkerGroupError(
            f"zray.train run {self.name!r} failed ({tries}; FailureConfig.max_failures="
            f"{self.failures.max_failures}): {failure.describe()}", {failure.rank: failure.error})
        err.__cause__ = failure.error
        return err

    # -- num_workers=0: the loop runs here ------------------------------------------------------
    def _run_in_process(self):
        agg = ReportAggregator(1, self.tunables.report_timeout_s)
        ctx = TrainContext(0, 1, 0, 1, 0, self.name, self.run_dir, self.metadata, self.token)
        shards = {k: v for k, v in self.datasets.items()}
        session = TrainSession(ctx, self._storage(), lambda ev: self._on_report(agg, ev),
                               self.latest, shards)
        set_session(session)
        try:
            call_train_loop(self.train_fn, self.train_config)
        except Exception as exc:
            return WorkerFailure(0, exc, "in the driver's process")
        finally:
            set_session(None)
        return None

    # -- the worker group -----------------------------------------------------------------------
    def _run_group(self):
        import zray
        from .worker_group import WorkerGroup, node_visible_gpus
        if not zray.is_initialized():
            zray.init()
        preload = getattr(self.backend, "preload_modules", ())
        if preload:
            # Every node's zygote imports them from now on: this group's workers (asked for
            # after this message, on the same connection) and every later one start with them.
            from zray.util.worker_preload import preload_worker_modules
            preload_worker_modules(preload)
            self._mark("preload_sent")
        group = WorkerGroup(self.scaling, self.tunables)
        try:
            group.start(self._mark)
            return self._drive(group, node_visible_gpus)
        finally:
            self._mark("loop_done")
            group.shutdown()
            self._mark("group_down")

    def _start_specs(self, group):
        """Per actor: the starting checkpoint (its path, and its packed files for workers on
        other nodes, which may not see the driver's filesystem)."""
        import zray
        if self.latest is None:
            return [None] * len(group.actors)
        here = zray.get_runtime_context().get_node_id()
        packed = None
        specs = []
        for info in group.infos:
            if info["node_id"] == here:
                specs.append((self.latest.path, None))
            else:
                if packed is None:
                    packed = pack_directory(self.latest.path)
                specs.append((self.latest.path, packed))
        return specs

    def _shards(self, n, group=None):
        per_rank = [dict() for _ in range(n)]
        for name, ds in self.datasets.items():
            if group is not None and _is_zray_dataset(ds):
                # The ingest plans around the worker group's resources (Ray's
                # exclude_resources): when the group holds every CPU, its tasks share them
                # instead of waiting for a CPU that never frees.
                parts = ds.streaming_split(n, equal=True,
                                           _data_context=_ingest_context(self.scaling))
            elif hasattr(ds, "streaming_split"):
                parts = ds.streaming_split(n, equal=True)
            elif hasattr(ds, "split"):
                parts = ds.split(n)
            else:
                parts = [ds] * n
            for r in range(n):
                per_rank[r][name] = parts[r]
        return per_rank

    def _drive(self, group, node_visible_gpus):
        import zray
        n = len(group.actors)
        addr, port = group.master_address()
        self._mark("master_port")
        specs = self._start_specs(group)
        shards = self._shards(n, group)
        storage = self._storage()
        nnodes = len({i["node_id"] for i in group.infos})
        group_name = f"zray-train-{self.token[:12]}-{uuid.uuid4().hex[:8]}"
        run_refs, poll_refs, where = {}, {}, {}
        for actor, info, rinfo, spec in zip(group.actors, group.infos, group.ranks, specs):
            r = rinfo.world_rank
            where[r] = f"pid {info['pid']} on {info['hostname']}"
            ctx = TrainContext(r, n, rinfo.local_rank, rinfo.local_world_size, rinfo.node_rank,
                               self.name, self.run_dir, self.metadata, self.token)
            env = {"MASTER_ADDR": addr, "MASTER_PORT": str(port), "RANK": str(r),
                   "LOCAL_RANK": str(rinfo.local_rank), "WORLD_SIZE": str(n),
                   "LOCAL_WORLD_SIZE": str(rinfo.local_world_size),
                   "NODE_RANK": str(rinfo.node_rank), "GROUP_RANK": str(rinfo.node_rank),
                   "NNODES": str(nnodes), "ZRAY_TRAIN_RUN_TOKEN": self.token,
                   "ZRAY_TRAIN_GROUP": group_name}
            gpus = node_visible_gpus(group.infos, info["node_id"])
            if gpus and masking():
                # Only when masking is asked for (ZRAY_MASK_GPUS=1): otherwise each worker
                # keeps the node's device list and picks its own by index (zray/core/gpus.py).
                env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
            run_refs[r] = actor.run.remote(self.train_fn, self.train_config, ctx, storage,
                                           spec, shards[r], self.backend, env)
            poll_refs[r] = actor.poll.remote(self.tunables.poll_s)
        self._mark("run_sent")
        actors = {r: group.actor_of_rank(r) for r in range(n)}
        agg = ReportAggregator(n, self.tunables.report_timeout_s)
        by_ref = {}
        for r, ref in run_refs.items():
            by_ref[ref] = ("run", r)
        for r, ref in poll_refs.items():
            by_ref[ref] = ("poll", r)
        while not agg.all_finished:
            deadline = agg.next_deadline()
            timeout = self.tunables.poll_s * 2 + 5
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - time.monotonic()))
            ready, _ = zray.wait(list(by_ref), num_returns=1, timeout=timeout)
            for ref in ready:
                kind, r = by_ref.pop(ref)
                try:
                    value = zray.get(ref, timeout=self.tunables.start_timeout_s)
                except Exception as exc:
                    return WorkerFailure(r, exc, where[r])
                if kind == "run":
                    continue                      # FINISHED comes through the poll
                finished = False
                for ev in value:
                    if isinstance(ev, WorkerStats):
                        self.worker_stats[ev.rank] = ev.stats
                        continue
                    if ev == FINISHED:
                        finished = True
                        stragglers = agg.handle_finished(r)
                    else:
                        stragglers = self._on_report(agg, ev)
                    if stragglers:
                        s = stragglers[0]
                        return WorkerFailure(s.rank, ReportTimeoutError(s.message()),
                                             where[s.rank])
                if not finished:
                    by_ref[actors[r].poll.remote(self.tunables.poll_s)] = ("poll", r)
            late = agg.check_timeouts(time.monotonic())
            if late:
                s = late[0]
                return WorkerFailure(s.rank, ReportTimeoutError(s.message()), where[s.rank])
        return None

