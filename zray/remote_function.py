"""@zray.remote on a function: RemoteFunction, with .remote() and .options()."""
import inspect

from . import options as opts
from . import runtime_env
from .core import runtime as _facade
from .core.functions import pickle_for_export
from .objects.generator import returned_refs
from .objects.object_ref import get_runtime
from .scheduling.task_spec import DYNAMIC, STREAMING


def _strategy_extra(task_options):
    strategy = opts.encode_strategy(task_options)
    return None if strategy is None else {"strategy": strategy}


class RemoteFunction:
    def __init__(self, function, task_options):
        opts.validate_task_options(task_options)
        self._function = function
        self._options = task_options
        self._pickled = None
        self._function_id = None
        self._is_generator = inspect.isgeneratorfunction(function)
        self._shape = opts.call_shape(function)
        self.__name__ = getattr(function, "__name__", "remote_function")
        self.__qualname__ = getattr(function, "__qualname__", self.__name__)
        self.__doc__ = getattr(function, "__doc__", None)
        self.__module__ = getattr(function, "__module__", None)
        self.__wrapped__ = function

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Remote functions cannot be called directly. Instead of running "
            f"'{self.__name__}()', try '{self.__name__}.remote()'.")

    def remote(self, *args, **kwargs):
        return self._remote(args, kwargs, self._options)

    def options(self, **task_options):
        opts.validate_task_options(task_options)
        merged = {**self._options, **task_options}
        parent = self

        class _Options:
            def remote(self, *args, **kwargs):
                return parent._remote(args, kwargs, merged)

            def bind(self, *args, **kwargs):
                raise NotImplementedError("DAG building (bind) is not part of zray core")
        return _Options()

    def _export(self, core):
        if self._pickled is None:
            self._function_id, self._pickled = pickle_for_export(
                self._function, f"remote function {self.__name__}")
        core.owner.export_function(self._function_id, self._pickled)
        return self._function_id

    def _remote(self, args, kwargs, task_options):
        opts.check_call(self._shape, args, kwargs, self.__name__)
        core = get_runtime()
        if core is None:
            _facade.current(autostart=True)
            core = get_runtime()
        function_id = self._export(core)
        num_returns = task_options.get("num_returns")
        if num_returns is None:
            num_returns = "streaming" if self._is_generator else 1
        n = {"streaming": STREAMING, "dynamic": DYNAMIC}.get(num_returns, num_returns)
        name = task_options.get("name") or self.__name__   # the log prefix "(f pid=..)", as Ray
        resources = opts.task_resources(task_options)
        extra = _strategy_extra(task_options)
        group = _in_group(task_options) if _may_be_in_group(task_options, core) else None
        if group is not None:   # ask for the group's resources instead (util/placement_group.py)
            from .util.placement_group import apply_group
            (resources,), context = apply_group(group, [resources], f"task {name}")
            extra = dict(extra or {}, placement_group=context)
        env = runtime_env.for_submission(task_options.get("runtime_env"))
        if env:
            extra = dict(extra or {}, runtime_env=env)
        task_id, refs = core.owner.submit_task(
            function_id, name, args, kwargs, n, resources,
            task_options.get("max_retries", opts.DEFAULT_TASK["max_retries"]),
            opts.encode_retry_exceptions(task_options.get("retry_exceptions", False)),
            extra=extra)
        return returned_refs(task_id, refs, n, core.address)


def _may_be_in_group(options, core):
    """Cheap test first (most calls): no group option and no task or actor running here."""
    executor = core.executor
    return not (options.get("scheduling_strategy") is None and options.get("placement_group") is None
                and options.get("placement_group_bundle_index", -1) == -1
                and (executor is None or (executor.running_task is None and executor.actors.host is None)))


def _in_group(options):
    from .util.placement_group import in_placement_group
    return in_placement_group(options, _facade.current())
