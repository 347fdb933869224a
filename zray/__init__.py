"""zray: Ray's programming model on a decentralized ZeroMQ mesh, made for HPC clusters.

`import zray as ray` and a Ray Core program runs unchanged.
"""
from . import actor, exceptions, util
from .actor import method
from .api import (available_resources, cancel, cluster_resources, get, get_actor, get_gpu_ids,
                  get_runtime_context, init, is_initialized, kill, nodes, put, remote, shutdown,
                  wait)
from .objects.generator import ObjectRefGenerator
from .objects.object_ref import ObjectRef

__version__ = "0.1.0"


def timeline(filename=None):
    """Chrome trace events of the mesh's tasks (zray/state/timeline.py); written as JSON to
    `filename` when given, as ray.timeline."""
    from .state.timeline import timeline as _timeline
    return _timeline(filename)


# Libraries and heavy modules load on first use (`zray.data`, `zray.collective`, ...), as Ray's
# do: `import zray` stays light.
_LAZY = {"collective": "zray.util.collective", "data": "zray.data", "train": "zray.train",
         "tune": "zray.tune", "serve": "zray.serve", "rllib": "zray.rllib",
         "launch": "zray.launch", "job_submission": "zray.job_submission",
         "runtime_env": "zray.runtime_env", "air": "zray.train",
         "services": "zray.services"}


def install_as_ray():
    """Opt-in: `import ray` and every `ray.X` resolve to zray's module objects in this process
    (see zray/as_ray)."""
    from .as_ray import install_as_ray as install
    return install()


def __getattr__(name):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'zray' has no attribute {name!r}")
    import importlib
    module = importlib.import_module(target)
    globals()[name] = module
    return module


__all__ = [
    "ObjectRef", "ObjectRefGenerator", "actor", "available_resources", "cancel",
    "cluster_resources", "exceptions", "get", "get_actor", "get_gpu_ids", "get_runtime_context",
    "init", "install_as_ray", "is_initialized", "kill", "method", "nodes", "put", "remote",
    "shutdown", "timeline", "util", "wait",
]
