"""ObjectRefGenerator: the refs a streaming generator task yields, one by one, as they come."""
from .object_ref import get_runtime


class ObjectRefGenerator:
    def __init__(self, task_id, first_ref_owner):
        self._task_id = task_id
        self._owner = first_ref_owner
        self._index = 0
        self._done = False

    def __iter__(self):
        return self

    def __next__(self):
        ref = self._next(None)
        if ref is None:
            raise StopIteration
        return ref

    def _next(self, timeout):
        if self._done:
            return None
        ref = get_runtime().owner.generator_next(self._task_id, self._index, timeout)
        if ref is None:
            self._done = True
            self._release()
            return None
        self._index += 1
        return ref

    def __aiter__(self):
        return self

    async def __anext__(self):
        import asyncio      # here: asyncio costs every driver's `import zray` ~30 ms otherwise
        ref = await asyncio.get_running_loop().run_in_executor(None, self._next, None)
        if ref is None:
            raise StopAsyncIteration
        return ref

    def completed(self):
        """The ref of the task itself, for cancel."""
        return self._task_id

    def is_finished(self):
        return self._done

    def _release(self):
        core = get_runtime()
        if core is not None:
            core.owner.generator_done(self._task_id)

    def __del__(self):
        # Finalizers must not take locks (see ReferenceTable): the I/O thread releases.
        try:
            core = get_runtime()
            if core is not None and not self._done:
                core.post(core.owner.generator_done, self._task_id)
        except Exception:
            pass

    def __repr__(self):
        return f"ObjectRefGenerator({self._task_id.hex()})"


class DynamicObjectRefGenerator:
    """What get() of a num_returns="dynamic" task's ref gives: the refs of every value its
    generator yielded, in order (the task has finished). It travels like any value."""

    def __init__(self, refs):
        self._refs = list(refs)

    def __iter__(self):
        return iter(self._refs)

    def __len__(self):
        return len(self._refs)

    def __repr__(self):
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"


DYNAMIC_NUM_RETURNS = -2     # scheduling/task_spec.DYNAMIC


def returned_refs(task_id, refs, num_returns, owner):
    """What .remote() gives back: a generator, one ref, None, or a list, by num_returns."""
    if num_returns == DYNAMIC_NUM_RETURNS:
        # One ref, whose value (a DynamicObjectRefGenerator) the owner makes when the
        # generator ends (TaskOwner.dynamic_ref).
        return get_runtime().owner.dynamic_ref(task_id)
    if num_returns < 0:
        return ObjectRefGenerator(task_id, owner)
    if num_returns == 1:
        return refs[0]
    if num_returns == 0:
        return None
    return refs
