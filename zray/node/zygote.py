"""Starting workers by fork from a zygote, a process that has already imported zray.

A fresh interpreter takes ~0.3 s to import zmq, cloudpickle and numpy here; a fork of a process
that already did takes milliseconds. The zygote is forked from the node daemon before the daemon
creates any thread or ZeroMQ context (forking those is unsafe), and never creates either. It
reads spawn requests (one JSON line each) from a pipe and answers "worker_id pid" lines, and
reaps its workers, answering "-exit pid status" lines (the daemon sees a death through a pidfd
at once, but only the parent learns the exit code or the signal, which the user's
WorkerCrashedError names). A request {"preload": [module, ...]} (zray.train and zray.data ask
for theirs, through the node: preload_service.py) makes the zygote import those modules between
two forks, so every later worker starts with them. Workers die with the zygote, and the zygote with the daemon
(PR_SET_PDEATHSIG); a worker forked at the instant its zygote dies (before its own
PR_SET_PDEATHSIG took effect) sees it has been re-parented and exits.

What the zygote imports of zray itself, and when, is its start mode: EAGER imports everything
at once; CORE only what a worker needs to run a task (core/worker_main.preload_core), the rest
(preload_extras: the whole API, numpy) on warm(); LAZY nothing until its first fork or warm().
The later modes keep a node's start light where it is on the path of a launch (several ranks
sharing a host's CPUs): its node warms it when the host has a CPU to spare (node/warmup.py).
"""
import ctypes
import json
import os
import select
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
F_SETPIPE_SZ = 1031
REQUEST_PIPE_BYTES = 1 << 20   # spawn requests queue here while the zygote imports (seconds for
                               # torch): the daemon's write must not block on a full pipe
EAGER, CORE, LAZY = "eager", "core", "lazy"
MODES = (EAGER, CORE, LAZY)


def die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


