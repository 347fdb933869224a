"""Starting a node daemon and waiting until it is ready: the one place that builds its command
line. Used by `zray.init()` (a private node for one driver), `zray start` (a node that outlives
its drivers, node/local_node.py) and launchers (`zray.launch`, one node per Slurm/MPI host):

    spec = NodeSpec(session_dir=..., num_cpus=8, object_store_memory=2 << 30, port=6380,
                    join="10.0.0.1:6380", secret_file=...)
    node = start_node(spec, timeout=60, abort=lambda: "rank 0 failed" if ... else None)
    ...
    node.stop()

`start_node(spec, fork=True)` (the launcher, a process zray controls) forks the daemon from
the calling process instead of executing a new interpreter: the daemon then shares the
interpreter's start and the modules already imported (~0.1 CPU-s and a few hundred ms of a
launch's start on a busy host). It needs a process with one thread and no MPI_Init; the
daemon keeps the caller's command line (its process name is "zray-node": processes.py).

The daemon writes "ready" to a pipe once it serves (zray/node/daemon.py, --ready-fd). Waiting
ends with that, with the daemon's exit (NodeStartError with the tail of its stderr), with the
timeout, or when `abort()` returns a reason (a launcher's death signal: another rank failed);
in every failure the daemon is killed and reaped.
"""
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger("zray.node")

START_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
_POLL_S = 0.05
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class NodeStartError(RuntimeError):
    """The node daemon did not become ready (it exited, timed out, or was aborted)."""


@dataclass(frozen=True)
class NodeSpec:
    """Everything a node daemon is started with (the daemon's flags, one field each)."""
    session_dir: str
    num_cpus: float
    object_store_memory: int
    num_gpus: float = 0
    resources: dict = field(default_factory=dict)
    memory: int = None             # the "memory" resource in bytes; None: what the node may use
    node_ip: str = "127.0.0.1"
    port: int = 0                  # TCP port for the mesh; 0: no mesh (unless join is given)
    join: str = None               # HOST:PORT[,HOST:PORT] of live members
    secret_file: str = None        # the cluster secret (CURVE keys of the mesh)
    driver_pid: int = 0            # a private node ends with this driver
    driver_address: str = None
    job_id: str = None
    prestart: int = 0              # workers forked before the first task
    node_file: str = None          # where `zray start` announces this node
    remove_session_on_exit: bool = True
    dashboard_port: int = None     # None: no dashboard; a port (8265; taken: a free one)
    dashboard_host: str = "127.0.0.1"
    preload: tuple = ()            # modules its zygote imports at its start (worker_preload.py)
    warmup: str = "now"            # node/warmup.py: when the start-up work no task waits for runs

    def __post_init__(self):
        if isinstance(self.num_cpus, bool) or not isinstance(self.num_cpus, (int, float)) \
                or self.num_cpus < 0:
            raise ValueError(f"num_cpus must be a number >= 0, got {self.num_cpus!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port < 65536:
            raise ValueError(f"port must be an int in 0..65535, got {self.port!r}")
        if self.dashboard_port is not None and (
                isinstance(self.dashboard_port, bool) or not isinstance(self.dashboard_port, int)
                or not 0 <= self.dashboard_port < 65536):
            raise ValueError(f"dashboard_port must be an int in 0..65535, got "
                             f"{self.dashboard_port!r}")
        if not isinstance(self.object_store_memory, int) or self.object_store_memory < (1 << 20):
            raise ValueError(f"object_store_memory must be an int >= 1 MiB, got "
                             f"{self.object_store_memory!r}")
        if self.memory is not None and (isinstance(self.memory, bool) or not isinstance(
                self.memory, int) or self.memory < 0):
            raise ValueError(f"memory must be an int number of bytes >= 0, got {self.memory!r}")
        from .warmup import MODES
        if self.warmup not in MODES:
            raise ValueError(f"warmup must be one of {', '.join(MODES)}, got {self.warmup!r}")

    def command(self, ready_fd=-1):
        cmd = [sys.executable, "-m", "zray.node.daemon", "--session", self.session_dir,
               "--num-cpus", str(self.num_cpus), "--num-gpus", str(self.num_gpus),
               "--resources", json.dumps(self.resources or {}),
               "--object-store-memory", str(self.object_store_memory),
               "--memory", str(-1 if self.memory is None else self.memory),
               "--node-ip", self.node_ip, "--ready-fd", str(ready_fd)]
        if self.port:
            cmd += ["--port", str(self.port)]
        if self.join:
            cmd += ["--join", self.join]
        if self.secret_file:
            cmd += ["--secret-file", self.secret_file]
        if self.driver_pid:
            cmd += ["--driver-pid", str(self.driver_pid)]
        if self.driver_address:
            cmd += ["--driver-address", self.driver_address]
        if self.job_id:
            cmd += ["--job-id", self.job_id]
        if self.prestart:
            cmd += ["--prestart", str(self.prestart)]
        if self.node_file:
            cmd += ["--node-file", self.node_file]
        if self.remove_session_on_exit:
            cmd.append("--remove-session-on-exit")
        if self.dashboard_port is not None:
            cmd += ["--dashboard-port", str(self.dashboard_port),
                    "--dashboard-host", self.dashboard_host]
        if self.preload:
            cmd += ["--preload", ",".join(self.preload)]
        if self.warmup != "now":
            cmd += ["--warmup", self.warmup]
        return cmd

    @property
    def log_prefix(self):
        return os.path.join(self.session_dir, "logs", "node")


class NodeProcess:
    """A started node daemon (our child, in its own session)."""

    def __init__(self, spec, proc):
        self.spec = spec
        self.proc = proc
        self.stopping = False     # its starter asked it to stop: an exit from now on is no crash
        self.crashed = False      # it exited before being asked to

    @property
    def pid(self):
        return self.proc.pid

    @property
    def address(self):
        """Where its clients reach it on this host."""
        return f"ipc://{self.spec.session_dir}/sock/node"

    def alive(self):
        return self.proc.poll() is None

    def wait(self, timeout=None):
        return self.proc.wait(timeout)

    def stop(self, grace=STOP_GRACE_S):
        """Wait up to `grace` for it to exit (it was asked to), then kill it; reaped."""
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("node daemon %d did not exit within %.0fs: killed", self.proc.pid, grace)
            self.proc.kill()
            self.proc.wait(timeout=5)


def start_node(spec, timeout=START_TIMEOUT_S, abort=None, after_spawn=None, fork=False):
    """Start a node daemon for `spec` and wait until it serves; the NodeProcess.
    NodeStartError when it exits first, `timeout` passes or abort() returns a reason.
    `after_spawn()`: called once the daemon's process exists, before the wait (work of the
    caller's that should not delay the spawn). `fork`: fork it from this process (see the
    module's docstring) when this process has one thread, else start it as usual."""
    ready_r, ready_w = os.pipe()
    env = dict(os.environ)
    env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log_prefix = spec.log_prefix
    try:
        with open(log_prefix + ".out", "wb") as out, open(log_prefix + ".err", "wb") as err:
            if fork and threading.active_count() == 1:
                proc = _fork_daemon(spec, ready_r, ready_w, env, out.fileno(), err.fileno())
            else:
                proc = subprocess.Popen(spec.command(ready_w), stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=err, pass_fds=[ready_w],
                                        start_new_session=True, env=env)
    finally:
        os.close(ready_w)
    node = NodeProcess(spec, proc)
    try:
        if after_spawn is not None:
            after_spawn()
        _wait_ready(ready_r, node, timeout, abort)
    except BaseException:
        proc.kill()
        proc.wait(timeout=5)
        raise
    finally:
        os.close(ready_r)
    log.info("node daemon %d ready (session %s)", proc.pid, spec.session_dir)
    return node


def _fork_daemon(spec, ready_r, ready_w, env, out_fd, err_fd):
    """The daemon as a child forked from this process: what Popen would have given it (a new
    session, stdin from /dev/null, output to its log files, only the ready pipe besides, the
    environment `env`), then daemon.main. It never returns into the caller's code."""
    from . import daemon
    daemon._import_daemon_modules()      # shared with the child, and so with its zygote
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()              # else the child would write the caller's buffer again
        except (OSError, ValueError):
            pass
    pid = os.fork()
    if pid:
        return ForkedProcess(pid, spec.command(ready_w))
    exc = None
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.closerange(3, ready_w)
        os.closerange(ready_w + 1, 65536)
        for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        import io
        sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True,
                                      line_buffering=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", buffering=0), write_through=True,
                                      line_buffering=True)
        root = logging.getLogger()
        for handler in list(root.handlers):     # the caller's logging is not the daemon's
            root.removeHandler(handler)
        os.environ.clear()
        os.environ.update(env)
        argv = spec.command(ready_w)[3:]        # after "python -m zray.node.daemon"
        sys.argv = [daemon.__file__, *argv]
        daemon.main(argv)
    except BaseException as raised:     # noqa: BLE001 - ends the child like a process would
        exc = raised
    finally:
        from .processes import exit_forked_child
        exit_forked_child(exc)


