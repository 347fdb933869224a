"""What a task is, as it travels from its owner to a node and a worker.

The spec is pickled with plain pickle inside message headers, so it holds only builtins;
anything user-defined (the function, argument values, exception types for retry_exceptions)
travels as cloudpickled bytes or as separate frames.
"""
from ..objects.ids import return_object_id

STREAMING = -1   # num_returns="streaming": a generator whose items are reported one by one
DYNAMIC = -2     # num_returns="dynamic": kept for Ray compatibility, treated like streaming

ARG_VALUE = 0    # (ARG_VALUE, frame_index): a serialized value in the message's frames
ARG_STORED = 1   # (ARG_STORED, object_id, owner, node_id): a value in the object store of
                 # node_id (the worker's node pulls a copy when it is another node)

# What a spec asks for; read `spec.kind`, never guess it from the keys of `spec.extra`.
TASK = 0             # a remote function call
ACTOR_CREATION = 1   # an actor's constructor: placed like a task, then the worker hosts it
ACTOR_CALL = 2       # a method call, sent straight to the actor's worker
KINDS = (TASK, ACTOR_CREATION, ACTOR_CALL)


class TaskSpec:
    __slots__ = ("task_id", "job_id", "name", "function_id", "args", "kwarg_names",
                 "num_returns", "resources", "max_retries", "retry_exceptions", "owner",
                 "attempt", "parent_task_id", "extra", "kind")

    def __init__(self, task_id, job_id, name, function_id, args, kwarg_names, num_returns,
                 resources, max_retries, retry_exceptions, owner, attempt=0,
                 parent_task_id=None, extra=None, kind=TASK):
        self.task_id = task_id
        self.job_id = job_id
        self.name = name
        self.function_id = function_id
        self.args = args
        self.kwarg_names = kwarg_names
        self.num_returns = num_returns
        self.resources = resources          # in units (scheduling.resources)
        self.max_retries = max_retries
        self.retry_exceptions = retry_exceptions   # False, True, or cloudpickled tuple of types
        self.owner = owner
        self.attempt = attempt
        self.parent_task_id = parent_task_id
        self.extra = extra
        self.kind = kind

    def __reduce__(self):
        return (TaskSpec, tuple(getattr(self, s) for s in self.__slots__))

    @property
    def streaming(self):
        return self.num_returns < 0

    def return_ids(self):
        if self.num_returns < 0:
            return []
        return [return_object_id(self.task_id, i) for i in range(self.num_returns)]

    @property
    def runtime_env(self):
        """The canonical text of its runtime_env ("" for none): the node keys workers by it."""
        return self.extra.get("runtime_env", "") if self.extra else ""

    def scheduling_class(self):
        return (self.job_id, tuple(sorted(self.resources.items())), self.runtime_env)
