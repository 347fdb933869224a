"""The worker actor: runs the training loop of one rank and lets the driver long-poll its
reports (a poll returns as soon as a report is queued, so reports are pushed, not sampled)."""
import inspect
import logging
import os
import queue
import resource
import socket
import tempfile
import time
from dataclasses import dataclass

from .checkpoint import Checkpoint, unpack_directory
from .session import TrainSession, set_session

logger = logging.getLogger("zray.train")

FINISHED = "finished"


@dataclass(frozen=True)
class WorkerStats:
    """Queued just before FINISHED: when this worker's phases ended (time.time()) and its CPU
    seconds, for Result._stats (benchmarks/train_phases.py)."""
    rank: int
    stats: dict


class TrainWorker:
    """One rank. Methods run on a small thread pool (max_concurrency), so poll() answers while
    run() trains."""

    def __init__(self):
        self._events = queue.Queue()
        self._created = time.time()

    def info(self):
        import zray
        ctx = zray.get_runtime_context()
        return {"node_id": ctx.get_node_id(), "hostname": socket.gethostname(),
                "pid": os.getpid(), "gpu_ids": list(ctx.get_accelerator_ids().get("GPU", [])),
                "ip": _own_ip()}

    def free_port(self):
        with socket.socket() as s:
            s.bind(("", 0))
            return s.getsockname()[1]

    def poll(self, timeout_s):
        """Queued reports (and FINISHED once the loop returned); waits up to timeout_s for the
        first one."""
        out = []
        try:
            out.append(self._events.get(timeout=timeout_s))
            while True:
                out.append(self._events.get_nowait())
        except queue.Empty:
            pass
        return out

    def run(self, fn, config, context, storage, checkpoint, shards, backend, env):
        stats = {"pid": os.getpid(), "created": self._created, "run_start": time.time()}
        os.environ.update(env)
        start_checkpoint = _local_checkpoint(checkpoint, storage)
        session = TrainSession(context, storage, self._events.put, start_checkpoint, shards)
        set_session(session)
        if backend is not None:
            backend.on_worker_start(context)
        stats["backend_up"] = time.time()
        try:
            call_train_loop(fn, config)
        finally:
            stats["loop_end"] = time.time()
            if backend is not None:
                backend.on_worker_end(context)
            set_session(None)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        stats.update(backend_end=time.time(), cpu_s=usage.ru_utime + usage.ru_stime)
        self._events.put(WorkerStats(context.world_rank, stats))
        self._events.put(FINISHED)


def call_train_loop(fn, config):
    """fn(config) when it takes an argument, else fn()."""
    try:
        takes = len(inspect.signature(fn).parameters) > 0
    except (TypeError, ValueError):
        takes = True
    return fn(config if config is not None else {}) if takes else fn()


def _local_checkpoint(spec, storage):
    """The starting checkpoint from the driver: (path, None) for a worker on the driver's
    node; (path, packed files) for one elsewhere, which reads `path` when it shares the run's
    storage and unpacks the files into a temporary directory otherwise."""
    if spec is None:
        return None
    path, packed = spec
    if packed is None or storage.shared():
        return Checkpoint(path)
    return Checkpoint(unpack_directory(packed, tempfile.mkdtemp(prefix="zray_train_ckpt_")))


def _own_ip():
    """This host's address as others reach it (no packet is sent)."""
    from ..transport.host_ip import own_ip
    return own_ip()[0]
