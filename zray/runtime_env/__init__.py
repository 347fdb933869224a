"""runtime_env: the environment a task or actor runs in (env_vars, working_dir, py_modules,
pip), given to init(), .options() or @remote, as in Ray.

The submitting process checks the runtime_env (spec.py), ships local directories through the
object store (packaging.py) and puts the encoded environment in the task spec; the node keeps
one pool of worker processes per (job, environment), and a worker started for an environment
builds it on its node before it runs anything (worker_setup.py): unpacked archives and pip virtual
environments are cached on the node by content hash, shared by its workers.
"""
import json
import os
import threading
import weakref

from . import spec
from .spec import check

_lock = threading.Lock()
_job_env = None          # the checked runtime_env of init() in this (driver) process
_process_env = None      # the encoded environment this worker process was started in
_encoded = weakref.WeakKeyDictionary()    # runtime -> {checked env as JSON: encoded env}
_as_ray = False          # install_as_ray() was called here: workers alias `ray` too
_texts = weakref.WeakKeyDictionary()      # runtime -> {options env as JSON: text}


class RuntimeEnv(dict):
    """Ray's `RuntimeEnv(**fields)`: a runtime_env dict, checked when it is made."""

    def __init__(self, **fields):
        check(fields)
        super().__init__(**fields)


class RuntimeEnvConfig(dict):
    """Ray's `RuntimeEnvConfig(setup_timeout_seconds=600, eager_install=True)`, for the
    runtime_env's "config" field."""

    def __init__(self, setup_timeout_seconds=spec.DEFAULT_SETUP_TIMEOUT_S, eager_install=True):
        super().__init__(setup_timeout_seconds=setup_timeout_seconds,
                         eager_install=eager_install)
        check({"config": dict(self)})


def set_job_env(runtime_env):
    """init(runtime_env=...): the default environment of the job's tasks and actors (checked
    here, so a bad one fails init before anything starts)."""
    global _job_env
    _job_env = check(runtime_env)
    _texts.clear()


def set_process_env(encoded):
    """In a worker: the environment it runs in, the parent of what its tasks submit."""
    global _process_env
    _process_env = encoded
    _texts.clear()


def set_as_ray():
    """install_as_ray() in this process: the tasks and actors it submits get the `ray` alias
    in their workers too (the internal field "as_ray"), so modules they import by reference
    that `import ray` work there as they do here."""
    global _as_ray
    _as_ray = True
    _texts.clear()


def current():
    """The encoded environment of this process's tasks (a worker's own, or the job's), or None."""
    if _process_env is not None:
        env = _process_env
    else:
        env = _encode(_job_env) if _job_env else None
    if _as_ray and not (env or {}).get("as_ray"):
        env = dict(env or {}, as_ray=True)
    return env


def current_string():
    """JSON of this process's environment for get_runtime_context().get_runtime_env_string():
    a worker's encoded one, or the job's as given to init() ("{}" for none)."""
    env = _process_env if _process_env is not None else _job_env
    env = {k: v for k, v in (env or {}).items() if k != "as_ray"}
    return json.dumps(env, sort_keys=True)


def for_submission(runtime_env):
    """The canonical text a task or actor carries ("" when it runs in no environment):
    `runtime_env` from its options over the environment of the process submitting it.
    Memoized per runtime and options (a submission in an environment costs a dict lookup)."""
    if runtime_env is None and _process_env is None and _job_env is None and not _as_ray:
        return ""
    from ..objects.object_ref import get_runtime
    core = get_runtime()
    try:
        key = json.dumps(runtime_env, sort_keys=True) if runtime_env else None
    except TypeError:       # not JSON (a module in py_modules): checked and encoded each time
        key = core = None
    texts = _texts.get(core) if core is not None else None
    text = texts.get(key) if texts is not None else None
    if text is None:
        parent = current()
        child = _encode(check(runtime_env)) if runtime_env else None
        text = spec.dumps(spec.merge(parent, child))
        if core is not None:
            with _lock:
                _texts.setdefault(core, {})[key] = text
    return text


def _encode(checked):
    """Local paths shipped as packages; cached per runtime (a directory is shipped once)."""
    if not checked:
        return None
    from ..objects.object_ref import get_runtime
    core = get_runtime()
    key = json.dumps(checked, sort_keys=True)
    with _lock:
        cached = _encoded.setdefault(core, {}).get(key) if core is not None else None
    if cached is not None:
        return cached
    from .. import api
    from .packaging import ship
    excludes = checked.get("excludes", ())
    out = {k: v for k, v in checked.items() if k not in ("working_dir", "py_modules", "excludes")}
    if "working_dir" in checked:
        out["working_dir"] = ship(checked["working_dir"], excludes, core, api.put)
    if "py_modules" in checked:
        out["py_modules"] = [
            ship(path, excludes, core, api.put,
                 top=os.path.basename(path) if os.path.isdir(path) else None)
            for path in checked["py_modules"]]
    if core is not None:
        with _lock:
            _encoded.setdefault(core, {})[key] = out
    return out


__all__ = ["RuntimeEnv", "RuntimeEnvConfig", "check", "current", "for_submission", "set_job_env"]
