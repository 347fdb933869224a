"""The errors a zray user sees, under the names Ray gives them.

`RayTaskError` is raised by `get` for a task that raised; it is rebuilt on the caller's side as an
instance of both `RayTaskError` and the user's exception class, so `except ValueError:` around a
`get` catches a remote `ValueError`, as in Ray.
"""


class RayError(Exception):
    """Base of every zray error."""


class RaySystemError(RayError):
    """An internal failure of zray itself."""


class RayTaskError(RayError):
    """A task (or actor method) raised; `cause` is the user's exception when it could be pickled."""

    def __init__(self, function_name="", traceback_str="", cause=None, pid=None, ip=None):
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        self.ip = ip
        # Not super(): in the dual class of as_instanceof_cause() that would run the user's
        # __init__, which may want other arguments and would reset the cause's attributes.
        Exception.__init__(self, self._message())

    def _message(self):
        header = f"{type(self.cause).__name__ if self.cause is not None else 'RayTaskError'}"
        where = f"ray::{self.function_name}() (pid={self.pid}, ip={self.ip})"
        return f"{header}: {where}\n{self.traceback_str}".rstrip()

    def __str__(self):
        return self._message()

    def __reduce__(self):
        return (RayTaskError, (self.function_name, self.traceback_str, self.cause, self.pid, self.ip))

    def as_instanceof_cause(self):
        """This error as an instance of both RayTaskError and the cause's class."""
        cause_cls = type(self.cause) if self.cause is not None else None
        if cause_cls is None or issubclass(cause_cls, RayTaskError):
            return self
        try:
            dual_cls = _dual_class(cause_cls)
            err = dual_cls.__new__(dual_cls)
        except TypeError:  # final classes, or layouts that cannot be combined
            return self
        # The cause's own attributes (errno, filename, custom fields) stay readable.
        try:
            err.__dict__.update(getattr(self.cause, "__dict__", {}))
        except Exception:
            pass
        if isinstance(self.cause, OSError):   # C-level fields, not in __dict__
            for name in ("errno", "strerror", "filename", "filename2"):
                try:
                    setattr(err, name, getattr(self.cause, name))
                except Exception:
                    pass
        RayTaskError.__init__(err, self.function_name, self.traceback_str, self.cause, self.pid, self.ip)
        err.args = (str(self),)
        return err


_dual_classes = {}


def _dual_class(cause_cls):
    cls = _dual_classes.get(cause_cls)
    if cls is None:
        name = f"RayTaskError({cause_cls.__name__})"
        cls = type(name, (RayTaskError, cause_cls), {
            "__init__": lambda self, *a, **k: None,
            "__str__": RayTaskError.__str__,
            "__reduce__": RayTaskError.__reduce__,
        })
        cls.__module__ = __name__
        _dual_classes[cause_cls] = cls
    return cls


class WorkerCrashedError(RayError):
    """The worker running the task died and the task had no retries left."""


class TaskCancelledError(RayError):
    """The task was cancelled with `zray.cancel`."""

    def __init__(self, task_id=None):
        self.task_id = task_id
        super().__init__(f"Task {task_id.hex() if isinstance(task_id, bytes) else task_id} was cancelled")

    def __reduce__(self):
        return (TaskCancelledError, (self.task_id,))


class GetTimeoutError(RayError, TimeoutError):
    """`get` did not finish within its timeout."""


class ObjectStoreFullError(RayError):
    """The object store has no room for the object, even after spilling."""


class ObjectStorePinnedFullError(ObjectStoreFullError):
    """The store is full of objects being read or written right now; trying again shortly may
    succeed (zray does, for about a second, before raising this)."""


class ObjectAlreadyStoredError(RayError):
    """Internal: a retried task's result is already sealed in the store (the earlier attempt
    stored it before its worker died); the retry keeps that value."""


class OutOfDiskError(RayError):
    """Spilling failed because the disk is full."""


class ObjectLostError(RayError):
    """Every copy of the object is gone and it cannot be rebuilt."""

    def __init__(self, object_id_hex="", message=""):
        self.object_id_hex = object_id_hex
        super().__init__(message or f"Object {object_id_hex} is lost: all its copies are gone")

    def __reduce__(self):
        return (type(self), (self.object_id_hex, self.args[0] if self.args else ""))


class ObjectFetchTimedOutError(ObjectLostError):
    """The object could not be fetched in time."""


class ReferenceCountingAssertionError(ObjectLostError):
    """The object was freed while a reference to it was still held (a zray bug)."""


class OwnerDiedError(ObjectLostError):
    """The process that owned the object died, so its value cannot be found."""


class ObjectReconstructionFailedError(ObjectLostError):
    """The object was lost and rebuilding it from lineage failed."""


class RayActorError(RayError):
    """The actor died, or its constructor raised."""

    def __init__(self, message="The actor died unexpectedly", cause=None):
        self.cause = cause
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.args[0] if self.args else "", self.cause))


class ActorDiedError(RayActorError):
    """The actor's process died."""


class ActorUnavailableError(RayActorError):
    """The actor cannot be reached right now; it may come back."""


class AsyncioActorExit(RayError):
    """Raised inside an async actor to exit it."""


class PendingCallsLimitExceeded(RayError):
    """Too many calls are queued on an actor."""


class LocalRayletDiedError(RayError):
    """The node daemon this process belongs to died."""


class NodeDiedError(RayError):
    """A node of the cluster died."""


class RuntimeEnvSetupError(RayError):
    """The runtime environment could not be set up."""


class ObjectSerializationError(RayError, TypeError):
    """A value could not be pickled; the message names it."""


class RaySchedulingError(RayError):
    """A task or actor could not be scheduled."""


class PlacementGroupSchedulingError(RayError):
    """A placement group could not be created."""


class CrossLanguageError(RayError):
    """Kept for name compatibility with Ray; zray is Python only."""


class TaskUnschedulableError(RaySchedulingError):
    """A task can never run: its scheduling strategy names a node that is not alive."""


class ActorUnschedulableError(RaySchedulingError):
    """An actor can never be placed: its scheduling strategy names a node that is not alive."""


class ActorClassInheritanceException(TypeError):
    """A class derived from an actor class (Ray refuses it too): derive from the plain class
    and decorate the subclass with @remote instead."""
