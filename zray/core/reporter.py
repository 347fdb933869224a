"""What a process tells its node now and then: actor calls it ran, and its metrics.

Actor calls go straight from caller to actor, never through a daemon, so the actor's worker
reports them itself: each call that ends appends one tuple to a list (no message; a call that
still runs at a report is reported once as running), and a
background thread sends the list to the node at most every REPORT_INTERVAL_S (0.5 s;
ZRAY_REPORT_INTERVAL_S) as one WORKER_REPORT, together with the process's metric values
(zray.util.metrics) when they changed, and the debugger ports of its paused threads when they
changed (zray.util.debug). The thread exists only in processes that have something
to report and sleeps while there is nothing. A worker flushes once more before it exits. The
list is bounded (MAX_PENDING): a node that cannot keep up loses the oldest calls of the state
API's history, never memory.
"""
import logging
import os
import threading
import time

from ..transport import wire

log = logging.getLogger("zray.core")
REPORT_INTERVAL_S = float(os.environ.get("ZRAY_REPORT_INTERVAL_S", "0.5"))
MAX_PENDING = 100_000
MAX_TOLD_WAITING = 10_000   # tasks waiting for arguments the node lists, per owner


class Reporter:
    def __init__(self, send, daemon_address):
        self._send = send
        self._daemon = daemon_address
        self._events = []
        self._running = {}              # task_id -> (spec, actor_id, class_name, start s)
        self._told_running = set()      # task ids the node was told run
        self._waiting = {}              # task_id -> PendingTask waiting for its arguments
        self._told_waiting = set()      # task ids the node was told wait
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._closed = False
        self._paused_ports = None       # debugger ports of paused threads, when changed
        self.metrics_source = None      # () -> snapshot list | None when unchanged
        self.is_pending = None          # task_id -> bool: its owner still holds it (ended: no)
        self.dropped = 0

    @property
    def closed(self):
        return self._closed

    def call_started(self, started):
        """An actor call starts: (spec, actor_id, class_name, start s). The node hears of it
        only if it still runs at the next report (a long call shows as RUNNING)."""
        self._running[started[0].task_id] = started
        if not self._wake.is_set():
            self._wake.set()
            if self._thread is None:
                self._start()

    def args_waiting(self, task):
        """A submitted task (or actor call) waits for its arguments here, in its owner (or an
        actor call waits in its caller's queue). The node hears of it if it still waits at
        the next report, and again when it stops."""
        self._waiting[task.spec.task_id] = task
        if not self._wake.is_set():
            self._wake.set()
            if self._thread is None:
                self._start()

    def call_ended(self, event):
        """An actor call ended: (spec, actor_id, class_name, start s, end s, (error type,
        message) | None), formatted for the node when sent."""
        task_id = event[0].task_id
        self._running.pop(task_id, None)
        self._told_running.discard(task_id)
        events = self._events
        if len(events) >= MAX_PENDING:
            del events[:MAX_PENDING // 10]
            self.dropped += MAX_PENDING // 10
        events.append(event)
        if not self._wake.is_set():
            self._wake.set()
            if self._thread is None:
                self._start()

    def debugger_changed(self, ports):
        """The ports of this process's threads paused in a debugger (zray.util.debug), now."""
        with self._lock:
            self._paused_ports = list(ports)
        self.metrics_changed()

    def metrics_changed(self):
        if self._thread is None:
            self._start()
        self._wake.set()

    def _start(self):
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._loop, name="zray-report", daemon=True)
            self._thread.start()

    def _loop(self):
        while not self._closed:
            # Woken by a call, a waiting task or a metric; while the node was told of tasks
            # that wait for arguments, look every interval whether they still do.
            self._wake.wait(REPORT_INTERVAL_S if self._told_waiting else None)
            time.sleep(REPORT_INTERVAL_S)
            self.flush()

    def flush(self):
        """Send what is pending now (any thread)."""
        with self._lock:
            self._wake.clear()          # before the swap: a later append sets it again
            events, self._events = self._events, []
            told = self._told_running
            running = [(spec, actor_id, class_name, start, None, None)
                       for spec, actor_id, class_name, start in list(self._running.values())
                       if spec.task_id not in told]
            told.update(item[0].task_id for item in running)
            told.intersection_update(list(self._running))   # calls that ended meanwhile
            waiting, resolved = self._waiting_changes()
            metrics = self.metrics_source() if self.metrics_source is not None else None
            paused, self._paused_ports = self._paused_ports, None
            if not events and not metrics and not running and not waiting and not resolved \
                    and paused is None:
                return
            try:
                self._send(self._daemon, wire.WORKER_REPORT,
                           ([_event(e) for e in running + events], metrics, waiting, resolved,
                            paused))
            except Exception:       # shutting down, or the node is gone: nothing to tell
                log.debug("a WORKER_REPORT could not be sent", exc_info=True)

    def _waiting_changes(self):
        """([row of a task that waits, not told yet], [task id hex told that stopped])."""
        waiting, resolved = [], []
        told = self._told_waiting
        pending = self.is_pending
        for task_id, task in list(self._waiting.items()):
            if _waits_here(task) and (pending is None or pending(task_id)):
                if task_id not in told and len(told) < MAX_TOLD_WAITING:
                    told.add(task_id)
                    waiting.append(_waiting_row(task))
                continue
            del self._waiting[task_id]
            if task_id in told:
                told.discard(task_id)
                resolved.append(task_id.hex())
        return waiting, resolved

    def close(self):
        self.flush()
        self._closed = True
        self._wake.set()


def _event(item):
    """The wire form of a call (wire.WORKER_REPORT): (task_id hex, attempt, name, actor_id
    hex, job_id, func_or_class_name, parent_task_id hex, start_ms, end_ms (None: it runs),
    error_type, error_message)."""
    spec, actor_id, class_name, start, end, error = item
    parent = spec.parent_task_id
    error_type, message = error if error else (None, None)
    return (spec.task_id.hex(), spec.attempt, spec.name,
            actor_id.hex() if isinstance(actor_id, bytes) else actor_id, spec.job_id,
            f"{class_name}.{(spec.extra or {}).get('method')}",
            parent.hex() if isinstance(parent, bytes) else parent,
            round(start * 1000, 3), round(end * 1000, 3) if end is not None else None,
            error_type, message)


def _waits_here(task):
    """Still in its owner: arguments missing, or an actor call queued in its caller (the
    actor is not ready, or earlier calls have not left; one failed there, its actor dead,
    has ended: Reporter.is_pending says so)."""
    if task.cancelled:
        return False
    return task.deps_left > 0 or (task.actor is not None and not task.sent)


def _waiting_row(task):
    """(task_id hex, attempt, name, actor_id hex, job_id, func_or_class_name, parent hex,
    arguments still awaited, is an actor call)."""
    spec = task.spec
    parent = spec.parent_task_id
    actor_id = (spec.extra or {}).get("actor_id")
    return (spec.task_id.hex(), spec.attempt, spec.name,
            actor_id.hex() if isinstance(actor_id, bytes) else actor_id, spec.job_id, spec.name,
            parent.hex() if isinstance(parent, bytes) else parent, task.deps_left,
            task.actor is not None)


def now_ms():
    return time.time() * 1000.0
