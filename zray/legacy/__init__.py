"""The amplab Ray 0.x API (2016), as a small compatibility layer over zray.

What the oldest Ray programs use:

    ray.services.start_ray_local(num_workers=10)     # start a local cluster, connect to it

    @ray.remote([int], [float])                        # argument types, return types
    def estimate_pi(n): ...

    ref = estimate_pi(100)                             # a direct call submits: a ref comes back
    ray.get(ref)

Types are checked as 0.x did: the number of arguments against the declared list, each plain
argument when the call is made (a ref's value when the task runs), each returned value when
the task ends; a mismatch raises TypeError (at the call, or from `get`). `int` accepts any
integral number (numpy's too, not a bool) and `float` any real number, so numpy scalars pass as they did.
The function returns one value per return type (a tuple when there are several); calling it
returns one ref per return type (a list when there are several).
"""
import functools
import inspect
import numbers

from .. import api
from ..objects.object_ref import ObjectRef

# Declared type -> what a value may be to match it (the numeric tower, as numpy scalars flow).
_ACCEPTS = {int: numbers.Integral, float: numbers.Real, complex: numbers.Complex}


def start_ray_local(node_ip_address="127.0.0.1", num_workers=0, worker_path=None, **_ignored):
    """0.x's `ray.services.start_ray_local`: start a one-node cluster here with `num_workers`
    worker slots (CPUs; 0 means as many as this machine allows) and connect this process.
    The address and worker path of 0.x's own processes have no meaning for zray."""
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, not {num_workers!r}")
    return api.init(num_cpus=num_workers or None)


def _matches(value, declared):
    if isinstance(value, bool) and declared is not bool:
        return declared is object      # True is an int to Python, not to a typed signature
    if isinstance(value, declared):
        return True
    accepts = _ACCEPTS.get(declared)
    return accepts is not None and isinstance(value, accepts)


def _check_values(name, what, values, types):
    for index, (value, declared) in enumerate(zip(values, types)):
        if not _matches(value, declared):
            raise TypeError(f"{name}: {what} {index} must be of type {declared.__name__}, "
                            f"got {type(value).__name__} ({value!r:.60})")


def _check_types(name, what, types):
    if not isinstance(types, list):
        raise TypeError(f"@remote({name}): the {what} types must be a list of types")
    for t in types:
        if not isinstance(t, type):
            raise TypeError(f"@remote({name}): {what} type {t!r} is not a type")


class TypedRemoteFunction:
    """A function decorated with 0.x's `@remote([arg types], [return types])`."""

    def __init__(self, function, arg_types, return_types):
        name = getattr(function, "__name__", "function")
        _check_types(name, "argument", arg_types)
        _check_types(name, "return", return_types)
        if not return_types:
            raise TypeError(f"@remote({name}): at least one return type is needed")
        params = list(inspect.signature(function).parameters.values())
        if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
            raise TypeError(f"@remote({name}): a typed remote function takes plain positional "
                            "arguments only")
        if len(params) != len(arg_types):
            raise TypeError(f"@remote({name}): {len(arg_types)} argument types declared for a "
                            f"function of {len(params)} arguments")
        self.arg_types = list(arg_types)
        self.return_types = list(return_types)
        self.__name__ = name
        self.__doc__ = getattr(function, "__doc__", None)
        self.__wrapped__ = function
        self._remote = api.remote(num_returns=len(return_types))(
            _checked(function, self.arg_types, self.return_types))

    def __call__(self, *args, **kwargs):
        if kwargs:
            raise TypeError(f"{self.__name__}() takes positional arguments only")
        if len(args) != len(self.arg_types):
            raise TypeError(f"{self.__name__}() takes {len(self.arg_types)} arguments, "
                            f"got {len(args)}")
        plain = [(a, t) for a, t in zip(args, self.arg_types) if not isinstance(a, ObjectRef)]
        _check_values(self.__name__, "argument", [a for a, _ in plain], [t for _, t in plain])
        return self._remote.remote(*args)

    remote = __call__       # the later spelling works too


def _checked(function, arg_types, return_types):
    """The function as it runs in the worker: argument values (refs resolved) and returned
    values checked against the declared types."""
    name = getattr(function, "__name__", "function")

    @functools.wraps(function)
    def checked(*args):
        _check_values(name, "argument", args, arg_types)
        result = function(*args)
        if len(return_types) == 1:
            _check_values(name, "return value", [result], return_types)
            return result
        if not isinstance(result, (tuple, list)) or len(result) != len(return_types):
            raise TypeError(f"{name}: {len(return_types)} return values declared, the function "
                            f"returned {type(result).__name__}")
        _check_values(name, "return value", list(result), return_types)
        return tuple(result)
    return checked


def typed_remote(arg_types, return_types):
    """0.x's decorator form `@remote([arg types], [return types])`."""
    return lambda function: TypedRemoteFunction(function, arg_types, return_types)


__all__ = ["TypedRemoteFunction", "start_ray_local", "typed_remote"]
