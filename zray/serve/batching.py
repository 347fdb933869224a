"""@serve.batch: concurrent calls of an async method are gathered into one call with a list.

Each caller passes one item and awaits its own result; the method receives a list (up to
max_batch_size items, gathered for at most batch_wait_timeout_s after the first) and returns a
list of the same length. One queue per instance (per function for a plain function).
"""
import asyncio
import functools
import inspect
import logging

logger = logging.getLogger("zray.serve")


class _BatchQueue:
    def __init__(self, fn, owner, settings):
        self.fn = fn
        self.owner = owner
        self.settings = settings
        self.queue = asyncio.Queue()
        self.running = 0
        self.task = None

    def put(self, args, kwargs):
        fut = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((args, kwargs, fut))
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._process())
        return fut

    async def _process(self):
        sem = asyncio.Semaphore(self.settings["max_concurrent_batches"])
        while True:
            first = await self.queue.get()
            batch = [first]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.settings["batch_wait_timeout_s"]
            size_fn = self.settings["batch_size_fn"]
            while True:
                size = size_fn([b[0][0] for b in batch]) if size_fn else len(batch)
                if size >= self.settings["max_batch_size"]:
                    break
                left = deadline - loop.time()
                try:
                    if left <= 0:
                        batch.append(self.queue.get_nowait())
                    else:
                        batch.append(await asyncio.wait_for(self.queue.get(), left))
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
            await sem.acquire()
            loop.create_task(self._run(batch, sem))

    async def _run(self, batch, sem):
        try:
            nargs = len(batch[0][0])
            columns = [[b[0][i] for b in batch] for i in range(nargs)]
            kw = {k: [b[1][k] for b in batch] for k in batch[0][1]}
            call_args = ([self.owner] if self.owner is not None else []) + columns
            try:
                results = await self.fn(*call_args, **kw)
                if not isinstance(results, (list, tuple)) or len(results) != len(batch):
                    raise TypeError(f"a @serve.batch function must return a list of the same length "
                                    f"as its input ({len(batch)}), got "
                                    f"{type(results).__name__}{'' if not hasattr(results, '__len__') else ' of length ' + str(len(results))}")
                for (_, _, fut), r in zip(batch, results):
                    if not fut.done():
                        fut.set_result(r)
            except Exception as exc:  # noqa: BLE001 - every caller gets it
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
        finally:
            sem.release()


def batch(_func=None, /, max_batch_size=10, batch_wait_timeout_s=0.01, max_concurrent_batches=1,
          batch_size_fn=None):
    if _func is not None and not callable(_func):
        raise TypeError("@serve.batch takes keyword arguments only, e.g. @serve.batch(max_batch_size=4)")
    _check(max_batch_size, batch_wait_timeout_s, max_concurrent_batches)

    def decorate(fn):
        if not (inspect.iscoroutinefunction(fn)):
            raise TypeError("Functions decorated with @serve.batch must be 'async def'")
        params = list(inspect.signature(fn).parameters)
        is_method = bool(params) and params[0] == "self"
        settings = {"max_batch_size": max_batch_size, "batch_wait_timeout_s": batch_wait_timeout_s,
                    "max_concurrent_batches": max_concurrent_batches, "batch_size_fn": batch_size_fn}
        queues = {}
        attr = f"__zray_batch_queue_{fn.__name__}"

        def queue_for(owner):
            if owner is None:
                q = queues.get("fn")
                if q is None:
                    q = queues["fn"] = _BatchQueue(fn, None, settings)
                return q
            q = owner.__dict__.get(attr)
            if q is None:
                q = _BatchQueue(fn, owner, settings)
                setattr(owner, attr, q)
            return q

        @functools.wraps(fn)
        async def wrapper(*args, **kwargs):
            if is_method:
                owner, args = args[0], args[1:]
            else:
                owner = None
            return await queue_for(owner).put(args, kwargs)

        def set_max_batch_size(n):
            _check(n, settings["batch_wait_timeout_s"], settings["max_concurrent_batches"])
            settings["max_batch_size"] = n

        def set_batch_wait_timeout_s(t):
            _check(settings["max_batch_size"], t, settings["max_concurrent_batches"])
            settings["batch_wait_timeout_s"] = t

        wrapper.set_max_batch_size = set_max_batch_size
        wrapper.set_batch_wait_timeout_s = set_batch_wait_timeout_s
        wrapper._get_max_batch_size = lambda: settings["max_batch_size"]
        wrapper._get_batch_wait_timeout_s = lambda: settings["batch_wait_timeout_s"]
        return wrapper

    if _func is not None:
        return decorate(_func)
    return decorate


def _check(max_batch_size, batch_wait_timeout_s, max_concurrent_batches):
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
        raise ValueError(f"max_batch_size must be an int >= 1, got {max_batch_size!r}")
    if isinstance(batch_wait_timeout_s, bool) or not isinstance(batch_wait_timeout_s, (int, float)) \
            or batch_wait_timeout_s < 0:
        raise ValueError(f"batch_wait_timeout_s must be a number >= 0, got {batch_wait_timeout_s!r}")
    if isinstance(max_concurrent_batches, bool) or not isinstance(max_concurrent_batches, int) \
            or max_concurrent_batches < 1:
        raise ValueError(f"max_concurrent_batches must be an int >= 1, got {max_concurrent_batches!r}")
