"""The actor that runs one job's entrypoint (Ray's JobSupervisor): a detached, threaded actor on
the node of the dashboard that took the submit. It starts the entrypoint in a shell, in its own
process group, in the job's runtime_env (runtime_env.py: env_vars, working_dir and py_modules on
PYTHONPATH, a pip venv from the node's cache that the workers share, built here first), writes everything it prints to
`<session>/logs/job-driver-<submission_id>.log`, and records RUNNING and the end (model.py) in
the cluster key-value store. `stop()` may come at any time, also before `run()`: the entrypoint
then never starts. The entrypoint dies with the supervisor's worker (PR_SET_PDEATHSIG).
"""
import json
import logging
import os
import signal
import subprocess
import shutil
import threading
import time
import zipfile

from .. import exceptions
from ..runtime_env import spec, worker_setup
from . import model
from .model import JobError
from .runtime_env import DRIVER_ENV_VAR, resolve

log = logging.getLogger("zray.job")

STOP_GRACE_S = float(os.environ.get("ZRAY_JOB_STOP_WAIT_TIME_S", "3"))   # SIGTERM, then SIGKILL


def _die_with_parent():
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG


class JobSupervisor:
    def __init__(self, info_json, node_address_file, http_address):
        self._info = model.JobInfo.from_json(info_json)
        self._node_address_file = node_address_file
        self._http_address = http_address
        self._lock = threading.Lock()
        self._stopping = False
        self._proc = None

    # -- the record ------------------------------------------------------------------------------
    def _kv(self):
        from ..core import runtime
        return runtime.current().kv

    def _read(self):
        raw = self._kv().get(self._info.submission_id, namespace=model.JOBS_NAMESPACE)
        return model.JobInfo.from_json(json.loads(raw)) if raw else self._info

    def _write(self, new):
        if new is not None:
            self._kv().put(new.submission_id, json.dumps(new.to_json()).encode(),
                           namespace=model.JOBS_NAMESPACE)
            self._info = new
        return new

    # -- the calls -------------------------------------------------------------------------------
    def run(self):
        """Run the entrypoint to its end; the final status."""
        from ..core import runtime
        rt = runtime.current()
        info = self._read()
        log_path = os.path.join(rt.session_dir, "logs", f"job-driver-{info.submission_id}.log")
        with self._lock:
            self._info = info
            if self._stopping or info.terminal:
                self._write(model.stopped_before_start(info))
                return self._info.status
        try:    # outside the lock: a pip install may take minutes, and stop() must get through
            cwd, env = self._prepare(info, rt.session_dir)
        except (OSError, ValueError, zipfile.BadZipFile, JobError,
                exceptions.RuntimeEnvSetupError) as exc:
            with self._lock:
                new = (model.stopped_before_start(self._read()) if self._stopping else
                       model.failed(self._read(), _setup_message(exc), "RUNTIME_ENV_SETUP_FAILED"))
                self._write(new)
            return (new or self._info).status
        with self._lock:
            if self._stopping:
                self._write(model.stopped_before_start(self._read()))
                return self._info.status
            out = open(log_path, "ab", buffering=0)
            try:
                self._proc = subprocess.Popen(
                    info.entrypoint, shell=True, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=_die_with_parent)
            except OSError as exc:
                out.close()
                self._write(model.failed(info, f"could not start the entrypoint: {exc}",
                                         "JOB_ENTRYPOINT_COMMAND_START_ERROR"))
                return model.FAILED
            out.close()
            self._write(model.started(info, rt.node_id, self._http_address, log_path))
        code = self._proc.wait()
        with self._lock:
            new = model.finished(self._read(), code, self._stopping)
            self._write(new)
        return (new or self._info).status

    def stop(self):
        """Stop the entrypoint (SIGTERM to its group, SIGKILL after STOP_GRACE_S); True if it
        was running."""
        with self._lock:
            self._stopping = True
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return False
        self._signal(proc, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self._signal(proc, signal.SIGKILL)
            proc.wait(5)
        return True

    def ping(self):
        return True

    @staticmethod
    def _signal(proc, sig):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def _prepare(self, info, session_dir):
        """The entrypoint's working directory and environment from the job's runtime_env."""
        env = dict(os.environ)
        env.pop("ZRAY_WORKER_ID", None)
        if env.get("PYTHONBREAKPOINT") == "zray.util.debug.set_trace":   # a worker's, not a driver's
            env.pop("PYTHONBREAKPOINT")
        env["ZRAY_ADDRESS"] = self._node_address_file
        env["ZRAY_JOB_SUBMISSION_ID"] = env["RAY_JOB_SUBMISSION_ID"] = info.submission_id
        env["PYTHONUNBUFFERED"] = "1"
        env.pop(DRIVER_ENV_VAR, None)       # only this job's own
        checked = resolve(info.runtime_env, os.path.join(session_dir, "packages")) or {}
        deadline = spec.setup_timeout(checked)
        deadline = None if deadline is None else time.monotonic() + deadline
        env.update(checked.get("env_vars") or {})
        front, back = [], []
        cwd = None
        if checked.get("working_dir"):
            cwd = _materialize(checked["working_dir"], session_dir, info.submission_id)
            front.append(cwd)
        for module in checked.get("py_modules") or ():
            front.append(_module_root(module, session_dir, info.submission_id))
        if checked.get("pip"):
            # The node's cache that workers use: the driver's tasks then find it built.
            root = os.path.join(session_dir, "runtime_resources")
            venv = worker_setup.pip_env(root, checked["pip"], deadline,
                                        os.path.join(session_dir, "logs"))
            own, node = _venv_paths(venv)
            front.append(own)
            back.extend(node)
            env["VIRTUAL_ENV"] = venv
            env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
        if front:
            rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
            env["PYTHONPATH"] = os.pathsep.join(
                front + rest + [p for p in back if p not in rest])
        if checked:     # the driver's job-level runtime_env (zray.init reads it)
            env[DRIVER_ENV_VAR] = json.dumps(checked, sort_keys=True)
        return cwd, env


def _setup_message(exc):
    text = str(exc)
    return text if text.startswith("runtime_env") else f"runtime_env setup failed: {text}"


def _venv_paths(venv):
    """(the job venv's site-packages, the node interpreter's): the first goes before the
    entrypoint's PYTHONPATH, the others after it, so whichever `python` it runs sees the job's
    packages first and zray's dependencies too (a venv made from a venv's python does not see
    the outer one's)."""
    import glob
    import site
    found = glob.glob(os.path.join(venv, "lib", "python*", "site-packages"))
    if not found:
        raise exceptions.RuntimeEnvSetupError(f"the pip environment {venv} has no site-packages")
    return found[0], [p for p in site.getsitepackages() if os.path.isdir(p)]


def _module_root(module, session_dir, submission_id):
    """The directory to put on PYTHONPATH for one py_modules entry: an uploaded or local .zip
    unpacked (it holds the module under its name), a local package's parent, a .py's dir."""
    if module.endswith(".zip") and os.path.isfile(module):
        return _materialize(module, session_dir, submission_id, kind="py_modules")
    return os.path.dirname(module)


def _materialize(working_dir, session_dir, submission_id, kind="working_dir"):
    """A local directory for a working_dir (or py_modules .zip): a directory as is, or a .zip
    (an uploaded package in `<session>/packages/`) unpacked once per content name."""
    if os.path.isdir(working_dir):
        return os.path.abspath(working_dir)
    name = os.path.basename(working_dir)
    target = os.path.join(session_dir, "runtime_resources", f"job_{kind}", name.rsplit(".", 1)[0])
    if not os.path.isdir(target):
        tmp = f"{target}.{submission_id}"
        with zipfile.ZipFile(working_dir) as zf:
            for member in zf.namelist():     # no path may leave the target
                if os.path.isabs(member) or ".." in member.split("/"):
                    raise ValueError(f"package {name} holds an unsafe path {member!r}")
            zf.extractall(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
