"""runtime_env as data: checking what the user wrote, merging a child's over its parent's, and
the canonical text a task carries. No I/O here (packaging.py ships directories, worker_setup.py
builds the environment on a node).

A runtime_env the user writes (Ray's field names):

    env_vars      {"NAME": "value"}       set in the worker process
    working_dir   "path/to/dir" or "x.zip" the worker's current directory, first on sys.path
    py_modules    [dir | file.py | module] importable in the worker
    excludes      ["*.log", "data/"]     left out of working_dir and py_modules
    pip           ["pkg==1.0"] | {"packages": [...], "pip_check": bool} | "requirements.txt"
    config        {"setup_timeout_seconds": 600, "eager_install": True}

One more field exists only in the encoded form: "as_ray": true when the submitting process
installed the `ray` alias (zray.as_ray), so its workers install it too.

The encoded form a task carries replaces each local path by the package it was shipped as
({"hash", "object_id", "owner"}) and pip by {"packages", "pip_check"}; it is a JSON object with
sorted keys, so equal environments are equal strings: the node keys its worker pools by it.

Inheritance, as Ray's: a task or actor without a runtime_env runs in its parent's (the job's for
the driver's calls); one with a runtime_env replaces each field of the parent's it names, except
env_vars, which are merged (the child's win).
"""
import json
import os

from ..exceptions import RuntimeEnvSetupError


class RuntimeEnvFieldError(RuntimeEnvSetupError, ValueError):
    """A runtime_env field zray cannot honour (conda, containers, a misspelled name), raised
    when the task or actor is submitted. Ray raises RuntimeEnvSetupError for these when the
    environment is built, so code catching either that or ValueError catches it."""

SUPPORTED = ("env_vars", "working_dir", "py_modules", "excludes", "pip", "config")
# Ray's fields that need what zray nodes do not have (conda, container runtimes, the JVM, ...).
UNSUPPORTED = {
    "conda": "zray builds Python environments with pip only: use 'pip'",
    "container": "zray runs no containers: start the zray node inside the image instead",
    "image_uri": "zray runs no containers: start the zray node inside the image instead",
    "uv": "use 'pip' (the same requirement strings)",
    "java_jars": "zray has no Java workers",
    "nsight": "zray has no profiler plugins",
    "rocprof_sys": "zray has no profiler plugins",
    "mpi": "use zray.launch or the 'mpi' collective backend",
}
CONFIG_KEYS = {"setup_timeout_seconds", "eager_install"}
DEFAULT_SETUP_TIMEOUT_S = 600


def check(runtime_env):
    """The user's runtime_env, checked: a plain dict (empty fields dropped), or None.
    Raises TypeError/ValueError naming the field on anything zray cannot honour."""
    if runtime_env is None:
        return None
    if not isinstance(runtime_env, dict):
        raise TypeError(f"runtime_env must be a dict, not {type(runtime_env).__name__}")
    out = {}
    for key, value in runtime_env.items():
        if key in UNSUPPORTED:
            raise RuntimeEnvFieldError(f"runtime_env field {key!r} is not supported by zray: "
                                       f"{UNSUPPORTED[key]}")
        if key not in SUPPORTED:
            raise RuntimeEnvFieldError(f"unknown runtime_env field {key!r}; zray supports "
                                       + ", ".join(SUPPORTED))
        if value is None:
            continue
        out[key] = _CHECKS[key](value)
    if "excludes" in out and not ("working_dir" in out or "py_modules" in out):
        raise ValueError("runtime_env 'excludes' applies to working_dir and py_modules; "
                         "neither is given")
    return out or None


def _env_vars(value):
    if not isinstance(value, dict):
        raise TypeError("runtime_env 'env_vars' must be a dict of str to str")
    for name, text in value.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise TypeError(f"runtime_env 'env_vars' must map str to str; got "
                            f"{name!r}: {text!r}")
        if not name or "=" in name or "\0" in name or "\0" in text:
            raise ValueError(f"runtime_env 'env_vars': {name!r} is not a valid variable name")
    return dict(value)


def _local_path(value, field):
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise TypeError(f"runtime_env {field!r} must be a local path, not {value!r}")
    if "://" in value:
        raise ValueError(f"runtime_env {field!r}: remote URIs ({value}) are not supported by "
                         "zray; give a local directory, it is shipped to the nodes")
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.exists(path):
        raise ValueError(f"runtime_env {field!r}: {value} does not exist")
    return path


