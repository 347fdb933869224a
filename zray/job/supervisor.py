"""The actor that runs one job's entrypoint (Ray's JobSupervisor): a detached, threaded actor on
the node of the dashboard that took the submit. It starts the entrypoint in a shell, in its own
process group, with the job's env_vars and working_dir, writes everything it prints to
`<session>/logs/job-driver-<submission_id>.log`, and records RUNNING and the end (model.py) in
the cluster key-value store. `stop()` may come at any time, also before `run()`: the entrypoint
then never starts. The entrypoint dies with the supervisor's worker (PR_SET_PDEATHSIG).
"""
import json
import logging
import os
import signal
import subprocess
import threading
import zipfile

from . import model

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
            try:
                cwd, env = self._prepare(info, rt.session_dir)
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                self._write(model.failed(info, f"runtime_env setup failed: {exc}",
                                         "RUNTIME_ENV_SETUP_FAILED"))
                return model.FAILED
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
        runtime_env = info.runtime_env or {}
        for key, value in (runtime_env.get("env_vars") or {}).items():
            env[str(key)] = str(value)
        cwd = None
        working_dir = runtime_env.get("working_dir")
        if working_dir:
            cwd = _materialize(working_dir, session_dir, info.submission_id)
            env["PYTHONPATH"] = cwd + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return cwd, env


def _materialize(working_dir, session_dir, submission_id):
    """A local directory for the working_dir: a directory as is, or an uploaded package
    (`gcs://_ray_pkg_<hash>.zip`, kept in `<session>/packages/`) unpacked once."""
    if "://" not in working_dir:
        if not os.path.isdir(working_dir):
            raise ValueError(f"working_dir {working_dir!r} is not a directory on this node")
        return os.path.abspath(working_dir)
    name = working_dir.split("://", 1)[1]
    package = os.path.join(session_dir, "packages", os.path.basename(name))
    if not os.path.isfile(package):
        raise ValueError(f"working_dir package {working_dir} was not uploaded to this node")
    target = os.path.join(session_dir, "runtime_resources", "working_dir",
                          os.path.basename(name).rsplit(".", 1)[0])
    if not os.path.isdir(target):
        tmp = f"{target}.{submission_id}"
        with zipfile.ZipFile(package) as zf:
            for member in zf.namelist():     # no path may leave the target
                if os.path.isabs(member) or ".." in member.split("/"):
                    raise ValueError(f"package {name} holds an unsafe path {member!r}")
            zf.extractall(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            pass
    return target
