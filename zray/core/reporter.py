"""What a process tells its node now and then: actor calls it ran, and its metrics.

Actor calls go straight from caller to actor, never through a daemon, so the actor's worker
reports them itself: each call that ends appends one tuple to a list (no message), and a
background thread sends the list to the node at most every REPORT_INTERVAL_S (0.5 s;
ZRAY_REPORT_INTERVAL_S) as one WORKER_REPORT, together with the process's metric values
(zray.util.metrics) when they changed. The thread exists only in processes that have something
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


class Reporter:
    def __init__(self, send, daemon_address):
        self._send = send
        self._daemon = daemon_address
        self._events = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._closed = False
        self.metrics_source = None      # () -> snapshot list | None when unchanged
        self.dropped = 0

    @property
    def closed(self):
        return self._closed

    def call_ended(self, event):
        """An actor call ended: (task_id hex, attempt, name, actor_id hex, job_id,
        func_or_class_name, parent_task_id hex, start_ms, end_ms, error_type, error_message)."""
        events = self._events
        if len(events) >= MAX_PENDING:
            del events[:MAX_PENDING // 10]
            self.dropped += MAX_PENDING // 10
        events.append(event)
        if not self._wake.is_set():
            self._wake.set()
            if self._thread is None:
                self._start()

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
            self._wake.wait()           # set by a call that ended or a metric that changed
            time.sleep(REPORT_INTERVAL_S)
            self.flush()

    def flush(self):
        """Send what is pending now (any thread)."""
        with self._lock:
            self._wake.clear()          # before the swap: a later append sets it again
            events, self._events = self._events, []
            metrics = self.metrics_source() if self.metrics_source is not None else None
            if not events and not metrics:
                return
            try:
                self._send(self._daemon, wire.WORKER_REPORT, (events, metrics))
            except Exception:       # shutting down, or the node is gone: nothing to tell
                log.debug("a WORKER_REPORT could not be sent", exc_info=True)

    def close(self):
        self.flush()
        self._closed = True
        self._wake.set()


def now_ms():
    return round(time.time() * 1000, 3)   # ms, to the microsecond (timelines need it)