class Zygote:
    def __init__(self, pid, request_fd, reply_fd):
        self.pid = pid
        self.request_fd = request_fd
        self.reply_fd = reply_fd
        self._partial = b""
        self._exits = {}         # pid -> wait status, reported by the zygote
        self.preloads = 0        # preload requests sent: a worker forked before the last one
                                 # lacks its modules

    @classmethod
    def start(cls, mode=EAGER, preload=()):
        """Fork the zygote; it imports `preload` (module names) before serving its first
        request, and zray's own modules as `mode` says."""
        if mode not in MODES:
            raise ValueError(f"the zygote's mode must be one of {', '.join(MODES)}, not {mode!r}")
        req_r, req_w = os.pipe()
        try:
            import fcntl
            fcntl.fcntl(req_w, F_SETPIPE_SZ, REQUEST_PIPE_BYTES)
        except OSError:
            pass      # over /proc/sys/fs/pipe-max-size: the default 64 KiB holds ~200 requests
        rep_r, rep_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(req_w)
                os.close(rep_r)
                _zygote_main(req_r, rep_w, parent, mode, preload)
            finally:
                os._exit(0)
        os.close(req_r)
        os.close(rep_w)
        os.set_blocking(rep_r, False)
        return cls(pid, req_w, rep_r)

    def spawn(self, request):
        os.write(self.request_fd, (json.dumps(request) + "\n").encode())

    def warm(self):
        """Ask the zygote to import what its mode left for later, before its next forks."""
        os.write(self.request_fd, b'{"warm": true}\n')

    def preload(self, modules):
        """Ask the zygote to import `modules` before its next forks (it does so in order with
        the spawn requests: a worker requested after this starts with them)."""
        os.write(self.request_fd, (json.dumps({"preload": list(modules)}) + "\n").encode())
        self.preloads += 1

    def read_replies(self):
        """[(worker_id, pid)] reported since the last call."""
        try:
            data = os.read(self.reply_fd, 65536)
        except BlockingIOError:
            return []
        if not data:
            return []
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        out = []
        for line in lines:
            worker_id, pid, *status = line.decode().split()
            if worker_id == "-exit":
                if len(self._exits) > 10_000:    # statuses nobody asked for (never registered)
                    self._exits.clear()
                self._exits[int(pid)] = int(status[0])
            else:
                out.append((worker_id, int(pid)))
        return out

    def take_exit(self, pid):
        """The wait status of a worker that exited, once the zygote reported it (else None)."""
        return self._exits.pop(pid, None)

    def stop(self):
        for fd in (self.request_fd, self.reply_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


class _Imports:
    """The zygote's own imports of zray, done once each: core before any fork, extras when
    warmed (or at once in EAGER mode)."""

    def __init__(self):
        self.core = self.extras = False

    def load_core(self):
        if not self.core:
            from ..core import worker_main
            worker_main.preload_core()
            self.core = True

    def load_extras(self):
        self.load_core()
        if not self.extras:
            from ..core import worker_main
            worker_main.preload_extras()
            self.extras = True


def _zygote_main(request_fd, reply_fd, parent_pid, mode=EAGER, preload=()):
    die_with_parent()
    if os.getppid() != parent_pid:
        return
    def reap(signum, frame):
        # Between two bytecodes of the main loop: a line written here never splits another.
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            try:
                os.write(reply_fd, f"-exit {pid} {status}\n".encode())
            except OSError:
                pass
    signal.signal(signal.SIGCHLD, reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import gc
    gc.disable()                # as in import_modules, for zray's own imports too
    from ..core import worker_main
    imports = _Imports()        # the imports every worker needs, done once here
    if mode == EAGER:
        imports.load_extras()
    elif mode == CORE:
        imports.load_core()
    zygote_pid = os.getpid()
    failed_imports = set()
    import_modules(preload, failed_imports)
    gc.freeze()
    gc.enable()
    stream = os.fdopen(request_fd, "rb", buffering=0)
    buf = b""
    warm = False        # warm() asked: after the workers asked for already (each one waits)
    while True:
        if warm and not select.select([stream], [], [], 0)[0]:
            imports.load_extras()
            warm = False
        chunk = stream.read(65536)
        if not chunk:
            return
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            request = json.loads(line)
            if "warm" in request:
                warm = True
                continue
            if "preload" in request:
                if warm:
                    imports.load_extras()
                    warm = False
                import_modules(request["preload"], failed_imports)
                continue
            imports.load_core()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    os.close(request_fd)
                    os.close(reply_fd)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    if not start_child(zygote_pid):
                        os._exit(0)
                    code = worker_main.run_forked(request)
                except BaseException:
                    import traceback
                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code or 0)
            os.write(reply_fd, f"{request['worker_id']} {pid}\n".encode())


def import_modules(names, failed):
    """Import `names` here, in the zygote. A module that fails is reported once (on the node's
    stderr, its log) and ignored: a worker that needs it imports it again and sees the error.
    Importing torch starts no thread (its intra-op pool starts at the first parallel op, which
    never runs here), so forking after it stays safe; each worker starts its own pool.

    The cyclic garbage collector is off while importing: a big import (torch and
    torch._dynamo: ~500k objects) otherwise runs it again and again over everything already
    loaded, ~15-20% of the import's CPU time here. The objects are then frozen (gc.freeze, as
    Python's docs advise before fork): no collection, in the zygote or in a worker, walks them
    again, and a worker's collections do not write to (and so copy) the pages it shares with
    the zygote."""
    import gc
    import importlib
    todo = [n for n in names if n not in sys.modules and n not in failed]
    if not todo:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        for name in todo:
            try:
                importlib.import_module(name)
            except BaseException as exc:   # noqa: BLE001 - SystemExit from a module's top too
                failed.add(name)
                sys.stderr.write(f"zray: the zygote could not preload {name}: {exc!r}\n")
                sys.stderr.flush()
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def start_child(parent_pid):
    """In a just-forked worker: die with the zygote from now on. False when the zygote is
    already gone (it died between the fork and here, so the death signal was never armed):
    the worker must exit instead of living on, orphaned, after the node stopped."""
    die_with_parent()
    return os.getppid() == parent_pid


def describe_exit(status):
    """A wait status in words: 'was killed by signal 9 (SIGKILL)' / 'exited with code 3'."""
    if status is None:
        return "exited (its exit status is unknown)"
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"was killed by signal {-code} ({name})"
    return f"exited with code {code}"
