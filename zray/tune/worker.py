"""The trial actor: runs one trial at a time, reused across trials.

Protocol (driver -> actor, one call outstanding per actor)::

    start(spec)            -> Reply        # set up, run to the first report (or the end)
    step(decision, save)   -> Reply        # "continue": report() returns; "stop": it raises
    Reply.kind: "result" (metrics, maybe a checkpoint) | "returned" (ended by itself) |
                "stopped" (after a stop); an exception in the trainable is raised by the call.

A function trainable runs in a thread of the actor; `report()` hands its result to the pending
call and blocks until the next decision, so results stream back without polling and the
scheduler decides before the trial goes on.
"""
import logging
import os
import queue
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from . import session as _session_mod
from .checkpoint import Checkpoint
from .trainable import is_class_trainable

logger = logging.getLogger("zray.tune")

STOP_GRACE_S = 30.0


@dataclass(frozen=True)
class TrialSpec:
    trial_id: str
    trial_name: str
    trial_dir: str
    experiment_name: str
    experiment_dir: str
    config: dict
    restore_path: Optional[str] = None
    counters: dict = field(default_factory=dict)   # training_iteration, time_total_s at restore
    resources: dict = field(default_factory=dict)
    checkpoint_index: int = 0


@dataclass(frozen=True)
class Reply:
    kind: str
    metrics: Optional[dict] = None
    checkpoint: Optional[str] = None     # persisted path reported with these metrics
    saved: Optional[str] = None          # a checkpoint saved on request (class trainables)
    dirty: bool = False                  # a trial thread ignored its stop: don't reuse the actor


class _StopTrial(BaseException):
    """Raised inside report() when the trial is to stop (BaseException: user code rarely
    catches it)."""


_HOST = socket.gethostname()
_IP = None


def _node_ip():
    """This host's outbound address, without a DNS lookup (gethostbyname can take 100 ms)."""
    global _IP
    if _IP is None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect(("10.255.255.255", 1))    # UDP: chooses a route, sends nothing
            _IP = s.getsockname()[0]
        except OSError:
            _IP = "127.0.0.1"
        finally:
            s.close()
    return _IP


def _auto_fields(metrics):
    now = time.time()
    metrics.setdefault("timestamp", int(now))
    metrics["date"] = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
    metrics["pid"] = os.getpid()
    metrics["hostname"] = _HOST
    metrics["node_ip"] = _node_ip()
    return metrics


class _Session:
    """What report/get_checkpoint/get_context see while a trial runs here."""

    def __init__(self, spec, out_queue, go):
        self.trial_id = spec.trial_id
        self.trial_name = spec.trial_name
        self.trial_dir = spec.trial_dir
        self.experiment_name = spec.experiment_name
        self.experiment_dir = spec.experiment_dir
        self.resources = spec.resources
        self._restore = spec.restore_path
        self._out = out_queue
        self._go = go
        self.decision = "continue"
        self._ckpt_index = spec.checkpoint_index
        self._iteration = spec.counters.get("training_iteration", 0)
        self._time_total = spec.counters.get("time_total_s", 0.0)
        self._since_restore = 0
        self._start = self._last = time.time()

    def get_checkpoint(self):
        return Checkpoint(self._restore) if self._restore else None

    def persist(self, checkpoint):
        path = getattr(checkpoint, "path", None) or os.fspath(checkpoint)
        name = os.path.basename(os.path.normpath(path))
        if os.path.dirname(os.path.abspath(path)) == os.path.abspath(self.trial_dir) and \
                name.startswith("checkpoint_"):
            # Already in the trial's directory (a Train run in this trial writes its
            # checkpoints there): adopted as it is, and later ones are numbered after it.
            suffix = name[len("checkpoint_"):]
            if suffix.isdigit():
                self._ckpt_index = max(self._ckpt_index, int(suffix) + 1)
            return os.path.abspath(path)
        dest = os.path.join(self.trial_dir, f"checkpoint_{self._ckpt_index:06d}")
        self._ckpt_index += 1
        if os.path.abspath(path) != os.path.abspath(dest):
            if os.path.exists(dest):
                shutil.rmtree(dest)
            shutil.copytree(path, dest)
        return dest

    def report(self, metrics, checkpoint=None):
        now = time.time()
        self._iteration += 1
        self._since_restore += 1
        self._time_total += now - self._last
        result = dict(metrics)
        result.update(time_this_iter_s=now - self._last, time_total_s=self._time_total,
                      training_iteration=self._iteration, time_since_restore=now - self._start,
                      iterations_since_restore=self._since_restore)
        self._last = now
        path = None
        if checkpoint is not None:
            path = self.persist(checkpoint)
            result["checkpoint_dir_name"] = os.path.basename(path)
            result["should_checkpoint"] = True
        self._out.put(Reply("result", _auto_fields(result), path))
        self._go.acquire()
        self._last = time.time()      # the driver's decision time is not the trial's
        if self.decision == "stop":
            raise _StopTrial()


