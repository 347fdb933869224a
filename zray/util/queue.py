"""zray.util.queue.Queue: a FIFO queue shared by tasks and actors, kept by an async actor."""
import asyncio
import queue as _stdlib_queue

from .. import api as zray   # the public API, without importing the zray package from inside it


class Empty(_stdlib_queue.Empty):
    """get() found nothing (within the timeout)."""


class Full(_stdlib_queue.Full):
    """put() found no room (within the timeout)."""


def _check_timeout(timeout):
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


class Queue:
    def __init__(self, maxsize=0, actor_options=None):
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, got {maxsize!r}")
        self.maxsize = maxsize
        self.actor = _QueueActor.options(**(actor_options or {})).remote(maxsize)

    def __len__(self):
        return self.size()

    def size(self):
        return zray.get(self.actor.qsize.remote())

    def qsize(self):
        return self.size()

    def empty(self):
        return zray.get(self.actor.empty.remote())

    def full(self):
        return zray.get(self.actor.full.remote())

    def put(self, item, block=True, timeout=None):
        if not block:
            return self.put_nowait(item)
        _check_timeout(timeout)
        try:
            zray.get(self.actor.put.remote(item, timeout))
        except Full:
            raise Full() from None

    async def put_async(self, item, block=True, timeout=None):
        if not block:
            return self.put_nowait(item)
        _check_timeout(timeout)
        try:
            await self.actor.put.remote(item, timeout)
        except Full:
            raise Full() from None

    def get(self, block=True, timeout=None):
        if not block:
            return self.get_nowait()
        _check_timeout(timeout)
        try:
            return zray.get(self.actor.get.remote(timeout))
        except Empty:
            raise Empty() from None

    async def get_async(self, block=True, timeout=None):
        if not block:
            return self.get_nowait()
        _check_timeout(timeout)
        try:
            return await self.actor.get.remote(timeout)
        except Empty:
            raise Empty() from None

    def put_nowait(self, item):
        try:
            zray.get(self.actor.put_nowait.remote(item))
        except Full:
            raise Full() from None

    def put_nowait_batch(self, items):
        if not isinstance(items, (list, tuple)):
            raise TypeError("put_nowait_batch takes a list of items")
        try:
            zray.get(self.actor.put_nowait_batch.remote(list(items)))
        except Full:
            raise Full(f"Cannot add {len(items)} items to queue of size "
                       f"{self.size()} and maxsize {self.maxsize}.") from None

    def get_nowait(self):
        try:
            return zray.get(self.actor.get_nowait.remote())
        except Empty:
            raise Empty() from None

    def get_nowait_batch(self, num_items):
        if isinstance(num_items, bool) or not isinstance(num_items, int):
            raise TypeError("num_items must be an int")
        if num_items < 0:
            raise ValueError("num_items must be non-negative")
        try:
            return zray.get(self.actor.get_nowait_batch.remote(num_items))
        except Empty:
            raise Empty(f"Cannot get {num_items} items from queue of size {self.size()}.") from None

    def shutdown(self, force=False, grace_period_s=5):
        """End the queue's actor: at once with force, else after the calls it has queued,
        killing it if it is not gone within grace_period_s."""
        actor, self.actor = self.actor, None
        if actor is None:
            return
        if force:
            zray.kill(actor, no_restart=True)
            return
        done = actor.__ray_terminate__.remote()
        try:
            ready, _ = zray.wait([done], timeout=grace_period_s)
            if ready:
                zray.get(ready[0])
                return
        except Exception:   # the actor is gone (its exit fails the call, as in Ray): done
            return
        zray.kill(actor, no_restart=True)


@zray.remote(num_cpus=0)
class _QueueActor:
    def __init__(self, maxsize):
        self.queue = asyncio.Queue(maxsize)
        self.maxsize = maxsize

    async def qsize(self):
        return self.queue.qsize()

    async def empty(self):
        return self.queue.empty()

    async def full(self):
        return self.queue.full()

    async def put(self, item, timeout=None):
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            raise Full() from None

    async def get(self, timeout=None):
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty() from None

    async def put_nowait(self, item):
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Full() from None

    async def put_nowait_batch(self, items):
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            raise Full()
        for item in items:
            self.queue.put_nowait(item)

    async def get_nowait(self):
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty() from None

    async def get_nowait_batch(self, num_items):
        if num_items > self.queue.qsize():
            raise Empty()
        return [self.queue.get_nowait() for _ in range(num_items)]
