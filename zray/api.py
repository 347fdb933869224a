"""The Ray Core API: init/shutdown, remote, get/put/wait/cancel and introspection."""
import atexit
import inspect
import logging
import os
import select
import sys
import threading

from . import exceptions, logs
from .core import job_info
from .core import runtime as _facade
from .core.core_worker import CoreWorker
from .node import bootstrap, session
from .objects.generator import ObjectRefGenerator
from .objects.object_ref import ObjectRef
from .remote_function import RemoteFunction
from .runtime_context import RuntimeContext

_lock = threading.RLock()
_state = None       # the process's _Runtime while connected


class _Runtime:
    def __init__(self, core, daemon_proc=None, session_dir=None, owns_session=False):
        self.core = core
        self.daemon_proc = daemon_proc      # a bootstrap.NodeProcess when init() started it
        self.session_dir = session_dir
        self.owns_session = owns_session


# Ray's init() options that zray accepts and has no use for (yet); anything else is an error.
_ACCEPTED_AND_UNUSED = {
    "runtime_env", "logging_level", "logging_format", "log_to_driver", "configure_logging",
    "_system_config",
    "_temp_dir", "local_mode", "_enable_object_reconstruction", "storage", "_node_ip_address",
    "labels", "enable_resource_isolation", "_plasma_directory", "_metrics_export_port",
    "logging_config", "_skip_env_hook",
}
_INIT_OPTIONS = {"address", "num_cpus", "num_gpus", "resources", "object_store_memory",
                 "namespace", "ignore_reinit_error", "job_config", "_memory", "include_dashboard",
                 "dashboard_host", "dashboard_port"} | _ACCEPTED_AND_UNUSED


def available_cpus():
    """CPUs this process was given: the affinity mask, cgroup quotas, Slurm's grant
    (zray/launch/allocation.py), never the machine's count."""
    from .launch import allocation
    return allocation.detect().cpus


def _default_object_store_memory():
    """30% of the memory this process may use now (free memory, capped by the cgroup and
    Slurm limits), at most 2 GiB."""
    import psutil
    from .launch import allocation
    available = min(psutil.virtual_memory().available, allocation.detect().memory_bytes)
    return int(min(0.3 * available, 2 << 30)) // 4096 * 4096


def init(address=None, **kwargs):
    """Start (or join) a zray cluster. With no address: a private one-node cluster."""
    global _state
    from .options import check_names
    check_names(kwargs, _INIT_OPTIONS - {"address"}, "zray.init()")
    from . import runtime_env
    _with_submitted_job_env(kwargs)
    runtime_env.check(kwargs.get("runtime_env"))    # a bad one fails before anything starts
    with _lock:
        if _state is not None:
            if kwargs.get("ignore_reinit_error"):
                return _context_info()
            raise RuntimeError("zray.init() was already called in this process; call "
                               "zray.shutdown() first, or pass ignore_reinit_error=True")
        job = _job_settings(kwargs)
        kwargs["namespace"] = job["namespace"]
        config = kwargs.get("job_config")
        if config is not None and config.runtime_env and not kwargs.get("runtime_env"):
            kwargs["runtime_env"] = config.runtime_env
        address = address or os.environ.get("ZRAY_ADDRESS") or os.environ.get("RAY_ADDRESS")
        from .util import worker_preload
        preload = worker_preload.take_pending()     # asked for before init() (zray.train.torch)
        if address in (None, "", "local"):
            _state = _start_local(kwargs, preload)
        else:
            _state = _connect(address, kwargs)
        runtime_env.set_job_env(kwargs.get("runtime_env"))
        atexit.register(shutdown)
        _state.core.context.set_job_settings(job)
        try:
            job_info.publish(_facade.current(), job)
        except BaseException:
            shutdown()
            raise
        if preload:
            # A local node imports them already (it started with them): this records them as
            # asked for, and a cluster joined here starts importing them now.
            worker_preload.preload_worker_modules(preload)
        return _context_info()


def _with_submitted_job_env(kwargs):
    """The entrypoint of a submitted job (zray job submit): the job's runtime_env, set by its
    supervisor, is this driver's job-level runtime_env, merged with what init() names."""
    text = os.environ.get("ZRAY_JOB_RUNTIME_ENV")
    if not text:
        return
    import json
    from .job.runtime_env import merge_for_driver
    config = kwargs.get("job_config")
    own = kwargs.get("runtime_env") or (config.runtime_env if config is not None else None)
    override = "1" in (os.environ.get("ZRAY_OVERRIDE_JOB_RUNTIME_ENV"),
                       os.environ.get("RAY_OVERRIDE_JOB_RUNTIME_ENV"))
    kwargs["runtime_env"] = merge_for_driver(json.loads(text), own, override)


