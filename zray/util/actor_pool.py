"""ActorPool: hand work to a fixed set of actors, each doing one item at a time.

What `fn(actor, value)` returns is a submission's *future*: one ObjectRef, or a list of them
(a method with `num_returns=2`), whose result is then the list of values.
"""
import collections

from .. import api as zray   # the public API, without importing the zray package from inside it
from ..exceptions import ActorDiedError
from ..objects.object_ref import ObjectRef

_TIMEOUT_TEXT = "Timed out waiting for result"


def _refs_of(future):
    if isinstance(future, ObjectRef):
        return [future]
    if isinstance(future, (list, tuple)) and future and all(isinstance(r, ObjectRef) for r in future):
        return list(future)
    raise TypeError("the function given to ActorPool must return the ObjectRef of an actor call "
                    f"(or a list of them), got {type(future).__name__}")


class ActorPool:
    def __init__(self, actors):
        self._idle = list(actors)
        self._submitted = {}               # submission index -> (future, actor)
        self._next_index = 0               # index of the next submission
        self._backlog = collections.deque()   # (fn, value) waiting for an idle actor

    def map(self, fn, values):
        """Results of fn(actor, v) for each value, in the order of values. Results of earlier
        submissions that were never read are dropped, as Ray does."""
        self._drop_unread()
        for v in values:
            self.submit(fn, v)

        def results():
            while self.has_next():
                yield self.get_next()
        return results()

    def map_unordered(self, fn, values):
        """Results of fn(actor, v) for each value, as they finish."""
        self._drop_unread()
        for v in values:
            self.submit(fn, v)

        def results():
            while self.has_next():
                yield self.get_next_unordered()
        return results()

    def submit(self, fn, value):
        """Run fn(actor, value) on an idle actor, or once one is free."""
        if self._idle:
            actor = self._idle.pop()
            future = fn(actor, value)
            _refs_of(future)
            self._submitted[self._next_index] = (future, actor)
            self._next_index += 1
        else:
            self._backlog.append((fn, value))

    def has_next(self):
        return bool(self._submitted) or bool(self._backlog)

    def get_next(self, timeout=None, ignore_if_timedout=False):
        """The next result in submission order. With `ignore_if_timedout`, a result not ready
        within the timeout is skipped (its actor goes back to the pool) and TimeoutError
        says so."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        if not self._submitted:
            raise ValueError(f"{len(self._backlog)} submissions wait for an actor, but the pool "
                             "has none left (its actors died)")
        index = min(self._submitted)    # the oldest unread (get_next_unordered may skip ahead)
        future, actor = self._submitted[index]
        if timeout is not None:
            refs = _refs_of(future)
            ready, _ = zray.wait(refs, num_returns=len(refs), timeout=timeout)
            if len(ready) < len(refs):
                if not ignore_if_timedout:
                    raise TimeoutError(_TIMEOUT_TEXT)
                self._forget(index)
                self._return_actor(actor)
                raise TimeoutError(f"{_TIMEOUT_TEXT}; the submission {future} is ignored")
        self._forget(index)
        return self._result(future, actor)

    def get_next_unordered(self, timeout=None, ignore_if_timedout=False):
        """Whichever result finishes first."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        owner_of = {}
        for index, (future, _) in self._submitted.items():
            for ref in _refs_of(future):
                owner_of[ref] = index
        ready, _ = zray.wait(list(owner_of), num_returns=1, timeout=timeout)
        if not ready:
            if not ignore_if_timedout:
                raise TimeoutError(_TIMEOUT_TEXT)
            index = min(self._submitted)
            future, actor = self._submitted[index]
            self._forget(index)
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMEOUT_TEXT}; the submission {future} is ignored")
        index = owner_of[ready[0]]
        future, actor = self._submitted[index]
        self._forget(index)
        return self._result(future, actor)

    def has_free(self):
        return bool(self._idle) and not self._backlog

    def pop_idle(self):
        """Take an idle actor out of the pool (None if none is idle)."""
        if self.has_free():
            return self._idle.pop()
        return None

    def push(self, actor):
        """Add an actor to the pool."""
        busy = {a for _, a in self._submitted.values()}
        if actor in self._idle or actor in busy:
            raise ValueError("Actor already belongs to this ActorPool")
        self._return_actor(actor)

    def _forget(self, index):
        del self._submitted[index]

    def _result(self, future, actor):
        alive = True
        try:
            return zray.get(future)
        except ActorDiedError:
            alive = False     # a dead actor would take every later submission and fail it
            raise
        finally:
            self._return_actor(actor, alive)

    def _return_actor(self, actor, alive=True):
        if alive:
            self._idle.append(actor)
        if self._backlog and self._idle:
            fn, value = self._backlog.popleft()
            self.submit(fn, value)

    def _drop_unread(self):
        # Results of earlier submissions that nobody read would be taken for the new ones'.
        while self.has_next():
            if not self._submitted:     # only submissions no actor is left to run
                self._backlog.clear()
                break
            try:
                self.get_next(timeout=0, ignore_if_timedout=True)
            except Exception:   # not finished (TimeoutError), or failed: nobody reads it
                pass
