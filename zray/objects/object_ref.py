"""ObjectRef: a handle to a value that exists, or will exist, somewhere in the cluster.

A ref carries its object id and its owner's address (the process that created it and answers
where the value is). Creating and dropping refs is counted in the process's ReferenceTable, so
the owner can free the value once no ref remains anywhere.
"""
from . import serialization

_runtime = None   # the process's CoreWorker, set by zray.core when the process joins


def set_runtime(core):
    global _runtime
    _runtime = core


def get_runtime():
    return _runtime


class ObjectRef:
    __slots__ = ("_id", "_owner", "_table", "__weakref__")

    def __init__(self, object_id, owner, _counted=True):
        self._id = object_id
        self._owner = owner
        core = _runtime
        self._table = core.refs if (core is not None and _counted) else None
        if self._table is not None:
            self._table.add_local(object_id, owner)

    def __del__(self):
        table = self._table
        if table is not None:
            try:
                table.drop_local_later(self._id)   # never a lock in a finalizer
            except Exception:  # interpreter teardown
                pass

    def __reduce__(self):
        serialization.note_ref_serialized(self)
        return _rebuild, (self._id, self._owner)

    def binary(self):
        return self._id

    def hex(self):
        return self._id.hex()

    def owner_address(self):
        return self._owner

    def task_id(self):
        return self._id[:12]

    def __hash__(self):
        return hash(self._id)

    def __eq__(self, other):
        return isinstance(other, ObjectRef) and other._id == self._id

    def __ne__(self, other):
        return not self.__eq__(other)

    def __lt__(self, other):
        return self._id < other._id

    def __repr__(self):
        return f"ObjectRef({self._id.hex()})"

    def __copy__(self):
        return ObjectRef(self._id, self._owner)

    def __deepcopy__(self, memo):
        return ObjectRef(self._id, self._owner)

    def future(self):
        """A concurrent.futures.Future completed with the value."""
        return _runtime.objects.as_future(self)

    def as_future(self):
        """An asyncio Future completed with the value, on the running (or current) loop."""
        import asyncio
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = asyncio.get_event_loop_policy().get_event_loop()
        return asyncio.wrap_future(self.future(), loop=loop)

    def __await__(self):
        import asyncio
        return asyncio.wrap_future(self.future()).__await__()


def _rebuild(object_id, owner):
    ref = ObjectRef(object_id, owner)
    core = _runtime
    if core is not None:
        core.refs.on_deserialized(object_id, owner, through_holder=True)
    return ref


# Ray's older name for the same class.
ObjectID = ObjectRef
