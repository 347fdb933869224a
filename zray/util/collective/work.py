"""The waitable handle of an `async_op=True` call, and the per-group ordering of calls."""
import concurrent.futures
import threading

from .errors import CollectiveTimeoutError


class Work:
    """A pending collective: wait(), is_completed(), result(). Errors re-raise at wait()."""

    def __init__(self, future, group, rank, op_name):
        self._future, self._group, self._rank, self._op = future, group, rank, op_name

    def is_completed(self):
        return self._future.done()

    def wait(self, timeout=None):
        """Block until done (seconds; None: the call's own timeout_ms bounds it)."""
        try:
            self._future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise CollectiveTimeoutError(f"{self._op} not complete after wait({timeout})",
                                         group=self._group, rank=self._rank) from None
        return True

    def result(self, timeout=None):
        self.wait(timeout)
        return self._future.result()

    def exception(self, timeout=None):
        return self._future.exception(timeout=timeout)

    def __repr__(self):
        state = "done" if self.is_completed() else "pending"
        return f"<Work {self._op} group={self._group!r} rank={self._rank} {state}>"


class Sequencer:
    """Runs a group's calls one at a time, in call order: synchronous calls inline (no thread
    hop), asynchronous ones on one worker thread; a synchronous call waits for those before."""

    def __init__(self, name):
        self._name = name
        self.lock = threading.Lock()
        self._pool = None
        self.pending = 0
        self._count_lock = threading.Lock()

    def run_sync(self, fn, *args):
        # Read without the count lock: an async call issued before this one by any thread
        # counted itself (under the lock) before returning its Work.
        if self.pending:
            return self.run_async(lambda: fn(*args)).result()
        with self.lock:
            return fn(*args)

    def run_async(self, fn):
        with self._count_lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix=f"zray-collective-{self._name}")
            self.pending += 1

        def task():
            try:
                with self.lock:
                    return fn()
            finally:
                with self._count_lock:
                    self.pending -= 1
        return self._pool.submit(task)

    def shutdown(self):
        if self._pool is not None:
            self._pool.shutdown(wait=False)
