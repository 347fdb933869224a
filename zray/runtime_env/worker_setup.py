"""Building a runtime_env on a node, in the worker process started for it.

A worker of an environment, before it runs any task: sets env_vars; makes sure the pip
environment and the packages exist in the node's cache (`<session>/runtime_resources/`), each
built by the first worker that needs it while the others wait on its file lock; then puts
them first on sys.path and, for a working_dir, makes it the current directory. A failure (a
package that will not install, an archive that cannot be fetched, the setup timeout) is kept:
every task given to this worker then fails with RuntimeEnvSetupError naming the cause, and the
worker stays, so the node does not start worker after failing worker.

The pip environment is a virtual environment with the node's own site-packages visible
(`--system-site-packages`), its requirements installed from the package registry by the
node's pip. The worker does not exec its interpreter: it is a fork of the node's zygote, with
zray already imported, so the environment's site-packages go first on its sys.path. A package
the zygote already imported (zray's own dependencies: numpy, zmq, cloudpickle) keeps the
version loaded first.
"""
import fcntl
import glob
import hashlib
import importlib
import io
import json
import logging
import os
import shutil
import site
import subprocess
import sys
import time
import zipfile

from .. import exceptions
from . import spec

log = logging.getLogger("zray.runtime_env")
LOCK_POLL_S = 0.05


def setup_worker(text, session_dir):
    """Build and enter the environment `text` (its canonical JSON). Raises
    RuntimeEnvSetupError on any failure."""
    from . import set_process_env
    env = spec.loads(text)
    set_process_env(env)
    timeout = spec.setup_timeout(env)
    deadline = None if timeout is None else time.monotonic() + timeout
    root = os.path.join(session_dir, "runtime_resources")
    try:
        if env.get("as_ray"):       # the submitter runs with `ray` aliased to zray
            from ..as_ray import install_as_ray
            install_as_ray()
        os.environ.update(env.get("env_vars") or {})
        front = []
        if env.get("working_dir"):
            front.append(unpacked(root, "working_dir", env["working_dir"], deadline))
        for package in env.get("py_modules") or ():
            front.append(unpacked(root, "py_modules", package, deadline))
        if env.get("pip"):
            venv = pip_env(root, env["pip"], deadline, os.path.join(session_dir, "logs"))
            enter_venv(venv)
        sys.path[:0] = [p for p in front if p not in sys.path]
        if env.get("working_dir"):
            os.chdir(front[0])
        importlib.invalidate_caches()
    except exceptions.RuntimeEnvSetupError:
        raise
    except Exception as exc:
        raise exceptions.RuntimeEnvSetupError(
            f"the runtime_env could not be set up on this node: {type(exc).__name__}: {exc}") \
            from exc


class _FileLock:
    """An exclusive lock between the node's workers (flock), waited for until the deadline."""

    def __init__(self, path, deadline):
        self.path = path
        self.deadline = deadline

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if self.deadline is not None and time.monotonic() > self.deadline:
                    os.close(self.fd)
                    raise exceptions.RuntimeEnvSetupError(
                        f"runtime_env setup timed out waiting for another worker building "
                        f"{os.path.basename(self.path)[:-5]}")
                time.sleep(LOCK_POLL_S)

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _remaining(deadline):
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise exceptions.RuntimeEnvSetupError("runtime_env setup timed out "
                                              "(config: setup_timeout_seconds)")
    return left