def _job_settings(kwargs):
    """What every process of this job reads (core/job_info.py): the namespace (init()'s, else
    the job config's, else a fresh anonymous one, as Ray) and the default actor lifetime."""
    from .job_config import JobConfig
    config = kwargs.get("job_config")
    if config is not None and not isinstance(config, JobConfig):
        raise TypeError(f"job_config must be a zray.job_config.JobConfig, got "
                        f"{type(config).__name__}")
    namespace = kwargs.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise TypeError(f"namespace must be a non-empty str, got {namespace!r}")
    if namespace is None and config is not None:
        namespace = config.ray_namespace
    if namespace is None:
        import uuid
        namespace = str(uuid.uuid4())
    lifetime = config.default_actor_lifetime if config is not None else "non_detached"
    return {"namespace": namespace, "default_actor_lifetime": lifetime}


def _start_local(kwargs, preload=()):
    num_cpus = kwargs.get("num_cpus")
    num_cpus = available_cpus() if num_cpus is None else num_cpus
    num_gpus = kwargs.get("num_gpus") or 0
    resources = kwargs.get("resources") or {}
    store = kwargs.get("object_store_memory")
    memory = kwargs.get("_memory")
    from .options import _non_negative, validate_resource_dict
    if memory is not None:
        if isinstance(memory, bool) or not isinstance(memory, (int, float)) or memory < 0:
            raise ValueError(f"_memory must be a number of bytes >= 0, got {memory!r}")
        memory = int(memory)
    _non_negative("num_cpus", num_cpus, allow_none=False)
    _non_negative("num_gpus", num_gpus, allow_none=False)
    validate_resource_dict(resources)
    if store is None:
        store = _default_object_store_memory()
    elif isinstance(store, bool) or not isinstance(store, int):
        raise TypeError(f"object_store_memory must be an int number of bytes, got {store!r}")
    elif store < (1 << 20):
        raise ValueError(f"object_store_memory must be at least 1 MiB, got {store} bytes")
    from .dashboard.options import dashboard_options
    dashboard_port, dashboard_host = dashboard_options(kwargs)
    session_dir = session.create_session_dir()
    job_id = os.urandom(4).hex()
    worker_id = os.urandom(8).hex()
    spec = bootstrap.NodeSpec(
        dashboard_port=dashboard_port, dashboard_host=dashboard_host,
        session_dir=session_dir, num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
        object_store_memory=store, memory=memory, driver_pid=os.getpid(),
        driver_address=f"ipc://{session_dir}/sock/d{worker_id[:12]}", job_id=job_id,
        # A job runtime_env: its tasks need workers of that environment, not prestarted plain ones.
        prestart=0 if kwargs.get("runtime_env") else (max(1, int(num_cpus)) if num_cpus else 1),
        preload=tuple(preload))
    try:
        node = bootstrap.start_node(spec, timeout=60)
    except BaseException:
        session.remove_session_dir(session_dir)
        raise
    logs.configure(session_dir, f"driver-{os.getpid()}", user_facing=True)
    core = CoreWorker("driver", session_dir, node.address, job_id,
                      worker_id=worker_id, namespace=kwargs.get("namespace"))
    try:
        core.connect(os.getpid())
    except BaseException:
        core.shutdown()
        node.stop()
        session.remove_session_dir(session_dir)
        logs.reset()
        raise
    _start_daemon_watch(core, node)
    _announce_dashboard(session_dir)
    return _Runtime(core, node, session_dir, owns_session=True)


def _announce_dashboard(session_dir):
    """Say where the new node's dashboard is, as Ray does at init: one line on a terminal's
    stderr (not into pipes, which programs parse), always in the log and in init()'s result."""
    from .dashboard.launch import read_dashboard_info
    info = read_dashboard_info(session_dir)
    if info:
        import logging
        import sys
        logging.getLogger("zray.dashboard").info("dashboard at %s", info["url"])
        show = os.environ.get("ZRAY_SHOW_DASHBOARD_URL")
        if show == "1" or (show is None and sys.stderr.isatty()):
            sys.stderr.write(f"zray: started a local node; view the dashboard at "
                             f"{info['url']}\n")


