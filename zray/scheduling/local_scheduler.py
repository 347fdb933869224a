"""The node-local scheduler: a state machine with no sockets and no processes.

Events come in through the `handle_*` methods; each returns a list of actions (frozen
dataclasses, below) for the node daemon to carry out:

    Dispatch(task, worker)           send the task to that worker
    StartWorker(job_id, runtime_env) start one more worker process for the job (and env)
    Infeasible(task)                 no node resource total can ever fit it: warn its owner once
    Cancelled(task)                  a queued task was removed by cancel
    Interrupt(worker, force, recursive)  cancel a running task: interrupt it, or kill its worker
    Failed(task, reason)             the worker running the task died
    KillWorker(worker)               a worker is no longer needed (or runs an orphaned task)
    GroupRemoved(task)               a queued task asks for resources of a removed placement group
    GroupWorker(worker)              a worker runs a task or hosts an actor of a removed group

Everything outside reads the machine through its queries (`room`, `owners`, `has_infeasible`,
`running_task_of`, ...) and changes it only through its events.

Workers are pooled by job and runtime_env (its canonical text, "" for none): a task runs only
in a worker started for its own environment.

Tasks wait in one FIFO per scheduling class (job, resource shape, runtime_env and nesting depth), so a task
that does not fit never blocks a smaller one behind it, and each event costs O(classes), not O(queued tasks).
"""
import collections
from dataclasses import dataclass

from .resources import CPU, GPU, GpuSlots, add, fits, subtract

CPU_IN_GROUP = "CPU_group_"     # a placement group's CPUs (placement_groups.py): lent like CPU


# -- actions ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Dispatch:
    task: "Task"
    worker: "Worker"


@dataclass(frozen=True, slots=True)
class StartWorker:
    job_id: str
    runtime_env: str = ""


@dataclass(frozen=True, slots=True)
class Infeasible:
    task: "Task"


@dataclass(frozen=True, slots=True)
class WorkerCapReached:
    """Tasks of `task`'s job wait for a worker and the node runs `cap` task workers already
    (once per job: the owner is warned, naming the limit)."""
    task: "Task"
    cap: int


@dataclass(frozen=True, slots=True)
class Cancelled:
    task: "Task"


@dataclass(frozen=True, slots=True)
class Interrupt:
    worker: "Worker"
    force: bool
    recursive: bool = True


@dataclass(frozen=True, slots=True)
class Failed:
    task: "Task"
    reason: str


@dataclass(frozen=True, slots=True)
class KillWorker:
    worker: "Worker"


@dataclass(frozen=True, slots=True)
class GroupRemoved:
    task: "Task"


@dataclass(frozen=True, slots=True)
class GroupWorker:
    worker: "Worker"


class Task:
    """A task as the node holds it: its spec, its message frames, and where it runs."""

    __slots__ = ("spec", "frames", "worker", "gpu_grants", "cancelled", "orphaned", "depth",
                 "hops", "origin")

    def __init__(self, spec, frames, hops=0, origin=None):
        self.spec = spec
        self.frames = frames
        self.worker = None
        self.gpu_grants = []
        self.cancelled = False
        self.orphaned = False       # its owner died: nobody is told how it ends
        self.depth = 0              # nesting: 1 + its parent's, when the parent runs here
        self.hops = hops            # how many times nodes forwarded it to reach this one
        self.origin = origin        # the node that forwarded it here (told when it ends)


