"""@zray.remote on a class: ActorClass, ActorHandle, ActorMethod, @method and exit_actor.

A handle carries the actor's id and what callers need to know about its methods. Handles are
counted like ObjectRefs (each holds a ref to a small object its creator owns), so a
non-detached actor ends once no handle remains anywhere.
"""
import inspect

from . import options as opts
from . import runtime_env
from .core import runtime as _facade
from .core.context import ActorExit
from .core.functions import pickle_for_export
from .objects.generator import returned_refs
from .objects.object_ref import ObjectRef, get_runtime
from .scheduling.resources import to_units

ACTOR_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "memory", "name", "namespace", "get_if_exists",
    "lifetime", "max_restarts", "max_task_retries", "max_concurrency", "concurrency_groups",
    "max_pending_calls", "scheduling_strategy", "runtime_env", "accelerator_type",
    "placement_group", "placement_group_bundle_index", "placement_group_capture_child_tasks",
    "label_selector", "enable_task_events", "_metadata", "object_store_memory",
}
METHOD_CALL_OPTIONS = {"num_returns", "name", "concurrency_group", "max_task_retries",
                       "retry_exceptions", "enable_task_events", "_metadata"}
DEFAULT_ASYNC_CONCURRENCY = 1000


def exit_actor():
    """End the current actor after this call: no restart; later calls raise ActorDiedError."""
    if _facade.current().current_actor() is None:
        raise TypeError("exit_actor() can only be called inside an actor")
    raise ActorExit()


def method(*args, **kwargs):
    """@zray.method(num_returns=..., concurrency_group=...) on an actor method."""
    if args:
        raise TypeError("@zray.method takes keyword options only, e.g. @zray.method(num_returns=2)")
    unknown = set(kwargs) - {"num_returns", "concurrency_group", "max_task_retries",
                             "retry_exceptions", "enable_task_events", "tensor_transport"}
    if unknown:
        raise TypeError(f"Invalid option(s) {sorted(unknown)} for @zray.method")
    if "num_returns" in kwargs:
        opts.validate_task_options({"num_returns": kwargs["num_returns"]})

    def decorate(fn):
        fn.__zray_method_options__ = dict(kwargs)
        return fn
    return decorate


def validate_actor_options(options):
    opts.check_names(options, ACTOR_OPTIONS, "an actor class")
    task_like = {k: v for k, v in options.items() if k in ("num_cpus", "num_gpus", "memory", "resources")}
    opts.validate_task_options(task_like)
    mc = options.get("max_concurrency")
    if mc is not None:
        if isinstance(mc, bool) or not isinstance(mc, int):
            raise TypeError(f"max_concurrency must be an int, got {mc!r}")
        if mc < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {mc}")
    for key in ("max_restarts", "max_task_retries"):
        v = options.get(key)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{key} must be an int, got {v!r}")
            if v < -1:
                raise ValueError(f"{key} must be >= -1 (-1 means without limit), got {v}")
    opts.encode_strategy(options)
    lifetime = options.get("lifetime")
    if lifetime not in (None, "detached", "non_detached"):
        raise ValueError(f"lifetime must be 'detached' or 'non_detached', got {lifetime!r}")
    name = options.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"an actor name must be a non-empty str, got {name!r}")
    ns = options.get("namespace")
    if ns is not None and (not isinstance(ns, str) or not ns):
        raise ValueError(f"namespace must be a non-empty str, got {ns!r}")
    groups = options.get("concurrency_groups")
    if groups is not None:
        if not isinstance(groups, dict):
            raise TypeError("concurrency_groups must be a dict of group name -> max concurrency")
        for g, n in groups.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"concurrency group {g!r} needs a max concurrency >= 1, got {n!r}")


def _method_table(cls):
    """name -> {num_returns, concurrency_group, is_async, ...} for every public or dunder-call method."""
    table = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("__") and name not in ("__call__",):
            continue
        fn = member
        if isinstance(inspect.getattr_static(cls, name, None), (staticmethod, classmethod)):
            pass
        elif not (inspect.isfunction(fn) or inspect.ismethod(fn)):
            continue
        options = dict(getattr(fn, "__zray_method_options__", {}))
        options["is_async"] = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        options["is_generator"] = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        static = isinstance(inspect.getattr_static(cls, name, None), staticmethod)
        options["shape"] = opts.call_shape(fn, bound=inspect.isfunction(fn) and not static)
        table[name] = options
    return table


