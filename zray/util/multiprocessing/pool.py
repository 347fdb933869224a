"""zray.util.multiprocessing.Pool: the standard library's Pool API over zray actors.

Each pool process is an actor that runs the initializer once, when the pool is created (the
constructor waits for every process to be ready, so an initializer that fails raises there),
then runs batches (chunks) of calls. A chunk is one "task" in the standard library's sense:
with `maxtasksperchild=n` a process is retired after n chunks (it finishes what it was given,
then exits) and a fresh one, initializer included, takes its place.

Results keep the input order for map/imap; imap_unordered yields chunks as they finish. imap
and imap_unordered return iterators with `next(timeout=)`, raising
multiprocessing.TimeoutError when nothing is ready in time, as the standard library's do.
"""
import collections
import multiprocessing
import os
import threading

from ... import api as zray   # the public API, without importing the zray package from inside it
from ...exceptions import GetTimeoutError

TimeoutError = multiprocessing.TimeoutError

READY_TIMEOUT_S = 300.0   # how long the constructor waits for its processes (and initializer)


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


def _values(chunk):
    """The values of one finished chunk; the first failed item raises its exception."""
    out = []
    for ok, value in chunk:
        if not ok:
            raise value
        out.append(value)
    return out


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
                values.extend(_values(chunk))
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


class IMapIterator:
    """imap's results in input order; `next(timeout=)` as multiprocessing's IMapIterator."""

    def __init__(self, refs):
        self._refs = collections.deque(refs)
        self._buffer = collections.deque()

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()

    def next(self, timeout=None):
        while not self._buffer:
            if not self._refs:
                raise StopIteration
            try:
                chunk = zray.get(self._refs[0], timeout=timeout)
            except GetTimeoutError:
                raise TimeoutError("no result ready within the timeout") from None
            self._refs.popleft()
            self._buffer.extend(chunk)
        ok, value = self._buffer.popleft()
        if not ok:
            raise value
        return value


class IMapUnorderedIterator(IMapIterator):
    """imap_unordered's results as their chunks finish."""

    def next(self, timeout=None):
        while not self._buffer:
            if not self._refs:
                raise StopIteration
            ready, pending = zray.wait(list(self._refs), num_returns=1, timeout=timeout)
            if not ready:
                raise TimeoutError("no result ready within the timeout")
            self._refs = collections.deque(pending)
            self._buffer.extend(zray.get(ready[0]))
        ok, value = self._buffer.popleft()
        if not ok:
            raise value
        return value


class _Process:
    """One pool process: its actor and how many chunks it was given."""
    __slots__ = ("actor", "tasks")

    def __init__(self, actor):
        self.actor = actor
        self.tasks = 0


class Pool:
    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None,
                 context=None, ray_address=None, ray_remote_args=None):
        if processes is not None and (isinstance(processes, bool)
                                      or not isinstance(processes, int) or processes < 1):
            raise ValueError(f"processes must be a positive int, not {processes!r}")
        if maxtasksperchild is not None and (isinstance(maxtasksperchild, bool) or not isinstance(
                maxtasksperchild, int) or maxtasksperchild < 1):
            raise ValueError(f"maxtasksperchild must be a positive int or None, "
                             f"not {maxtasksperchild!r}")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if not zray.is_initialized():
            if ray_address or os.environ.get("ZRAY_ADDRESS") or os.environ.get("RAY_ADDRESS"):
                zray.init(address=ray_address)
            else:
                zray.init(num_cpus=processes)
        cpus = int(zray.cluster_resources().get("CPU", 0))
        if processes is None:
            processes = max(cpus, 1)
        elif processes > cpus:
            raise ValueError(f"a pool of {processes} processes was asked for, but the zray "
                             f"cluster has only {cpus} CPUs")
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._maxtasks = maxtasksperchild
        self._options = dict(ray_remote_args or {})
        self._options.setdefault("num_cpus", 0)
        self._procs = [self._new_process() for _ in range(processes)]
        self._next = 0
        self._retired = []      # (actor, its last chunk's ref) of processes retired, running
        self._closed = False
        self._lock = threading.Lock()
        self._wait_ready([p.actor for p in self._procs])

    def _new_process(self):
        return _Process(_PoolWorker.options(**self._options).remote(self._initializer,
                                                                    self._initargs))

    def _wait_ready(self, actors):
        try:
            zray.get([a.ping.remote() for a in actors], timeout=READY_TIMEOUT_S)
        except Exception:
            for actor in actors:
                zray.kill(actor)
            raise

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.terminate()

    def close(self):
        self._closed = True

    def terminate(self):
        self._closed = True
        for proc in self._procs:
            zray.kill(proc.actor)
        self._procs = []
        self._retired = []

    def join(self):
        if not self._closed:
            raise ValueError("Pool is still running; call close() or terminate() before join()")

    def _check_running(self):
        if self._closed:
            raise ValueError("Pool not running")

    # -- submitting ------------------------------------------------------------------------------
    def _submit(self, func, chunk, star):
        """Run one chunk on the next process (round robin); retire that process once it was
        given `maxtasksperchild` chunks: it runs them, then exits, and a new one replaces it."""
        with self._lock:
            index = self._next
            self._next = (self._next + 1) % len(self._procs)
            proc = self._procs[index]
            ref = proc.actor.run_chunk.remote(func, chunk, star)
            proc.tasks += 1
            if self._maxtasks is not None and proc.tasks >= self._maxtasks:
                proc.actor.__ray_terminate__.remote()   # after the calls already queued
                # Its handle is kept until its last chunk is done: dropping the last handle
                # of an actor may end it before the calls in flight.
                self._retired = [(a, r) for a, r in self._retired
                                 if not zray.wait([r], timeout=0)[0]]
                self._retired.append((proc.actor, ref))
                self._procs[index] = self._new_process()
        return ref

    def _submit_chunks(self, func, iterable, chunksize, star):
        items = list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(items), len(self._procs) * 4)
            chunksize = max(1, chunksize + (1 if extra else 0))
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive int, not {chunksize!r}")
        return [self._submit(func, items[i:i + chunksize], star)
                for i in range(0, len(items), chunksize)]

    def apply(self, func, args=(), kwds=None):
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds=None, callback=None, error_callback=None):
        self._check_running()
        ref = self._submit(_Bound(func, kwds or {}), [tuple(args)], True)
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
        return IMapIterator(self._submit_chunks(func, iterable, chunksize, star=False))

    def imap_unordered(self, func, iterable, chunksize=1):
        self._check_running()
        return IMapUnorderedIterator(self._submit_chunks(func, iterable, chunksize, star=False))


class _Bound:
    """func with keyword arguments, picklable (a lambda closure would need cloudpickle anyway)."""

    def __init__(self, func, kwds):
        self.func = func
        self.kwds = kwds

    def __call__(self, *args):
        return self.func(*args, **self.kwds)