class Worker:
    __slots__ = ("worker_id", "job_id", "address", "pid", "state", "task", "held", "blocked",
                 "detached", "last_task", "runtime_env", "gpu", "gpu_held")

    def __init__(self, worker_id, job_id, runtime_env=""):
        self.worker_id = worker_id
        self.job_id = job_id
        self.runtime_env = runtime_env
        self.address = None
        self.pid = None
        self.state = "starting"     # starting -> idle <-> busy -> dead; busy -> actor -> dead;
                                    # idle -> retiring -> dead (gave way to another pool)
        self.task = None
        self.held = {}              # resources held by the running task
        self.blocked = False
        self.detached = False       # hosts a detached actor: outlives its job
        self.last_task = None       # the task it finished last, while it runs no other
        # Whether it ran a task that used GPUs (None: no task yet). GPU and CPU tasks never
        # share a worker (as in Ray): a CUDA context, CUDA_VISIBLE_DEVICES and the memory a
        # GPU library keeps would leak into CPU tasks, and a GPU task would inherit a CPU
        # task's state.
        self.gpu = None
        self.gpu_held = []          # GPU grants an actor it hosts keeps for its life


class LocalScheduler:
    def __init__(self, total, max_workers=64):
        self.total = dict(total)
        self.available = dict(total)
        self.gpus = GpuSlots(total.get(GPU, 0) // 10_000)
        self.max_workers = max_workers
        self.queues = collections.OrderedDict()     # scheduling class -> deque of Task
        self.infeasible = collections.OrderedDict()  # task_id -> Task
        self.warned_classes = set()
        self.workers = {}                           # worker_id -> Worker
        self.idle = collections.defaultdict(collections.deque)  # pool -> idle Workers
        self.starting = collections.Counter()       # pool -> workers being started
        # (a pool: (job_id, runtime_env), see _pool)
        self.running = {}                           # task_id -> Task
        self.queued_demand = {}                     # what the queued tasks will need, summed
        self.at_cap = False                         # the last schedule wanted workers, capped
        self.cap_warned = set()                     # jobs told about the worker cap

    # -- events --------------------------------------------------------------------------------
    def handle_task_submitted(self, task):
        spec = task.spec
        if not fits(spec.resources, self.total):
            self.infeasible[spec.task_id] = task
            cls = spec.scheduling_class()
            if cls in self.warned_classes:
                return []
            self.warned_classes.add(cls)
            if _in_a_group(spec.resources):
                return []    # it waits for its placement group's bundles, not for a node
            return [Infeasible(task)]
        parent = self.running.get(spec.parent_task_id)
        task.depth = parent.depth + 1 if parent is not None else 0
        self.queues.setdefault(spec.scheduling_class() + (task.depth,), collections.deque()).append(task)
        add(self.queued_demand, spec.resources)
        return self._schedule()

    def handle_worker_started(self, worker_id, job_id, address, pid, runtime_env="",
                              outdated=False):
        """outdated: it was forked before the zygote imported modules asked for since
        (handle_modules_preloaded): a fresh fork, which has them, takes its place."""
        worker = self.workers.get(worker_id)
        if worker is None:
            worker = self.workers[worker_id] = Worker(worker_id, job_id, runtime_env)
        pool = _pool(worker)
        self.starting[pool] = max(0, self.starting[pool] - 1)
        worker.address = address
        worker.pid = pid
        if outdated:
            worker.state = "retiring"
            self.starting[pool] += 1
            return [KillWorker(worker), StartWorker(*pool)]
        worker.state = "idle"
        self.idle[pool].append(worker)
        return self._schedule()

    def handle_worker_start_failed(self, job_id, runtime_env=""):
        pool = (job_id, runtime_env)
        self.starting[pool] = max(0, self.starting[pool] - 1)
        return []

    def handle_task_finished(self, worker_id):
        worker = self.workers.get(worker_id)
        if worker is None or worker.task is None:
            return []
        task = worker.task
        self._release(worker)
        worker.state = "idle"
        worker.last_task = task
        self.idle[_pool(worker)].append(worker)
        return self._schedule()

    def handle_actor_started(self, worker_id, lifetime, detached):
        """The creation task finished: the worker now hosts the actor for good. It gives back
        what placing it took and holds what the actor keeps while it lives."""
        worker = self.workers.get(worker_id)
        if worker is None or worker.task is None:
            return []
        # The GPUs it was placed on stay its own (the same ids its get_gpu_ids() shows), or
        # the next actor would be granted the same devices.
        keep = worker.task.gpu_grants if lifetime.get(GPU) else []
        worker.task.gpu_grants = []
        self._release(worker)
        subtract(self.available, lifetime)
        worker.gpu_held = keep
        worker.held = dict(lifetime)
        worker.state = "actor"
        worker.detached = detached
        return self._schedule()

    def handle_worker_blocked(self, worker_id, blocked):
        """A worker waits in get/wait: lend its CPUs to other tasks until it is back."""
        worker = self.workers.get(worker_id)
        if worker is None or worker.task is None or worker.blocked == blocked:
            return []
        worker.blocked = blocked
        cpus = _lendable(worker.held)
        if blocked:
            add(self.available, cpus)
            return self._schedule()
        subtract(self.available, cpus)
        return []

    def handle_worker_died(self, worker_id):
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return []
        actions = []
        if worker.state == "starting":
            self.starting[_pool(worker)] -= 1
        try:
            self.idle[_pool(worker)].remove(worker)
        except ValueError:
            pass
        task = worker.task
        if task is not None or worker.held:
            self._release(worker)
        if task is not None:
            if task.orphaned:
                pass
            elif not task.cancelled:
                actions.append(Failed(task, "worker_died"))
            else:
                actions.append(Cancelled(task))
        elif worker.last_task is not None and worker.state == "idle" \
                and not worker.last_task.orphaned:
            # It said it finished, then died: its reply may have died with it (a worker's
            # messages to the node and to the owner take different paths). The owner ignores
            # this if the result did arrive; else the task is retried or fails, never waited on.
            actions.append(Failed(worker.last_task, "worker_died"))
        worker.state = "dead"
        return actions + self._schedule()

    def handle_cancel(self, task_id, force, recursive=True):
        for cls, queue in self.queues.items():
            for task in queue:
                if task.spec.task_id == task_id:
                    queue.remove(task)
                    subtract(self.queued_demand, task.spec.resources)
                    return [Cancelled(task)]
        task = self.infeasible.pop(task_id, None)
        if task is not None:
            return [Cancelled(task)]
        task = self.running.get(task_id)
        if task is not None and task.worker is not None:
            task.cancelled = True
            return [Interrupt(task.worker, force, recursive)]
        return []

    def handle_owner_died(self, owner):
        """The process that submitted these tasks is gone (fate sharing, as in Ray): drop its
        queued tasks and stop the workers that run its tasks, children of a killed task too."""
        for cls in list(self.queues):
            queue = self.queues[cls]
            kept = collections.deque(t for t in queue if t.spec.owner != owner)
            if len(kept) != len(queue):
                if kept:
                    self.queues[cls] = kept
                else:
                    del self.queues[cls]
        for tid in [t for t, task in self.infeasible.items() if task.spec.owner == owner]:
            del self.infeasible[tid]
        self._recount_demand()
        for worker in self.workers.values():
            if worker.last_task is not None and worker.last_task.spec.owner == owner:
                worker.last_task = None
        actions = []
        for task in list(self.running.values()):
            if task.spec.owner == owner and task.worker is not None:
                task.orphaned = task.cancelled = True
                actions.append(KillWorker(task.worker))
        return actions

    def handle_job_finished(self, job_id):
        """The job's driver is gone: drop its queued tasks and stop its workers."""
        for cls in [c for c in self.queues if c[0] == job_id]:
            del self.queues[cls]
        for tid in [t for t, task in self.infeasible.items() if task.spec.job_id == job_id]:
            del self.infeasible[tid]
        self._recount_demand()
        actions = []
        for worker in [w for w in self.workers.values() if w.job_id == job_id and not w.detached]:
            worker.last_task = None      # nobody waits for its results any more
            actions.append(KillWorker(worker))
        return actions

    def handle_modules_preloaded(self):
        """The zygote now imports more modules (WORKER_PRELOAD): idle workers forked before
        lack them. Those that never ran a task (prestarted: no result of theirs can be in
        flight) give way to fresh ones of their pool, forked after the import, so the next
        actor or task (a zray.train worker) starts with the modules instead of importing them.
        Workers that ran tasks, and busy ones, stay."""
        actions = []
        for pool, idle in self.idle.items():
            for worker in [w for w in idle if w.last_task is None and w.gpu is None]:
                idle.remove(worker)
                worker.state = "retiring"
                self.starting[pool] += 1
                actions += [KillWorker(worker), StartWorker(*pool)]
        return actions

    def handle_prestart(self, job_id, n):
        """Start n workers for a job before any task asks for them (an embedded node)."""
        self.starting[(job_id, "")] += n
        return [StartWorker(job_id) for _ in range(n)]

    def take_infeasible(self):
        """Infeasible re-evaluation: the membership or the resources changed, so every parked
        task leaves the machine to be placed again (here through handle_task_submitted, or on
        a peer). The one way infeasible tasks come back to life."""
        waiting = list(self.infeasible.values())
        self.infeasible.clear()
        return waiting

    def handle_groups_removed(self, pg_ids):
        """Infeasible tasks waiting for bundles of these removed placement groups would wait
        forever: they leave as GroupRemoved."""
        if not self.infeasible or not pg_ids:
            return []
        doomed = []
        for task_id, task in self.infeasible.items():
            for name in task.spec.resources:
                if "_group_" in name:
                    if name.rpartition("_")[2] in pg_ids:
                        doomed.append(task_id)
                    break
        return [GroupRemoved(self.infeasible.pop(t)) for t in doomed]

    def take_waiting(self, can_move, limit):
        """Remove and return up to `limit` queued tasks that wait for resources here and for
        which can_move(task) says another node takes them now (moving queued work out)."""
        taken = []
        for cls in list(self.queues):
            queue = self.queues[cls]
            while queue and len(taken) < limit:
                task = queue[-1]            # the newest: the head keeps its turn here
                if fits(task.spec.resources, self.available) or not can_move(task):
                    break
                queue.pop()
                subtract(self.queued_demand, task.spec.resources)
                taken.append(task)
            if not queue:
                del self.queues[cls]
        return taken

    # -- placement groups (hooks for node/pg_service.py) -------------------------------------------
    def reserve(self, units):
        """A bundle is prepared here: its plain resources are set aside."""
        subtract(self.available, units)

    def handle_unreserved(self, units):
        """Set-aside resources come back (a rolled-back or removed bundle)."""
        add(self.available, units)
        return self._schedule()

    def handle_resources_added(self, units):
        """Committed bundles add their renamed resources (CPU_group_...) to total and available."""
        add(self.total, units)
        add(self.available, units)
        return self._schedule()

    def handle_resources_removed(self, units):
        """Bundles of a removed group take their renamed resources away. Resources none is left
        of are gone: queued tasks asking for them fail, and the workers using them are killed
        (their task or actor is reported by the caller, so the death itself reports nothing)."""
        subtract(self.total, units)
        subtract(self.available, units)
        gone = {name for name in units if self.total.get(name, 0) <= 0}
        for name in gone:
            self.total.pop(name, None)
            self.available.pop(name, None)
        if not gone:
            return []
        actions = []
        for cls in list(self.queues):
            queue = self.queues[cls]
            if any(name in gone for name in queue[0].spec.resources):   # one shape per class
                actions.extend(GroupRemoved(task) for task in queue)
                del self.queues[cls]
        for tid in [t for t, task in self.infeasible.items()
                    if any(name in gone for name in task.spec.resources)]:
            actions.append(GroupRemoved(self.infeasible.pop(tid)))
        self._recount_demand()
        for worker in self.workers.values():
            if any(name in gone for name in worker.held):
                worker.held = {k: v for k, v in worker.held.items() if k not in gone}
                if worker.task is not None:
                    worker.task.orphaned = True
                actions.append(GroupWorker(worker))
        return actions + self._schedule()

    # -- queries -------------------------------------------------------------------------------
    def room(self):
        """What is free once the queued tasks got theirs: how much more this node takes now."""
        room = dict(self.available)
        subtract(room, self.queued_demand)
        return room

    def list_tasks(self):
        """What this node holds: queued, infeasible and running tasks."""
        out = []
        reason = (f"waiting for a worker: this node runs its maximum of {self.max_workers} task "
                  "workers (ZRAY_MAX_WORKERS)") if self.at_cap else None
        for queue in self.queues.values():
            out.extend(_task_info(t, "PENDING", reason) for t in queue)
        out.extend(_task_info(t, "INFEASIBLE") for t in self.infeasible.values())
        out.extend(_task_info(t, "RUNNING") for t in self.running.values())
        return out

    def pending(self):
        """(task, why it waits) for every task queued or infeasible here (the state API)."""
        return [(t, self.pending_reason(t, infeasible))
                for t, infeasible in self.pending_tasks()]

    def pending_tasks(self):
        """(task, infeasible) for every task queued or infeasible here, without the reasons
        (a state query words only the ones on the page it returns: pending_reason)."""
        for queue in self.queues.values():
            for t in queue:
                yield t, False
        for t in self.infeasible.values():
            yield t, True

    def pending_reason(self, task, infeasible):
        from .resources import from_units
        if infeasible:
            return (f"infeasible: needs {from_units(task.spec.resources)} and no node has "
                    "that much; waits until a node that fits joins")
        if self.at_cap:
            return (f"waiting for a worker: this node runs its maximum of {self.max_workers} "
                    "task workers (ZRAY_MAX_WORKERS)")
        return (f"waiting for resources: needs {from_units(task.spec.resources)}, available "
                f"{from_units({k: v for k, v in self.available.items() if v > 0})}")

    def has_infeasible(self):
        return bool(self.infeasible)

    def has_queued(self):
        return bool(self.queues)

    def owners(self):
        """The owners of every task this node holds (queued, infeasible or running)."""
        owners = {t.spec.owner for q in self.queues.values() for t in q}
        owners.update(t.spec.owner for t in self.running.values())
        owners.update(t.spec.owner for t in self.infeasible.values())
        return owners

    def running_task_of(self, worker_id):
        """The task a worker runs now (or its actor's creation task until it started), or None."""
        worker = self.workers.get(worker_id)
        return worker.task if worker is not None else None

    def worker_in_use(self, worker_id):
        """Whether a worker runs a task or hosts an actor (its death then fails something)."""
        worker = self.workers.get(worker_id)
        return worker is not None and worker.state in ("busy", "actor")

    def num_queued(self):
        return sum(len(q) for q in self.queues.values()) + len(self.infeasible)

    def worker_count(self):
        return len(self.workers)

    # -- internals -----------------------------------------------------------------------------
    def _take_idle(self, pool, gpu):
        """An idle worker of the pool that may run a task that does (or does not) use GPUs."""
        idle = self.idle[pool]
        for worker in idle:
            if worker.gpu is None or worker.gpu == gpu:
                idle.remove(worker)
                worker.gpu = gpu
                return worker
        return None

    def _schedule(self):
        actions = []
        wanted = collections.Counter()
        # Deepest nested tasks first: they finish what blocked parents wait for, so a recursion
        # runs depth-first and keeps few workers blocked (FIFO within a depth).
        for cls in sorted(self.queues, key=lambda c: -c[-1]):
            queue = self.queues[cls]
            pool = (cls[0], cls[2])     # (job_id, runtime_env)
            while queue:
                task = queue[0]
                if not fits(task.spec.resources, self.available):
                    break
                worker = self._take_idle(pool, uses_gpu(task.spec.resources))
                if worker is None:
                    wanted[pool] += self._how_many_fit(queue)
                    break
                queue.popleft()
                subtract(self.queued_demand, task.spec.resources)
                self._dispatch(task, worker)
                actions.append(Dispatch(task, worker))
            if not queue:
                del self.queues[cls]
        self.at_cap = False
        if wanted:
            # Workers blocked in get() do not count: each lent its CPU, and a blocked parent
            # must never keep the children it waits for from getting a worker (deadlock).
            # Nor do actors' workers (as in Ray): the cap bounds the pool of task workers, and
            # no number of actors may keep a plain task from running.
            # Nor do workers already told to exit.
            in_pool = sum(1 for w in self.workers.values()
                          if not w.blocked and w.state not in ("actor", "retiring"))
            starting = sum(self.starting.values())
        for pool, n in wanted.items():
            job_id = pool[0]
            while self.starting[pool] < n:
                if in_pool + starting >= self.max_workers:
                    # An idle worker of another pool (another job or runtime_env) gives way:
                    # workers of environments no longer used must not hold the cap for good.
                    spare = self._idle_elsewhere(pool)
                    if spare is not None:
                        actions.append(KillWorker(spare))
                        in_pool -= 1
                        continue
                    self.at_cap = True
                    if job_id not in self.cap_warned:
                        self.cap_warned.add(job_id)
                        head = next(q[0] for c, q in self.queues.items() if c[0] == job_id and q)
                        actions.append(WorkerCapReached(head, self.max_workers))
                    break
                self.starting[pool] += 1
                starting += 1
                actions.append(StartWorker(*pool))
        return actions

    def _idle_elsewhere(self, pool):
        """An idle worker of another pool, taken out of it to exit ("retiring"), or None."""
        for other, idle in self.idle.items():
            if other != pool and idle:
                worker = idle.popleft()
                worker.state = "retiring"
                return worker
        return None

    def _recount_demand(self):
        self.queued_demand = {}
        for queue in self.queues.values():
            for task in queue:
                add(self.queued_demand, task.spec.resources)

    def _how_many_fit(self, queue):
        """How many tasks at the head of a class queue the free resources could run at once."""
        req = queue[0].spec.resources
        if not req:
            return len(queue)
        room = min(self.available.get(name, 0) // n for name, n in req.items())
        return min(room, len(queue))

    def _dispatch(self, task, worker):
        req = task.spec.resources
        subtract(self.available, req)
        task.gpu_grants = self.gpus.acquire(req.get(GPU, 0)) if req.get(GPU) else []
        worker.held = dict(req)
        worker.task = task
        worker.last_task = None
        worker.state = "busy"
        task.worker = worker
        self.running[task.spec.task_id] = task

    def _release(self, worker):
        task = worker.task
        held = dict(worker.held)
        if worker.blocked:
            for name in _lendable(held):
                held.pop(name)      # already lent out while blocked
        add(self.available, held)
        if task is not None:
            self.gpus.release(task.gpu_grants)
            self.running.pop(task.spec.task_id, None)
            task.worker = None
        if worker.gpu_held:
            self.gpus.release(worker.gpu_held)
            worker.gpu_held = []
        worker.held = {}
        worker.task = None
        worker.blocked = False


def _pool(worker):
    """The pool a worker serves: tasks of its job and runtime_env."""
    return (worker.job_id, worker.runtime_env)


def _lendable(held):
    """The CPUs a worker blocked in get() lends out: plain ones and its placement group's."""
    return {k: v for k, v in held.items() if v and (k == CPU or k.startswith(CPU_IN_GROUP))}


def _in_a_group(units):
    return any("_group_" in name for name in units)


def _task_info(task, state, reason=None):
    from .resources import from_units
    spec = task.spec
    worker = task.worker
    info = {"task_id": spec.task_id.hex(), "name": spec.name, "state": state,
            "job_id": spec.job_id, "attempt": spec.attempt,
            "resources": from_units(spec.resources),
            "worker_pid": worker.pid if worker is not None else None}
    if reason:
        info["pending_reason"] = reason
    return info


def uses_gpu(resources):
    """Whether a request (in units) asks for GPUs, a placement group's renamed ones too."""
    return any(amount > 0 and name.startswith(GPU) for name, amount in resources.items())
