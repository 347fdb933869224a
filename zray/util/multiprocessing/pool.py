"""zray.util.multiprocessing.Pool: the standard library's Pool API over zray actors.

Each pool process is an actor that runs the initializer once, then batches (chunks) of calls.
Results keep the input order for map/imap; imap_unordered yields chunks as they finish.
"""
import itertools
import multiprocessing
import os
import threading

from ... import api as zray   # the public API, without importing the zray package from inside it

TimeoutError = multiprocessing.TimeoutError


@zray.remote
class _PoolWorker:
    def __init__(self, initializer, initargs):
        if initializer is not None:
            initializer(*initargs)

    def run_chunk(self, func, chunk, star):
        """[(ok, value)] for each item, so one failure does not hide the others' results."""
        out = []
        for args in chunk:
            try:
                out.append((True, func(*args) if star else func(args)))
            except Exception as exc:
                out.append((False, exc))
        return out

    def ping(self):
        return os.getpid()


class AsyncResult:
    """The result of apply_async/map_async: get, wait, ready, successful."""

    def __init__(self, refs, single, callback=None, error_callback=None):
        self._refs = refs
        self._single = single
        self._value = None
        self._error = None
        self._done = threading.Event()
        self._callback = callback
        self._error_callback = error_callback
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self):
        try:
            values = []
            for chunk in zray.get(self._refs):
                for ok, value in chunk:
                    if not ok:
                        raise value
                    values.append(value)
            self._value = values[0] if self._single else values
            if self._callback is not None:
                self._callback(self._value)
        except Exception as exc:
            self._error = exc
            if self._error_callback is not None:
                self._error_callback(exc)
        finally:
            self._done.set()

    def get(self, timeout=None):
        if not self._done.wait(timeout):
            raise TimeoutError("result not ready within the timeout")
        if self._error is not None:
            raise self._error
        return self._value

    def wait(self, timeout=None):
        self._done.wait(timeout)

    def ready(self):
        return self._done.is_set()

    def successful(self):
        if not self.ready():
            raise ValueError("the result is not ready")
        return self._error is None


class Pool:
    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None,
                 context=None, ray_address=None, ray_remote_args=None):
        if not zray.is_initialized():
            zray.init(address=ray_address)
        if processes is None:
            processes = int(zray.cluster_resources().get("CPU", 1)) or 1
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError("processes must be a positive int")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        options = dict(ray_remote_args or {})
        options.setdefault("num_cpus", 0)
        self._actors = [_PoolWorker.options(**options).remote(initializer, tuple(initargs))
                        for _ in range(processes)]
        self._rr = itertools.cycle(range(processes))
        self._closed = False
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.terminate()

    def close(self):
        self._closed = True

    def terminate(self):
        self._closed = True
        for actor in self._actors:
            zray.kill(actor)
        self._actors = []

    def join(self):
        if not self._closed:
            raise ValueError("Pool is still running; call close() or terminate() before join()")

    def _check_running(self):
        if self._closed:
            raise ValueError("Pool not running")

    # -- submitting ------------------------------------------------------------------------------
    def _submit_chunks(self, func, iterable, chunksize, star):
        items = list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(items), len(self._actors) * 4)
            chunksize = max(1, chunksize + (1 if extra else 0))
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        refs = []
        with self._lock:
            for i in range(0, len(items), chunksize):
                actor = self._actors[next(self._rr)]
                refs.append(actor.run_chunk.remote(func, items[i:i + chunksize], star))
        return refs

    def apply(self, func, args=(), kwds=None):
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds=None, callback=None, error_callback=None):
        self._check_running()
        kwds = kwds or {}
        call = _Bound(func, kwds)
        with self._lock:
            actor = self._actors[next(self._rr)]
            ref = actor.run_chunk.remote(call, [tuple(args)], True)
        return AsyncResult([ref], single=True, callback=callback, error_callback=error_callback)

    def map(self, func, iterable, chunksize=None):
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        self._check_running()
        refs = self._submit_chunks(func, iterable, chunksize, star=False)
        return AsyncResult(refs, single=False, callback=callback, error_callback=error_callback)

    def starmap(self, func, iterable, chunksize=None):
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        self._check_running()
        refs = self._submit_chunks(func, [tuple(a) for a in iterable], chunksize, star=True)
        return AsyncResult(refs, single=False, callback=callback, error_callback=error_callback)

    def imap(self, func, iterable, chunksize=1):
        self._check_running()
        for ref in self._submit_chunks(func, iterable, chunksize, star=False):
            for ok, value in zray.get(ref):
                if not ok:
                    raise value
                yield value

    def imap_unordered(self, func, iterable, chunksize=1):
        self._check_running()
        pending = self._submit_chunks(func, iterable, chunksize, star=False)
        while pending:
            ready, pending = zray.wait(pending, num_returns=1)
            for ok, value in zray.get(ready[0]):
                if not ok:
                    raise value
                yield value


class _Bound:
    """func with keyword arguments, picklable (a lambda closure would need cloudpickle anyway)."""

    def __init__(self, func, kwds):
        self.func = func
        self.kwds = kwds

    def __call__(self, *args):
        return self.func(*args, **self.kwds)
