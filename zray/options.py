"""Validation of @remote / .options() arguments: one function per option, one error type each.

Unknown names raise TypeError listing the valid ones; bad values raise ValueError (or TypeError
for a wrong type), as Ray does.
"""
import math

import cloudpickle

from .scheduling.resources import to_units

TASK_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "num_returns", "max_retries", "retry_exceptions",
    "name", "memory", "scheduling_strategy", "runtime_env", "accelerator_type", "max_calls",
    "placement_group", "placement_group_bundle_index", "placement_group_capture_child_tasks",
    "label_selector", "enable_task_events", "_metadata",
}

# Return ids are allocated when a task is submitted, so num_returns is bounded (2**32 ran a
# machine out of memory). Ray has no documented bound; a task with more results than this
# should return a list, or be a streaming generator.
MAX_NUM_RETURNS = 100_000

DEFAULT_TASK = {"num_cpus": 1, "num_gpus": 0, "resources": None, "num_returns": None,
                "max_retries": 3, "retry_exceptions": False, "name": None, "memory": None}


# Names a resources dict may not use, and what to do instead (Ray reserves the same ones).
RESERVED_RESOURCES = {
    "bundle": "placement group bundles use it; ask for a group's resources with a "
              "PlacementGroupSchedulingStrategy",
    "memory": "use the memory= option",
    "object_store_memory": "the store's size is not a resource tasks reserve",
}


def check_names(options, valid, what):
    unknown = sorted(set(options) - valid)
    if unknown:
        raise TypeError(f"Invalid option(s) {', '.join(map(repr, unknown))} for {what}; "
                        f"valid options are: {', '.join(sorted(valid))}")


def _non_negative(name, value, allow_none=True):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def validate_resource_dict(res):
    """A custom resources dict: {name: amount}, CPU and GPU having options of their own."""
    if not isinstance(res, dict):
        raise TypeError(f"resources must be a dict, got {type(res).__name__}")
    for key in ("CPU", "GPU"):
        if key in res:
            raise ValueError(f"Use the num_{key.lower()}s option instead of resources={{'{key}': ...}}")
    for key in RESERVED_RESOURCES:
        if key in res:
            raise ValueError(f"The resource name {key!r} is reserved: {RESERVED_RESOURCES[key]}")
    to_units(res)


def validate_task_options(options):
    check_names(options, TASK_OPTIONS, "a remote function")
    for name in ("num_cpus", "num_gpus", "memory"):
        if name in options:
            _non_negative(name, options[name])
    for name in ("num_cpus", "num_gpus"):
        v = options.get(name)
        if v is not None and v > 1 and v != int(v):
            raise ValueError(f"{name} above 1 must be a whole number, got {v}")
    if options.get("resources") is not None:
        validate_resource_dict(options["resources"])
    if "num_returns" in options:
        n = options["num_returns"]
        if n is not None and n not in ("streaming", "dynamic"):
            if isinstance(n, bool) or not isinstance(n, int):
                raise TypeError(f"num_returns must be an int or 'streaming', got {n!r}")
            if n < 0:
                raise ValueError(f"num_returns must be >= 0, got {n}")
            if n > MAX_NUM_RETURNS:
                raise ValueError(f"num_returns must be at most {MAX_NUM_RETURNS}, got {n} (return "
                                 "a list instead, or make the task a generator with "
                                 "num_returns='streaming')")
    if "max_retries" in options:
        n = options["max_retries"]
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"max_retries must be an int, got {n!r}")
        if n < -1:
            raise ValueError(f"max_retries must be >= -1 (-1 retries forever), got {n}")
    if "retry_exceptions" in options:
        r = options["retry_exceptions"]
        if not isinstance(r, bool):
            if not isinstance(r, (list, tuple)) or not all(
                    isinstance(t, type) and issubclass(t, BaseException) for t in r):
                raise TypeError("retry_exceptions must be a bool or a list of exception types, "
                                f"got {r!r}")
    if options.get("name") is not None and not isinstance(options["name"], str):
        raise TypeError(f"name must be a str, got {options['name']!r}")
    encode_strategy(options)