def unpacked(root, kind, package, deadline):
    """The node's directory holding a shipped archive's content (unpacked once per node)."""
    digest = package["hash"]
    target = os.path.join(root, kind, digest)
    if os.path.isdir(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with _FileLock(target + ".lock", deadline):
        if os.path.isdir(target):
            return target
        data = fetch(package, deadline)
        tmp = f"{target}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        _extract(data, tmp)
        os.rename(tmp, target)
    log.info("unpacked %s %s", kind, digest)
    return target


def fetch(package, deadline):
    """The archive's bytes, from the object store (the submitting process owns them)."""
    from .. import api
    from ..objects.object_ref import ObjectRef
    ref = ObjectRef(bytes.fromhex(package["object_id"]), package["owner"], _counted=False)
    try:
        data = api.get(ref, timeout=_remaining(deadline))
    except exceptions.GetTimeoutError:
        raise exceptions.RuntimeEnvSetupError("runtime_env setup timed out fetching a package "
                                              "(config: setup_timeout_seconds)") from None
    except exceptions.RayError as exc:
        raise exceptions.RuntimeEnvSetupError(
            f"the runtime_env package {package['hash'][:12]} could not be fetched (the process "
            f"that shipped it may be gone): {exc}") from exc
    data = bytes(data)
    if hashlib.sha256(data).hexdigest() != package["hash"]:
        raise exceptions.RuntimeEnvSetupError(f"runtime_env package {package['hash'][:12]} "
                                              "arrived damaged (its hash differs)")
    return data


def _extract(data, target):
    os.makedirs(target)
    real = os.path.realpath(target)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            dest = os.path.realpath(os.path.join(target, info.filename))
            if not dest.startswith(real + os.sep):
                raise exceptions.RuntimeEnvSetupError(
                    f"runtime_env archive member {info.filename!r} points outside its directory")
            zf.extract(info, target)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(dest, mode)


def pip_env(root, pip, deadline, log_dir):
    """The node's virtual environment for a requirement set, built once."""
    key = json.dumps({"pip": pip, "python": sys.version}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    venv = os.path.join(root, "pip", digest)
    ready = os.path.join(venv, ".zray-ready")
    if os.path.exists(ready):
        return venv
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    with _FileLock(venv + ".lock", deadline):
        if os.path.exists(ready):
            return venv
        shutil.rmtree(venv, ignore_errors=True)     # half built by a worker that died
        os.makedirs(log_dir, exist_ok=True)
        log_path = os.path.join(log_dir, f"runtime_env-pip-{digest}.log")
        started = time.monotonic()
        _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv],
             log_path, deadline, "creating the virtual environment")
        python = os.path.join(venv, "bin", "python")
        _run([python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
              *pip["packages"]], log_path, deadline, "pip install " + " ".join(pip["packages"]))
        if pip.get("pip_check"):
            _run([python, "-m", "pip", "check"], log_path, deadline, "pip check")
        with open(ready, "w") as f:
            f.write(json.dumps(pip))
        log.info("built pip environment %s in %.1f s: %s", digest,
                 time.monotonic() - started, pip["packages"])
    return venv


def _die_with_parent():
    """A preexec_fn: the build dies with the process building it (a worker or a job's
    supervisor killed mid-build leaves no pip behind). libc is loaded here, in the parent: the
    forked child only makes the call."""
    import ctypes
    import signal
    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    return lambda: prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG


def _run(argv, log_path, deadline, what):
    with open(log_path, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=_remaining(deadline),
                                  preexec_fn=_die_with_parent())
        except subprocess.TimeoutExpired:
            raise exceptions.RuntimeEnvSetupError(
                f"runtime_env setup timed out while {what} (config: setup_timeout_seconds); "
                f"its output is in {log_path}") from None
    if proc.returncode != 0:
        with open(log_path, "rb") as f:
            tail = f.read()[-2000:].decode(errors="replace")
        raise exceptions.RuntimeEnvSetupError(
            f"runtime_env setup failed: {what} exited with code {proc.returncode}. "
            f"Its output ({log_path}) ends with:\n{tail}")


def enter_venv(venv):
    """The environment's site-packages first on sys.path (.pth files included)."""
    found = glob.glob(os.path.join(venv, "lib", "python*", "site-packages"))
    if not found:
        raise exceptions.RuntimeEnvSetupError(f"the pip environment {venv} has no site-packages")
    before = list(sys.path)
    site.addsitedir(found[0])
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + before
    os.environ["VIRTUAL_ENV"] = venv
    os.environ["PATH"] = os.path.join(venv, "bin") + os.pathsep + os.environ.get("PATH", "")