class _FunctionRun:
    def __init__(self, fn, spec):
        self.out = queue.SimpleQueue()
        self.go = threading.Semaphore(0)
        self.session = _Session(spec, self.out, self.go)
        self.fn = fn
        self.config = spec.config
        self.thread = threading.Thread(target=self._main, name=f"trial-{spec.trial_id}",
                                       daemon=True)

    def _main(self):
        _session_mod._set_session(self.session)
        try:
            ret = self.fn(self.config)
            if isinstance(ret, dict) and ret:
                self.session.report(ret)
            self.out.put(Reply("returned"))
        except _StopTrial:
            self.out.put(Reply("stopped"))
        except BaseException as e:   # noqa: B036 - handed to the driver as the trial's error
            self.out.put(e)

    def _next(self, timeout=None):
        try:
            item = self.out.get(timeout=timeout)
        except queue.Empty:
            return Reply("stopped", dirty=True)
        if isinstance(item, BaseException):
            raise item
        return item

    def start(self):
        self.thread.start()
        return self._next()

    def step(self, decision, save):
        self.session.decision = decision
        self.go.release()
        return self._next(STOP_GRACE_S if decision == "stop" else None)


class _ClassRun:
    def __init__(self, instance, spec):
        self.inst = instance
        self.spec = spec
        self.persist = _Session(spec, None, None).persist

    def _save(self):
        import tempfile
        tmp = tempfile.mkdtemp(prefix="zray_tune_ckpt_")
        try:
            self.inst.save(tmp)
            return self.persist(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def start(self):
        return self._result()

    def _result(self, saved=None):
        result = _auto_fields(self.inst.train())
        return Reply("result", result, None, saved)

    def step(self, decision, save):
        saved = self._save() if save else None
        if decision == "stop":
            return Reply("stopped", None, None, saved)
        return self._result(saved)


class TrialActor:
    """Hosts trials of one trainable, one after the other."""

    def __init__(self, trainable):
        self._trainable = trainable
        self._is_class = is_class_trainable(trainable)
        self._instance = None
        self._run = None

    def start(self, spec):
        try:
            return self._start(spec)
        except BaseException:
            self._instance = None      # a trainable that failed is not reused
            raise

    def _start(self, spec):
        if self._is_class:
            inst = self._instance
            if inst is None or not inst.reset(spec.config, spec):
                if inst is not None:
                    inst.stop()
                inst = self._instance = self._trainable(config=spec.config, storage=spec)
            if spec.restore_path:
                inst.restore(spec.restore_path, spec.counters)
            else:
                inst._iteration = spec.counters.get("training_iteration", 0)
            self._run = _ClassRun(inst, spec)
        else:
            self._run = _FunctionRun(self._trainable, spec)
        os.makedirs(spec.trial_dir, exist_ok=True)
        return self._run.start()

    def step(self, decision, save=False):
        try:
            return self._run.step(decision, save)
        except BaseException:
            self._instance = None
            raise

    def shutdown(self):
        if self._instance is not None:
            self._instance.stop()
            self._instance = None
        return True