def _connect(address, kwargs):
    """Join the node of this host that `address` means (node/local_node.find_node): a driver
    always attaches to its own host's node, which holds its store."""
    from .node import local_node
    for key in ("num_cpus", "num_gpus", "resources", "object_store_memory", "_system_config",
                "_memory"):
        if kwargs.get(key) is not None:
            raise ValueError(f"When connecting to an existing cluster, {key} must not be given "
                             "(it was fixed when the node started)")
    try:
        info = local_node.find_node(address)
    except ConnectionError as exc:
        raise type(exc)(f"zray.init(address={address!r}): {exc}") from None
    job_id = os.urandom(4).hex()
    mesh = None
    if info.get("mesh_address") and info.get("secret_file"):
        from .transport.address import host_of
        mesh = {"ip": host_of(info["mesh_address"]), "secret_file": info["secret_file"],
                "node_id": info["node_id"]}
    logs.configure(info["session"], f"driver-{os.getpid()}", user_facing=True)
    core = CoreWorker("driver", info["session"], info["address"], job_id,
                      namespace=kwargs.get("namespace"), mesh=mesh)
    try:
        core.connect(os.getpid())
    except BaseException:
        core.shutdown()
        logs.reset()
        raise
    _start_pid_watch(core, info["pid"])
    state = _Runtime(core, None, info["session"], owns_session=False)
    if os.environ.get("ZRAY_JOB_SUBMISSION_ID"):     # a submitted job's driver: link the two
        from .job.manager import note_driver
        note_driver(core, os.environ["ZRAY_JOB_SUBMISSION_ID"], job_id)
    return state


def _start_pid_watch(core, pid):
    """The node is not our child: watch it through a pidfd."""
    fd = os.pidfd_open(pid)

    def watch():
        try:
            select.select([fd], [], [])
        finally:
            os.close(fd)
        core.mark_dead(f"the zray node daemon (pid {pid}) exited")
    threading.Thread(target=watch, name="zray-daemon-watch", daemon=True).start()


def _start_daemon_watch(core, node):
    """If the node daemon dies, fail every wait of this process instead of hanging."""
    def watch():
        code = node.wait()
        why = f"the zray node daemon (pid {node.pid}) exited with code {code}"
        if not node.stopping:
            node.crashed = True
            why += (f"; its logs are kept in {os.path.join(node.spec.session_dir, 'logs')} "
                    "after zray.shutdown()")
        core.mark_dead(why)
    threading.Thread(target=watch, name="zray-daemon-watch", daemon=True).start()


def attach_worker_runtime(core):
    """Inside a worker (core/worker_main.py): the API talks to the worker's own runtime."""
    global _state
    _state = _Runtime(core)


def shutdown(_exiting_interpreter=False):
    """Stop the local cluster this driver started (or leave the one it joined)."""
    global _state
    with _lock:
        state, _state = _state, None
    if state is None:
        return
    core = state.core
    try:
        _end_hooked_actors(core)
    except Exception as exc:    # the node may be gone: then so are the actors
        logging.getLogger("zray.core").warning("could not end actors gracefully: %r", exc)
    if state.daemon_proc is None and not _exiting_interpreter:
        # The cluster stays: take this job's settings out of its store.
        job_info.withdraw(_facade.current())
    if state.daemon_proc is not None:
        state.daemon_proc.stopping = True
        from .transport import wire
        try:
            core.send(core.daemon, wire.SHUTDOWN_NODE, ())
        except Exception:   # logged by send(); the daemon is stopped below anyway
            pass
    core.shutdown()
    if state.daemon_proc is not None:
        state.daemon_proc.stop()
    if state.owns_session and state.session_dir:
        node = state.daemon_proc
        if node is not None and (node.crashed or node.proc.returncode not in (0, None)):
            # Its logs say why it died: they stay, the rest (sockets, spill, secret) goes.
            kept = session.keep_logs_only(state.session_dir)
            if kept:
                logging.getLogger("zray").warning(
                    "the zray node daemon (pid %d) died (exit code %s): its logs are kept in %s",
                    node.pid, node.proc.returncode, kept)
        else:
            session.remove_session_dir(state.session_dir)
    logs.reset()


