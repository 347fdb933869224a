"""The life of a worker process, forked by the zygote: logs, runtime, serve, exit."""
import io
import logging
import os
import random
import sys
import threading

from ..transport import wire


def preload():
    """Imports done once in the zygote, shared by every worker it forks: what every worker
    needs (preload_core), then what many tasks use (preload_extras)."""
    preload_core()
    preload_extras()


def preload_core():
    """What every worker imports before it runs its first task (run_forked below), and the
    modules the user asked every worker to start with."""
    import_worker_modules()
    # $ZRAY_WORKER_PRELOAD="torch,torch.distributed": modules every worker starts with, imported
    # once here (importing torch takes seconds in each fresh worker; a fork shares it).
    from ..node.zygote import import_modules
    import_modules([m.strip() for m in os.environ.get("ZRAY_WORKER_PRELOAD", "").split(",")
                    if m.strip()], set())


def import_worker_modules():
    """zray's modules of run_forked below (the driver API among them)."""
    from . import core_worker, executor, job_info, runtime  # noqa: F401
    from .. import api, logs  # noqa: F401
    from ..util.debug import hook  # noqa: F401


def preload_extras():
    """What tasks' code often imports: the whole public API (the package loads it lazily) and
    numpy (~0.1-0.2 s each time a fresh process imports it here). A worker forked before these
    imports does them itself if its task needs them."""
    import zray
    for name in zray.__all__:
        getattr(zray, name)
    try:
        import numpy  # noqa: F401
    except ImportError:
        pass


def run_forked(request):
    session = request["session"]
    worker_id = request["worker_id"]
    _redirect_output(os.path.join(session, "logs", f"worker-{worker_id}"))
    _reseed()
    os.environ["ZRAY_JOB_ID"] = request["job_id"]
    from .. import logs
    logs.configure(session, f"worker-{worker_id}")
    from .core_worker import CoreWorker
    from .executor import Executor
    runtime = CoreWorker("worker", session, request["daemon"], request["job_id"],
                         worker_id=worker_id, namespace=request.get("namespace"),
                         driver_address=request.get("driver"), mesh=request.get("mesh"))
    executor = Executor(runtime)
    from . import job_info
    from . import runtime as facade
    runtime.context.load_job = lambda: job_info.load(facade.current())
    # The public API (zray.get inside a task) talks to this runtime; importing it here, not
    # at the top, keeps zray.core free of the public layer (the zygote preloads it anyway).
    from .. import api
    api.attach_worker_runtime(runtime)
    from ..util.debug import hook   # breakpoint() and post-mortem sessions (zray debug)
    hook.install_in_worker(executor)
    runtime.connect(os.getpid())
    driver = request.get("driver")
    if driver:
        sys.stdout = LogForwarder(runtime, driver, 1, sys.stdout)
        sys.stderr = LogForwarder(runtime, driver, 2, sys.stderr)
    os.register_at_fork(after_in_child=_after_fork_in_child)
    if request.get("runtime_env"):
        # Built before any task runs (zray/runtime_env/worker_setup.py); a failure fails its tasks.
        from ..runtime_env.worker_setup import setup_worker
        try:
            setup_worker(request["runtime_env"], session)
        except Exception as exc:
            logging.getLogger("zray.runtime_env").error("%s", exc)
            executor.setup_error = exc
    try:
        executor.serve_forever()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    return 0


def _after_fork_in_child():
    """A task forked this worker (os.fork, multiprocessing's "fork" start method). The child
    shares its parent's sockets but has none of its threads, so it must never speak for the
    worker: its output goes to the worker's log file only, zray calls in it raise (no
    auto-connect either), refs it makes or drops count nothing, and if its code returns into
    zray it exits there (Executor.leave_if_forked_child). What the child computes and hands
    back through its own pipes (multiprocessing) is unaffected."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, LogForwarder):
            setattr(sys, name, stream.underlying)
    os.environ["ZRAY_ENABLE_AUTO_CONNECT"] = "0"
    from .. import api
    from ..objects import object_ref
    api._state = None
    object_ref.set_runtime(None)


def _redirect_output(prefix):
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    for fd, suffix in ((1, ".out"), (2, ".err")):
        log = os.open(prefix + suffix, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, fd)
        os.close(log)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True, line_buffering=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", buffering=0), write_through=True, line_buffering=True)


def _reseed():
    """Forked workers would otherwise share the zygote's random state."""
    random.seed()
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()


class LogForwarder(io.TextIOBase):
    """A worker's sys.stdout/stderr: lines go to its log file and, prefixed with the task name
    and pid as Ray does, to the driver's terminal."""

    _loss_reported = False      # one warning per worker process

    def __init__(self, runtime, driver, stream_no, underlying):
        self.runtime = runtime
        self.driver = driver
        self.stream_no = stream_no
        self.underlying = underlying
        self._partial = ""
        self._lock = threading.Lock()
        self.pid = os.getpid()

    def writable(self):
        return True

    def fileno(self):
        return self.underlying.fileno()

    @property
    def encoding(self):
        return "utf-8"

    def write(self, text):
        self._to_log(self.underlying.write, text)
        with self._lock:
            text = self._partial + text
            if "\n" not in text:
                self._partial = text
                return len(text)
            complete, _, self._partial = text.rpartition("\n")
        self._send(complete + "\n")
        return len(text)

    @property
    def idle(self):
        """Nothing held back: the log file is written through (see _redirect_output), so only
        a line without its newline yet waits here."""
        return not self._partial

    def flush(self):
        self._to_log(self.underlying.flush)
        with self._lock:
            rest, self._partial = self._partial, ""
        if rest:
            self._send(rest + "\n")

    def _to_log(self, op, *args):
        """Write to the log file: losing log output (a full disk, say) must never fail the
        user's code. The first loss is said once, to the driver and in the node's log."""
        try:
            op(*args)
        except (OSError, ValueError) as exc:
            if not LogForwarder._loss_reported:
                LogForwarder._loss_reported = True
                text = (f"zray: worker pid={self.pid} cannot write its log file ({exc}); its "
                        "output is no longer kept there")
                logging.getLogger("zray.core").warning("%s", text)
                try:
                    self._warn_driver(text)
                except Exception:   # logged by send()
                    pass

    def _warn_driver(self, text):
        driver = self.runtime.driver_address
        if driver is not None:
            self.runtime.send(driver, wire.WARNING, (text,))

    def _send(self, text):
        driver = self.runtime.driver_address
        if driver is None:
            return      # the job's driver is gone (a detached actor outliving it): log file only
        name = self.runtime.context.current_task_name
        prefix = f"({name} pid={self.pid}) " if name else f"(pid={self.pid}) "
        lines = "".join(prefix + line + "\n" for line in text.splitlines())
        try:
            self.runtime.send(driver, wire.LOG_LINES, (self.stream_no, lines))
        except Exception:   # logged by send(); the line is in the log file anyway
            pass
