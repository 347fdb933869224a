"""zray: Ray's programming model on a decentralized ZeroMQ mesh, made for HPC clusters.

`import zray as ray` and a Ray Core program runs unchanged.
"""
from . import exceptions
from .api import (available_resources, cancel, cluster_resources, get, get_gpu_ids,
                  get_runtime_context, init, is_initialized, nodes, put, remote, shutdown, wait)
from .objects.generator import ObjectRefGenerator
from .objects.object_ref import ObjectRef

__version__ = "0.1.0"

__all__ = [
    "ObjectRef", "ObjectRefGenerator", "available_resources", "cancel", "cluster_resources",
    "exceptions", "get", "get_gpu_ids", "get_runtime_context", "init", "is_initialized",
    "nodes", "put", "remote", "shutdown", "wait",
]