def _end_hooked_actors(core):
    """The job ends: its actors that define __ray_shutdown__ end gracefully first (the hook and
    atexit handlers run, at most ACTOR_SHUTDOWN_TIMEOUT_S); the node kills the rest."""
    import time
    from .actor import ActorHandle, ActorMethod
    from .core.actor_host import ACTOR_SHUTDOWN_TIMEOUT_S
    hooked = {}
    for actor_id in list(core.actors.owned_actors):
        actor_state = core.actors.actor_states.get(actor_id)
        meta = getattr(actor_state, "meta", None) or {}
        if meta.get("shutdown_hook"):
            hooked[actor_id.hex()] = (actor_id, meta)
    if not hooked:
        return
    rows = [row for row in core.actors.list_actors()
            if row["actor_id"] in hooked and row["state"] == "ALIVE" and not row["detached"]]
    for row in rows:
        actor_id, meta = hooked[row["actor_id"]]
        ActorMethod(ActorHandle(actor_id, core.address, meta, counted=False),
                    "__ray_terminate__", {"is_async": False}).remote()
    pids = {row["pid"] for row in rows if row.get("pid")}
    deadline = time.monotonic() + ACTOR_SHUTDOWN_TIMEOUT_S + 2
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pids.discard(pid)
            except PermissionError:
                pids.discard(pid)
        time.sleep(0.02)


def is_initialized():
    return _state is not None


def _runtime():
    state = _state
    if state is None:
        raise exceptions.RaySystemError("zray is not initialized; call zray.init() first")
    return state.core


def auto_connect_enabled():
    """RAY_ENABLE_AUTO_CONNECT=0 (or ZRAY_ENABLE_AUTO_CONNECT=0) turns off the init() that
    the first get/put/wait/remote/... does when none was called, as in Ray."""
    value = os.environ.get("ZRAY_ENABLE_AUTO_CONNECT", os.environ.get("RAY_ENABLE_AUTO_CONNECT", ""))
    return value.strip() != "0"


def _auto_init():
    """Ray's auto-connect: the calls Ray lists (get, put, wait, cancel, kill, get_actor,
    get_gpu_ids, get_runtime_context, and .remote()) start a local cluster when none runs."""
    if _state is None and auto_connect_enabled():
        with _lock:
            if _state is None:
                init()


def _runtime_or_autoinit():
    _auto_init()
    return _runtime()


def _context_info():
    core = _state.core
    from .dashboard.launch import read_dashboard_info
    dashboard = read_dashboard_info(core.context.session_dir) or {}
    return {"node_id": core.node_info["node_id"], "session_dir": core.context.session_dir,
            "address": core.daemon, "job_id": core.context.job_id,
            "dashboard_url": dashboard.get("url")}


# -- remote ---------------------------------------------------------------------------------------
class RemoteDecoratorError(TypeError, AssertionError):
    """@remote used wrongly. Ray raises AssertionError for `@ray.remote()`; this is both, so
    code written against either type catches it."""


