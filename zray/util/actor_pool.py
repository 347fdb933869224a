"""ActorPool: hand work to a fixed set of actors, each doing one item at a time."""
import collections

from .. import api as zray   # the public API, without importing the zray package from inside it


class ActorPool:
    def __init__(self, actors):
        self._idle = list(actors)
        self._ref_to_actor = {}            # ObjectRef -> (submission index, actor)
        self._index_to_ref = {}
        self._next_index = 0
        self._next_return = 0
        self._backlog = collections.deque()   # (fn, value) waiting for an idle actor

    def map(self, fn, values):
        """Results of fn(actor, v) for each value, in the order of values."""
        self._drain_for_new_work()
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn, values):
        """Results of fn(actor, v) for each value, as they finish."""
        self._drain_for_new_work()
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next_unordered()

    def submit(self, fn, value):
        """Run fn(actor, value) on an idle actor, or once one is free."""
        if self._idle:
            actor = self._idle.pop()
            ref = fn(actor, value)
            self._ref_to_actor[ref] = (self._next_index, actor)
            self._index_to_ref[self._next_index] = ref
            self._next_index += 1
        else:
            self._backlog.append((fn, value))

    def has_next(self):
        return bool(self._ref_to_actor) or bool(self._backlog)

    def get_next(self, timeout=None, ignore_if_timedout=False):
        """The next result in submission order."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return >= self._next_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered()")
        ref = self._index_to_ref[self._next_return]
        if timeout is not None:
            ready, _ = zray.wait([ref], timeout=timeout)
            if not ready:
                if ignore_if_timedout:
                    del self._index_to_ref[self._next_return]
                    self._next_return += 1
                    return None
                raise TimeoutError("Timed out waiting for result")
        del self._index_to_ref[self._next_return]
        self._next_return += 1
        _, actor = self._ref_to_actor.pop(ref)
        self._return_actor(actor)
        return zray.get(ref)

    def get_next_unordered(self, timeout=None, ignore_if_timedout=False):
        """Whichever result finishes first."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        ready, _ = zray.wait(list(self._ref_to_actor), num_returns=1, timeout=timeout)
        if not ready:
            if ignore_if_timedout:
                return None
            raise TimeoutError("Timed out waiting for result")
        ref = ready[0]
        index, actor = self._ref_to_actor.pop(ref)
        self._index_to_ref.pop(index, None)
        self._return_actor(actor)
        return zray.get(ref)

    def has_free(self):
        return bool(self._idle) and not self._backlog

    def pop_idle(self):
        """Take an idle actor out of the pool (None if none is idle)."""
        if self.has_free():
            return self._idle.pop()
        return None

    def push(self, actor):
        """Add an actor to the pool."""
        busy = {a for _, a in self._ref_to_actor.values()}
        if actor in self._idle or actor in busy:
            raise ValueError("Actor already belongs to this ActorPool")
        self._return_actor(actor)

    def _return_actor(self, actor):
        self._idle.append(actor)
        if self._backlog:
            fn, value = self._backlog.popleft()
            self.submit(fn, value)

    def _drain_for_new_work(self):
        # Results from an earlier map that were never read would be mistaken for this one's.
        while self.has_next():
            try:
                self.get_next_unordered(timeout=0)
            except TimeoutError:
                self.get_next_unordered()
