"""Is a process alive? One answer for every part of the node. And how a forked child that
runs Python code (a daemon forked by the launcher, a child a task forked) ends."""
import os
import signal
import sys


def pid_alive(pid):
    """True while `pid` runs. A zombie (exited, not yet reaped: a worker whose zygote is gone
    waits for init) counts as dead; a process of another user counts as alive."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return True    # no /proc to ask: kill(0) said it exists


def process_start_time(pid):
    """When `pid` started (clock ticks since boot, /proc/<pid>/stat field 22), or None. With
    the pid it names one process for good: a pid is reused, a (pid, start time) pair is not."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rpartition(b")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_cpu_seconds(pid):
    """CPU seconds (user and system, all threads) `pid` used so far, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


NODE_PROCESS_NAME = b"zray-node"     # a node daemon's /proc/<pid>/comm (daemon.main sets it)


def is_node_daemon(pid, start_time, session_dir):
    """Whether `pid` is still the node daemon a node file describes, not an unrelated process
    that got its pid after it died: same start time, and a daemon of that session (its command
    line says so), or, for a daemon forked from its starter (bootstrap.start_node(fork=True),
    as `python -m zray.launch` does: the starter's command line), a daemon by its process
    name; the start time then is what tells it from a later process."""
    if start_time is not None and process_start_time(pid) != start_time:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    if b"zray.node.daemon" in argv and session_dir.encode() in argv:
        return True
    if start_time is None:
        return False
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().strip() == NODE_PROCESS_NAME
    except OSError:
        return False


def kill_pid(pid):
    """SIGKILL a process, if it still exists."""
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class WorkerProcess:
    """A worker this node started (through the zygote)."""
    __slots__ = ("worker_id", "job_id", "pid", "pidfd", "address", "registered", "runtime_env",
                 "preloads")

    def __init__(self, worker_id, job_id, runtime_env="", preloads=0):
        self.worker_id = worker_id
        self.job_id = job_id
        self.runtime_env = runtime_env      # the canonical text it was started for ("" none)
        self.pid = None
        self.pidfd = None
        self.address = None
        self.registered = False
        self.preloads = preloads    # how many preload requests its zygote had before its fork


class Client:
    """A registered driver or worker of this node."""
    __slots__ = ("kind", "address", "pid", "job_id", "worker_id", "pidfd")

    def __init__(self, kind, address, pid, job_id, worker_id, pidfd):
        self.kind = kind
        self.address = address
        self.pid = pid
        self.job_id = job_id
        self.worker_id = worker_id
        self.pidfd = pidfd


class ClientTable:
    """The node's processes: its registered clients, the workers it started, and the drivers
    of the jobs it runs tasks for (its own, and remote ones that forwarded tasks here).
    The daemon changes it; services read it through these methods."""

    def __init__(self):
        self.clients = {}            # address -> Client
        self.workers = {}            # worker_id -> WorkerProcess
        self.drivers = {}            # job_id -> address of a driver of this node
        self.remote_drivers = {}     # job_id -> address of a driver on another node

    # -- queries -----------------------------------------------------------------------------
    def is_client(self, address):
        return address in self.clients

    def addresses(self):
        return list(self.clients)

    def worker_id_of(self, address):
        client = self.clients.get(address)
        return client.worker_id if client is not None else None

    def pid_of(self, address):
        client = self.clients.get(address)
        return client.pid if client is not None else None

    def has_worker(self, worker_id):
        return worker_id in self.workers

    def worker_pid(self, worker_id):
        worker = self.workers.get(worker_id)
        return worker.pid if worker is not None else None

    def worker_pids(self):
        return [w.pid for w in self.workers.values() if w.pid]

    def driver_of(self, job_id):
        """The address of the job's driver, as far as this node knows, or None."""
        return self.drivers.get(job_id) or self.remote_drivers.get(job_id)

    def job_alive(self, job_id):
        return job_id in self.drivers or job_id in self.remote_drivers

    def remote_drivers_on(self, node_of_address, node_id):
        return [(job_id, address) for job_id, address in self.remote_drivers.items()
                if node_of_address(address) == node_id]

    # -- changes (the daemon; remote drivers: routing) ---------------------------------------
    def add_remote_driver(self, job_id, address):
        if address and job_id not in self.drivers:
            self.remote_drivers[job_id] = address

    def driver_gone(self, job_id, address):
        if self.drivers.get(job_id) == address:
            del self.drivers[job_id]
        if self.remote_drivers.get(job_id) == address:
            del self.remote_drivers[job_id]


def exit_forked_child(exc=None):
    """End a forked child as a process running to `exc` would: SystemExit's code, 1 for
    another exception (its traceback on stderr), else 0; its streams flushed, then
    os._exit, so nothing the parent set up (atexit, finalizers, threads) runs twice."""
    code = 0
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    elif exc is not None:
        code = 1
        import traceback
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