class ForkedProcess:
    """A daemon forked by _fork_daemon, with what NodeProcess and its users ask of a Popen."""

    def __init__(self, pid, args):
        self.pid = pid
        self.args = args
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:       # reaped elsewhere: gone, its status unknown
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            pidfd = None
        try:
            while self.poll() is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout)
                if pidfd is not None:
                    select.select([pidfd], [], [], left)
                else:
                    time.sleep(0.01)
        finally:
            if pidfd is not None:
                os.close(pidfd)
        return self.returncode

    def send_signal(self, signum):
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def terminate(self):
        self.send_signal(signal.SIGTERM)


def _wait_ready(fd, node, timeout, abort):
    deadline = time.monotonic() + timeout
    reason = None
    while True:
        r, _, _ = select.select([fd], [], [], _POLL_S)
        if r and os.read(fd, 64).startswith(b"ready"):
            return
        if not node.alive():
            reason = f"exit code {node.proc.poll()}"
            break
        if abort is not None:
            reason = abort()
            if reason:
                reason = f"aborted: {reason}"
                break
        if time.monotonic() >= deadline:
            reason = f"not ready within {timeout:.0f}s"
            break
    raise NodeStartError(f"the zray node daemon failed to start ({reason}):\n"
                         f"{_tail(node.spec.log_prefix + '.err')}")


def _tail(path, limit=3000):
    try:
        with open(path, "rb") as f:
            return f.read()[-limit:].decode(errors="replace")
    except OSError:
        return ""