class ActorClass:
    def __init__(self, cls, actor_options):
        validate_actor_options(actor_options)
        self._cls = cls
        self._options = actor_options
        self._methods = _method_table(cls)
        self._is_async = any(m["is_async"] for m in self._methods.values())
        self._init_shape = opts.call_shape(cls.__init__, bound=True) \
            if cls.__init__ is not object.__init__ else ((), 0, 0, False, (), (), False)
        self._pickled = None
        self._class_id = None
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__doc__ = cls.__doc__
        self.__module__ = cls.__module__

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Actors cannot be instantiated directly. Instead of '{self.__name__}()', "
            f"use '{self.__name__}.remote()'.")

    def remote(self, *args, **kwargs):
        return self._remote(args, kwargs, self._options)

    def options(self, **actor_options):
        validate_actor_options(actor_options)
        merged = {**self._options, **actor_options}
        parent = self

        class _Options:
            def remote(self, *args, **kwargs):
                return parent._remote(args, kwargs, merged)
        return _Options()

    def _export(self, core):
        if self._pickled is None:
            self._class_id, self._pickled = pickle_for_export(self._cls, f"actor class {self.__name__}")
        core.owner.export_function(self._class_id, self._pickled)
        return self._class_id

    def _remote(self, args, kwargs, actor_options):
        from .util.placement_group import apply_group, in_placement_group
        opts.check_call(self._init_shape, args, kwargs, self.__name__)
        rt = _facade.current(autostart=True)
        core = get_runtime()
        class_id = self._export(core)
        placement, lifetime = actor_resources(actor_options)
        group = in_placement_group(actor_options, rt)
        groups = dict(actor_options.get("concurrency_groups") or {})
        max_concurrency = actor_options.get("max_concurrency")
        if max_concurrency is None:
            max_concurrency = DEFAULT_ASYNC_CONCURRENCY if self._is_async else 1
        meta = {
            "class_name": self.__name__,
            "methods": self._methods,
            "is_async": self._is_async,
            "max_task_retries": actor_options.get("max_task_retries", 0) or 0,
            "max_concurrency": max_concurrency,
            "concurrency_groups": groups,
        }
        if group is not None:   # ask for the group's resources instead (util/placement_group.py)
            (placement, lifetime), meta["placement_group"] = apply_group(
                group, [placement, lifetime], f"actor {self.__name__}")
        lifetime_opt = actor_options.get("lifetime")
        actor_id, owner, existing = core.actors.create_actor(
            class_id, self.__name__, args, kwargs, placement, lifetime, meta,
            name=actor_options.get("name"), namespace=actor_options.get("namespace"),
            detached=lifetime_opt == "detached",
            get_if_exists=bool(actor_options.get("get_if_exists")),
            max_restarts=actor_options.get("max_restarts", 0) or 0,
            strategy=opts.encode_strategy(actor_options),
            runtime_env=runtime_env.for_submission(actor_options.get("runtime_env")))
        return ActorHandle(actor_id, owner, meta, counted=True, existing=existing)


def actor_resources(actor_options):
    """(placement, lifetime) units: by default an actor needs 1 CPU to be placed and holds
    none while it runs; resources it names explicitly are held for its whole life."""
    res = dict(actor_options.get("resources") or {})
    if actor_options.get("num_gpus"):
        res["GPU"] = actor_options["num_gpus"]
    if actor_options.get("memory"):
        res["memory"] = actor_options["memory"]
    cpus = actor_options.get("num_cpus")
    lifetime = dict(res)
    if cpus is None:
        placement = dict(res, CPU=1)
    else:
        placement = dict(res, CPU=cpus)
        lifetime["CPU"] = cpus
    return to_units(placement), to_units(lifetime)


class ActorHandle:
    def __init__(self, actor_id, owner, meta, counted, existing=False, _ref=None):
        self._actor_id = actor_id
        self._owner = owner
        self._meta = meta
        if _ref is not None:
            self._ref = _ref
        elif counted:
            self._ref = ObjectRef(actor_id, owner)
            core = get_runtime()
            if core is not None and owner != core.address:
                core.refs.on_deserialized(actor_id, owner)
        else:
            self._ref = None

    def __getattr__(self, name):
        methods = self.__dict__.get("_meta", {}).get("methods", {})
        if name in methods:
            return ActorMethod(self, name, methods[name])
        if name == "__ray_terminate__":
            return ActorMethod(self, name, {"is_async": False})
        raise AttributeError(f"'{self.__dict__.get('_meta', {}).get('class_name', 'Actor')}' actor "
                             f"has no method {name!r}")

    def __reduce__(self):
        return _rebuild_handle, (self._actor_id, self._owner, self._meta, self._ref)

    def __hash__(self):
        return hash(self._actor_id)

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __repr__(self):
        return f"Actor({self._meta.get('class_name')}, {self._actor_id.hex()})"

    @property
    def _actor_id_hex(self):
        return self._actor_id.hex()


def _rebuild_handle(actor_id, owner, meta, ref):
    return ActorHandle(actor_id, owner, meta, counted=False, _ref=ref)


class ActorMethod:
    def __init__(self, handle, name, method_options, call_options=None):
        self._handle = handle
        self._name = name
        self._method_options = method_options
        self._call_options = call_options or {}

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Actor methods cannot be called directly. Instead of running "
            f"'object.{self._name}()', try 'object.{self._name}.remote()'.")

    def remote(self, *args, **kwargs):
        core = get_runtime()
        if core is None:
            _facade.current()     # raises: zray is not initialized
        options = {**self._method_options, **self._call_options}
        opts.check_call(options.get("shape"), args, kwargs, self._name)
        num_returns = options.get("num_returns")
        if num_returns is None:
            num_returns = "streaming" if options.get("is_generator") else 1
        task_id, refs, n = core.actors.submit_actor_task(
            self._handle, self._name, args, kwargs, num_returns,
            options.get("concurrency_group"), options.get("name"))
        if n == 1:
            return refs[0]
        return returned_refs(task_id, refs, n, core.address)

    def options(self, **call_options):
        opts.check_names(call_options, METHOD_CALL_OPTIONS, f"actor method {self._name}")
        if "num_returns" in call_options:
            opts.validate_task_options({"num_returns": call_options["num_returns"]})
        return ActorMethod(self._handle, self._name, self._method_options,
                           {**self._call_options, **call_options})
