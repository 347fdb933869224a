"""Validation of @remote / .options() arguments: one function per option, one error type each.

Unknown names raise TypeError listing the valid ones; bad values raise ValueError (or TypeError
for a wrong type), as Ray does.
"""
import cloudpickle

from .scheduling.resources import to_units

TASK_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "num_returns", "max_retries", "retry_exceptions",
    "name", "memory", "scheduling_strategy", "runtime_env", "accelerator_type", "max_calls",
    "placement_group", "placement_group_bundle_index", "placement_group_capture_child_tasks",
    "label_selector", "enable_task_events", "_metadata",
}

DEFAULT_TASK = {"num_cpus": 1, "num_gpus": 0, "resources": None, "num_returns": None,
                "max_retries": 3, "retry_exceptions": False, "name": None, "memory": None}


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
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def validate_resource_dict(res):
    """A custom resources dict: {name: amount}, CPU and GPU having options of their own."""
    if not isinstance(res, dict):
        raise TypeError(f"resources must be a dict, got {type(res).__name__}")
    for key in ("CPU", "GPU"):
        if key in res:
            raise ValueError(f"Use the num_{key.lower()}s option instead of resources={{'{key}': ...}}")
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
