"""The runtime facade: what `zray.util` and the libraries (collectives, train, tune, data, serve)
use of the process's runtime, instead of reaching into its parts.

    rt = zray.core.runtime.current()          # RuntimeError if zray is not initialized
    rt = zray.core.runtime.current(autostart=True)   # zray.init() first if needed

Identity
    rt.address, rt.node_id, rt.job_id, rt.namespace, rt.session_dir, rt.daemon, rt.is_worker
    rt.current_task()   -> TaskInfo | None    the task (or actor call) running on this thread
    rt.current_actor()  -> ActorInfo | None   the actor this worker hosts
    rt.assigned_resources(), rt.assigned_gpus()
Objects and tasks
    rt.put(value) -> ObjectRef
    rt.get(refs, timeout=None)                a list in, a list out (GetTimeoutError)
    rt.wait(refs, num_returns=1, timeout=None) -> (ready, not_ready)
    rt.submit(function, args, kwargs, *, name, num_returns, resources, max_retries,
              placement_group) -> [ObjectRef]   run a Python function as a task
Messages (a library's own protocol, in the number range wire.py gives it)
    rt.register_handlers(msg_range, {msg_type: handler})   handler(sender, payload, frames),
                                                         run by the inbox's reading thread
    rt.register_replies(msg_range, [msg_type])           replies completing rt.request()
    rt.request(msg_type, payload, *, address=None, timeout=120)  to the local daemon
    rt.send(address, msg_type, payload, frames=())
    rt.wait_until(predicate, timeout) -> bool             reads messages while it waits;
                                                         LocalRayletDiedError if the node died
The cluster key-value store (rendezvous)
    rt.kv.put(key, value: bytes, namespace=, overwrite=True) / get / delete / keys(prefix)

Every wait has a timeout or ends when the node daemon dies.
"""
import time
from dataclasses import dataclass

from .. import exceptions
from ..objects.object_ref import get_runtime
from ..transport import wire
from .inbox import RPC_TIMEOUT_S
from .kv import KvClient

DEFAULT_REQUEST_TIMEOUT_S = RPC_TIMEOUT_S
_WAIT_SLICE_S = 0.05       # wait_until looks at its predicate at least this often

_autostart = []            # the public API's init(), installed by zray.api


@dataclass(frozen=True)
class TaskInfo:
    task_id: bytes
    name: str
    placement_group: tuple = None     # (pg_id, bundles, strategy, home, capture) or None


@dataclass(frozen=True)
class ActorInfo:
    actor_id: bytes
    class_name: str
    meta: dict


def set_autostart(init):
    """zray.api installs init() here, for current(autostart=True)."""
    _autostart[:] = [init]


def current(autostart=False):
    """The facade of this process's runtime."""
    core = get_runtime()
    if core is None and autostart and _autostart:
        _autostart[0]()
        core = get_runtime()
    if core is None:
        raise exceptions.RaySystemError("zray is not initialized; call zray.init() first")
    facade = core.__dict__.get("_facade")
    if facade is None:
        facade = core._facade = Runtime(core)
    return facade


def is_connected():
    return get_runtime() is not None


