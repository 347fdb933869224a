"""cloudpickle that keeps the file name of code pickled by value, under every cloudpickle.

A remote function or class defined in `__main__` (a script, a notebook) travels by value: its
code object is rebuilt in the worker. cloudpickle 3.1.3 and later write `<dynamic-code>` in
place of the code's file name (to make pickles deterministic), so a task's traceback would show
`File "<dynamic-code>", line 6` with no source line, where the user needs the path of their
script. zray's pickler keeps the real name: it wraps cloudpickle's own code reducer and puts
`co_filename` back. Older cloudpickle releases already keep it; the wrapper then changes
nothing. Determinism is not lost where it matters to zray: a function is exported under the
hash of its pickle, and one file always gives the same name.

Use `dumps` wherever zray pickles user code or values that may contain it.
"""
import copyreg
import io
import types
from collections import ChainMap

import cloudpickle

_DYNAMIC_FILENAME = "<dynamic-code>"
# Position of co_filename in the CodeType constructor arguments cloudpickle reduces a code
# object to, on every Python zray supports (3.8+: argcount, posonlyargcount, kwonlyargcount,
# nlocals, stacksize, flags, code, consts, names, varnames, filename, ...).
_FILENAME_ARG = 10


def _find_code_reducer():
    table = getattr(cloudpickle.Pickler, "dispatch_table", None) or {}
    reducer = table.get(types.CodeType) if hasattr(table, "get") else None
    return reducer


_cloudpickle_code_reduce = _find_code_reducer()


def _code_reduce_keeping_filename(code):
    constructor, args = _cloudpickle_code_reduce(code)[:2]
    if len(args) > _FILENAME_ARG and args[_FILENAME_ARG] == _DYNAMIC_FILENAME:
        args = args[:_FILENAME_ARG] + (code.co_filename,) + args[_FILENAME_ARG + 1:]
    return constructor, args


def _dispatch_table():
    parent = getattr(cloudpickle.Pickler, "dispatch_table", copyreg.dispatch_table)
    if _cloudpickle_code_reduce is None:   # no code reducer to correct
        return parent
    # One flat chain (a lookup per pickled object's type walks it), still live over
    # copyreg.dispatch_table, so reducers users register later are seen.
    maps = parent.maps if isinstance(parent, ChainMap) else [parent]
    return ChainMap({types.CodeType: _code_reduce_keeping_filename}, *maps)


class _Pickler(cloudpickle.Pickler):
    dispatch_table = _dispatch_table()


def dumps(obj, protocol=5, buffer_callback=None):
    """cloudpickle.dumps, keeping code file names (see the module docstring)."""
    with io.BytesIO() as file:
        _Pickler(file, protocol=protocol, buffer_callback=buffer_callback).dump(obj)
        return file.getvalue()