def remote(*args, **kwargs):
    """@zray.remote, bare or with options, on a function or a class."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _make_remote(args[0], {})
    if len(args) == 2 and not kwargs and all(isinstance(a, list) for a in args):
        from .legacy import typed_remote    # amplab 0.x: @remote([arg types], [return types])
        return typed_remote(*args)
    if args or not kwargs:
        raise RemoteDecoratorError(
            "@zray.remote is used either bare (@zray.remote) or with keyword options, e.g. "
            "@zray.remote(num_cpus=2); not with empty parentheses or positional arguments")
    return lambda target: _make_remote(target, kwargs)


def _make_remote(target, options):
    if inspect.isclass(target):
        from .actor import ActorClass
        return ActorClass(target, options)
    if not callable(target):
        raise TypeError(f"@zray.remote needs a function, got {type(target).__name__}")
    if inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target):
        raise ValueError(f"'async def' cannot be a remote task ({target.__name__}): wrap it, "
                         "e.g. `def f(): return asyncio.run(coroutine())`, or make it a method "
                         "of an async actor")
    return RemoteFunction(target, options)


# -- objects ------------------------------------------------------------------------------------
def _check_timeout(timeout):
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0, got {timeout}")


def get(object_refs, *, timeout=None):
    _check_timeout(timeout)
    core = _runtime_or_autoinit()
    values = _get(core.objects, object_refs, timeout)
    if core.context.debug_get_objects:      # a debugger's `get` step ends here (zray.util.debug)
        _pause_if_stepped_out(core.context, object_refs)
    return values


def _pause_if_stepped_out(context, object_refs):
    refs = [object_refs] if isinstance(object_refs, ObjectRef) else object_refs
    stepped = context.debug_get_objects.intersection(r._id for r in refs)
    if stepped:
        context.debug_get_objects.difference_update(stepped)
        from .util.debug import pause_after_get
        pause_after_get(sys._getframe(2))


def _get(objects, object_refs, timeout):
    if isinstance(object_refs, ObjectRef):
        return objects.get([object_refs], timeout)[0]
    # Ray raises ValueError for anything that is not a ref or a list of refs.
    if isinstance(object_refs, ObjectRefGenerator):
        raise TypeError("get() of an ObjectRefGenerator is not allowed; iterate it and get each ref")
    if isinstance(object_refs, (list, tuple)):
        for r in object_refs:
            if not isinstance(r, ObjectRef):
                raise ValueError(f"'object_refs' must either be an ObjectRef or a list of ObjectRefs, "
                                 f"got {type(r).__name__} in the list")
        return objects.get(list(object_refs), timeout)
    raise ValueError(f"'object_refs' must either be an ObjectRef or a list of ObjectRefs, got "
                     f"{type(object_refs).__name__}")


def put(value, *, _owner=None):
    core = _runtime_or_autoinit()
    context = core.context
    return core.objects.put(value, context.current_task_id, context.next_put_index())


def wait(object_refs, *, num_returns=1, timeout=None, fetch_local=True):
    if isinstance(object_refs, ObjectRef) or not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expects a list of ObjectRefs, got {type(object_refs).__name__}")
    refs = list(object_refs)
    for r in refs:
        if not isinstance(r, ObjectRef):
            raise TypeError(f"wait() expects ObjectRefs, got {type(r).__name__} in the list")
    if len(set(refs)) != len(refs):
        raise ValueError("wait() requires a list of unique ObjectRefs")
    if isinstance(num_returns, bool) or not isinstance(num_returns, int):
        raise TypeError(f"num_returns must be an int, got {num_returns!r}")
    if num_returns <= 0:
        raise ValueError(f"Invalid number of objects to return {num_returns}")
    if not isinstance(fetch_local, bool):
        raise TypeError("fetch_local must be a bool")
    _check_timeout(timeout)
    if not refs:
        return [], []       # as Ray: nothing to wait for, whatever num_returns says
    if num_returns > len(refs):
        raise ValueError(f"num_returns ({num_returns}) cannot be greater than the number of refs ({len(refs)})")
    ready_idx = set(_runtime_or_autoinit().objects.wait_ready(refs, num_returns, timeout)[:num_returns])
    ready = [r for i, r in enumerate(refs) if i in ready_idx]
    not_ready = [r for i, r in enumerate(refs) if i not in ready_idx]
    return ready, not_ready


def cancel(ref, *, force=False, recursive=True):
    owner = _runtime_or_autoinit().owner
    if isinstance(ref, ObjectRefGenerator):
        owner.cancel_task_id(ref._task_id, force, recursive)
        return
    if not isinstance(ref, ObjectRef):
        raise TypeError(f"cancel() expects an ObjectRef, got {type(ref).__name__}")
    owner.cancel(ref, force, recursive)


# -- introspection --------------------------------------------------------------------------------
def get_runtime_context():
    _runtime_or_autoinit()
    return RuntimeContext(_facade.current())


def cluster_resources():
    return _runtime().cluster_info()["total"]


def available_resources():
    return _runtime().cluster_info()["available"]


def nodes():
    return _runtime().cluster_info()["nodes"]


def get_gpu_ids():
    _runtime_or_autoinit()
    return _facade.current().assigned_gpus()


# -- actors ---------------------------------------------------------------------------------------
def get_actor(name, namespace=None):
    """The handle of a live named actor; ValueError if there is none."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an actor name must be a non-empty str, got {name!r}")
    from .actor import ActorHandle
    actor_id, owner, meta = _runtime_or_autoinit().actors.get_actor(name, namespace)
    return ActorHandle(actor_id, owner, meta, counted=True)


def kill(actor, *, no_restart=True):
    """Kill an actor at once (queued calls fail); it restarts only with no_restart=False and
    restarts left."""
    from .actor import ActorHandle
    if not isinstance(actor, ActorHandle):
        # Ray's type and wording (users match on them): a ValueError naming ray.cancel.
        raise ValueError(f"ray.kill() only supported for actors (zray.kill); for tasks, use "
                         f"zray.cancel(). Got: {type(actor)}.")
    _runtime_or_autoinit().actors.kill_actor(actor._actor_id, no_restart, actor._meta)


_facade.set_autostart(_auto_init)