def _working_dir(value):
    path = _local_path(value, "working_dir")
    if not (os.path.isdir(path) or path.endswith(".zip")):
        raise ValueError(f"runtime_env 'working_dir' must be a directory or a .zip file: {value}")
    return path


def _py_modules(value):
    if not isinstance(value, (list, tuple)):
        raise TypeError("runtime_env 'py_modules' must be a list of directories, .py files "
                        "or modules")
    out = []
    for item in value:
        if hasattr(item, "__file__") and not isinstance(item, str):   # a module object
            if not item.__file__:
                raise ValueError(f"runtime_env 'py_modules': module {item.__name__} has no file")
            init = os.path.basename(item.__file__) == "__init__.py"
            item = os.path.dirname(item.__file__) if init else item.__file__
        path = _local_path(item, "py_modules")
        if not (os.path.isdir(path) or path.endswith((".py", ".zip"))):
            raise ValueError(f"runtime_env 'py_modules': {item} is not a directory, a .py file "
                             "or a .zip file")
        out.append(path)
    return out


def _excludes(value):
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) and p for p in value):
        raise TypeError("runtime_env 'excludes' must be a list of path patterns (str)")
    return list(value)


def _pip(value):
    if isinstance(value, str):       # a requirements file
        path = _local_path(value, "pip")
        with open(path) as f:
            lines = [line.split("#", 1)[0].strip() for line in f]
        value = {"packages": [line for line in lines if line]}
    elif isinstance(value, (list, tuple)):
        value = {"packages": list(value)}
    if not isinstance(value, dict):
        raise TypeError("runtime_env 'pip' must be a list of requirements, a dict with "
                        "'packages', or the path of a requirements file")
    unknown = set(value) - {"packages", "pip_check", "pip_version"}
    if unknown:
        raise ValueError(f"runtime_env 'pip': unknown keys {sorted(unknown)}")
    packages = value.get("packages")
    if isinstance(packages, str):
        return _pip(packages) | {"pip_check": bool(value.get("pip_check", False))}
    if not isinstance(packages, (list, tuple)) or not all(
            isinstance(p, str) and p.strip() for p in packages):
        raise TypeError("runtime_env 'pip' packages must be a list of requirement strings")
    if value.get("pip_version"):
        raise ValueError("runtime_env 'pip': pip_version is not supported by zray (the "
                         "node's pip builds the environment)")
    return {"packages": [p.strip() for p in packages],
            "pip_check": bool(value.get("pip_check", False))}


def _config(value):
    if not isinstance(value, dict):
        raise TypeError("runtime_env 'config' must be a dict")
    unknown = set(value) - CONFIG_KEYS
    if unknown:
        raise ValueError(f"runtime_env 'config': unknown keys {sorted(unknown)}; zray knows "
                         f"{sorted(CONFIG_KEYS)}")
    timeout = value.get("setup_timeout_seconds", DEFAULT_SETUP_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not (timeout > 0 or timeout == -1):
        raise ValueError("runtime_env 'config': setup_timeout_seconds must be a positive int "
                         "(or -1: no limit)")
    return dict(value)


_CHECKS = {"env_vars": _env_vars, "working_dir": _working_dir, "py_modules": _py_modules,
           "excludes": _excludes, "pip": _pip, "config": _config}


def merge(parent, child):
    """The encoded environment a child runs in (both encoded dicts, either may be None)."""
    if not child:
        return dict(parent) if parent else None
    if not parent:
        return dict(child)
    merged = {**parent, **child}
    if "env_vars" in parent and "env_vars" in child:
        merged["env_vars"] = {**parent["env_vars"], **child["env_vars"]}
    return merged


def dumps(encoded):
    """The canonical text of an encoded environment ("" for none)."""
    if not encoded:
        return ""
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"))


def loads(text):
    return json.loads(text) if text else None


def setup_timeout(encoded):
    """Seconds the node may take to build the environment (None: no limit)."""
    timeout = (encoded.get("config") or {}).get("setup_timeout_seconds", DEFAULT_SETUP_TIMEOUT_S)
    return None if timeout == -1 else timeout
