"""zray: Ray's programming model on a decentralized ZeroMQ mesh, made for HPC clusters.

`import zray as ray` and a Ray Core program runs unchanged.
"""
from . import actor, exceptions, job_config, runtime_context, util
from .actor import method
from .api import (available_resources, cancel, cluster_resources, get, get_actor, get_gpu_ids,
                  get_runtime_context, init, is_initialized, kill, nodes, put, remote, shutdown,
                  wait)
from .objects.generator import DynamicObjectRefGenerator, ObjectRefGenerator
from .objects.object_ref import ObjectID, ObjectRef

__version__ = "0.1.0"

# Libraries and heavy modules load on first use (`zray.data`, `zray.collective`, ...), as Ray's
# do: `import zray` stays light.
_LAZY = {"collective": "zray.util.collective", "data": "zray.data", "train": "zray.train",
         "tune": "zray.tune", "serve": "zray.serve", "rllib": "zray.rllib",
         "launch": "zray.launch"}


def __getattr__(name):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'zray' has no attribute {name!r}")
    import importlib
    module = importlib.import_module(target)
    globals()[name] = module
    return module

__all__ = [
    "DynamicObjectRefGenerator", "ObjectID", "ObjectRef", "ObjectRefGenerator", "actor", "available_resources", "cancel",
    "cluster_resources", "exceptions", "get", "get_actor", "get_gpu_ids", "get_runtime_context",
    "init", "is_initialized", "job_config", "kill", "method", "nodes", "put", "remote", "shutdown", "util", "wait",
]