def encode_strategy(options):
    """The scheduling_strategy option as a task spec carries it (scheduling/placement.py)."""
    strategy = options.get("scheduling_strategy")
    if strategy is None or strategy == "DEFAULT":
        return None
    if strategy == "SPREAD":
        return "SPREAD"
    from .util.scheduling_strategies import (NodeAffinitySchedulingStrategy,
                                             PlacementGroupSchedulingStrategy)
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return ("node", strategy.node_id, strategy.soft)
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        return None     # routed by the group's resources (util/placement_group.py)
    raise ValueError(f"scheduling_strategy must be 'DEFAULT', 'SPREAD', a "
                     f"NodeAffinitySchedulingStrategy or a PlacementGroupSchedulingStrategy, "
                     f"got {strategy!r}")


def task_resources(options):
    """The resource request of a task in fixed-point units."""
    res = dict(options.get("resources") or {})
    cpus = options.get("num_cpus")
    res["CPU"] = DEFAULT_TASK["num_cpus"] if cpus is None else cpus
    if options.get("num_gpus"):
        res["GPU"] = options["num_gpus"]
    if options.get("memory"):
        res["memory"] = options["memory"]
    return to_units(res)


def encode_retry_exceptions(value):
    if isinstance(value, (list, tuple)):
        return cloudpickle.dumps(tuple(value))
    return bool(value)


# -- arguments checked at .remote(), as Ray does (its signature.flatten_args binds them) ------------
def call_shape(fn, bound=False):
    """What check_call needs of fn's signature, as a small picklable tuple (it travels in actor
    metadata): (positional names, required positional count, positional-only count, *args,
    keyword-only names, required keyword-only names, **kwargs). None when fn has no signature
    (a builtin, say): then nothing is checked. `bound`: drop the first parameter (self)."""
    import inspect
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    P = inspect.Parameter
    if bound and params and params[0].kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD):
        params = params[1:]
    positional = tuple(p.name for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD))
    required = sum(1 for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)
                   and p.default is P.empty)
    posonly = sum(1 for p in params if p.kind == P.POSITIONAL_ONLY)
    kwonly = tuple(p.name for p in params if p.kind == P.KEYWORD_ONLY)
    kwonly_required = tuple(p.name for p in params if p.kind == P.KEYWORD_ONLY and p.default is P.empty)
    return (positional, required, posonly, any(p.kind == P.VAR_POSITIONAL for p in params),
            kwonly, kwonly_required, any(p.kind == P.VAR_KEYWORD for p in params))


def check_call(shape, args, kwargs, name):
    """TypeError, worded as Python's own, when args/kwargs do not fit `shape` (call_shape)."""
    if shape is None:
        return
    positional, required, posonly, varargs, kwonly, kwonly_required, varkw = shape
    n = len(args)
    if not kwargs and not kwonly_required and required <= n and (varargs or n <= len(positional)):
        return      # the common case: positional arguments that fit
    if n > len(positional) and not varargs:
        raise TypeError(f"{name}() takes {len(positional)} positional argument"
                        f"{'' if len(positional) == 1 else 's'} but {n} were given")
    for key in kwargs:
        if key in positional and positional.index(key) >= posonly:
            if positional.index(key) < n:
                raise TypeError(f"{name}() got multiple values for argument {key!r}")
        elif key not in kwonly and not varkw:
            raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
    missing = [p for p in positional[n:required] if p not in kwargs]
    if missing:
        raise TypeError(f"{name}() missing {len(missing)} required positional argument"
                        f"{'' if len(missing) == 1 else 's'}: {', '.join(map(repr, missing))}")
    missing = [k for k in kwonly_required if k not in kwargs]
    if missing:
        raise TypeError(f"{name}() missing {len(missing)} required keyword-only argument"
                        f"{'' if len(missing) == 1 else 's'}: {', '.join(map(repr, missing))}")