class Runtime:
    def __init__(self, core):
        self._core = core
        self.kv = KvClient(self._kv_request)
        core.inbox.reply_type(wire.KV_REPLY)

    # -- identity --------------------------------------------------------------------------------
    @property
    def address(self):
        return self._core.address

    @property
    def node_id(self):
        return self._core.node_info["node_id"]

    @property
    def job_id(self):
        return self._core.context.job_id

    @property
    def worker_id(self):
        return self._core.context.worker_id

    @property
    def current_task_name(self):
        return self._core.context.current_task_name

    @property
    def namespace(self):
        return self._core.context.namespace

    @property
    def session_dir(self):
        return self._core.context.session_dir

    @property
    def daemon(self):
        return self._core.context.daemon

    @property
    def is_worker(self):
        return self._core.context.kind == "worker"

    def current_task(self):
        executor = self._core.executor
        spec = None if executor is None else executor.running_task
        if spec is None:
            return None
        extra = spec.extra or {}
        group = extra.get("placement_group")
        if group is None and isinstance(extra.get("meta"), dict):
            # an actor's constructor: its group is in the actor's meta (as for its methods)
            group = extra["meta"].get("placement_group")
        return TaskInfo(spec.task_id, spec.name, group)

    def current_actor(self):
        executor = self._core.executor
        host = None if executor is None else executor.actors.host
        if host is None:
            return None
        return ActorInfo(host.actor_id, host.class_name, host.meta)

    def assigned_resources(self):
        executor = self._core.executor
        return dict(executor.assigned_resources) if executor is not None else {}

    def assigned_gpus(self):
        executor = self._core.executor
        return list(executor.assigned_gpus) if executor is not None else []

    # -- objects and tasks -----------------------------------------------------------------------
    def put(self, value):
        context = self._core.context
        return self._core.objects.put(value, context.current_task_id, context.next_put_index())

    def get(self, refs, timeout=None):
        return self._core.objects.get(list(refs), timeout)

    def wait(self, refs, num_returns=1, timeout=None):
        refs = list(refs)
        ready_idx = set(self._core.objects.wait_ready(refs, num_returns, timeout)[:num_returns])
        return ([r for i, r in enumerate(refs) if i in ready_idx],
                [r for i, r in enumerate(refs) if i not in ready_idx])

    def submit(self, function, args=(), kwargs=None, *, name=None, num_returns=1,
               resources=None, max_retries=0, placement_group=None):
        """Run function(*args, **kwargs) as a task; its return refs (a list). `resources` are
        fixed-point units (scheduling/resources.py; default 1 CPU); `placement_group` is a
        group context (util/placement_group.py's apply_group) the resources were rewritten for."""
        from ..scheduling.resources import to_units
        from .functions import pickle_for_export
        function_id, pickled = pickle_for_export(function, f"function {_name_of(function)}")
        owner = self._core.owner
        owner.export_function(function_id, pickled)
        extra = None if placement_group is None else {"placement_group": placement_group}
        _, refs = owner.submit_task(function_id, name or _name_of(function), tuple(args),
                                    dict(kwargs or {}), num_returns,
                                    to_units({"CPU": 1}) if resources is None else resources,
                                    max_retries, False, extra=extra)
        return refs

    # -- messages --------------------------------------------------------------------------------
    def register_handlers(self, msg_range, handlers):
        """Handle messages of a library's range: {msg_type: handler(sender, payload, frames)}.
        A type outside msg_range, or one that has a handler already, is a ValueError."""
        for msg_type, handler in handlers.items():
            _check_in_range(msg_type, msg_range)
            self._core.inbox.handle(msg_type, handler)

    def register_replies(self, msg_range, msg_types):
        """Messages (req_id, result, error) that complete request()s."""
        for msg_type in msg_types:
            _check_in_range(msg_type, msg_range)
            self._core.inbox.reply_type(msg_type)

    def request(self, msg_type, payload, *, address=None, frames=(), timeout=DEFAULT_REQUEST_TIMEOUT_S):
        """Send (req_id, *payload) and wait for the reply's result (its error is raised)."""
        return self._core.inbox.rpc(address or self.daemon, msg_type, tuple(payload), frames, timeout)

    def send(self, address, msg_type, payload=(), frames=()):
        return self._core.send(address, msg_type, payload, frames)

    def wait_until(self, predicate, timeout):
        """Wait until predicate() is true (True) or timeout seconds pass (False), reading
        messages on this thread when nobody else does, so handlers can make it true."""
        if timeout is None:
            raise ValueError("wait_until needs a timeout (seconds)")
        inbox = self._core.inbox
        deadline = time.monotonic() + timeout
        while not predicate():
            now = time.monotonic()
            if now >= deadline:
                return False
            if inbox.dead_reason:
                raise exceptions.LocalRayletDiedError(inbox.dead_reason)
            inbox.block_until(predicate, inbox.thread_event(), min(deadline, now + _WAIT_SLICE_S))
        return True

    def _kv_request(self, msg_type, payload, timeout):
        return self._core.inbox.rpc(self.daemon, msg_type, payload, (), timeout)


def _check_in_range(msg_type, msg_range):
    if msg_type not in msg_range:
        raise ValueError(f"message type {msg_type} is outside the range {msg_range}")


def _name_of(function):
    return getattr(function, "__name__", "function")
