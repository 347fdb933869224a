"""zray: Ray's programming model on a decentralized ZeroMQ mesh, made for HPC clusters.

`import zray as ray` and a Ray Core program runs unchanged.
"""
__version__ = "0.1.0"

# The API loads on first use (`zray.init`, `from zray import remote`): a process that only
# runs a part of zray (`python -m zray.node.daemon`, `python -m zray.launch`) does not pay the
# ~0.15-0.3 s of importing the whole driver API before it can start its work; the node daemon
# and the launcher are on the critical path of every cluster start.
_API = {name: "zray.api" for name in (
    "available_resources", "cancel", "cluster_resources", "get", "get_actor", "get_gpu_ids",
    "get_runtime_context", "init", "is_initialized", "kill", "nodes", "put", "remote",
    "shutdown", "wait")}
_API.update(method="zray.actor", DynamicObjectRefGenerator="zray.objects.generator",
            ObjectRefGenerator="zray.objects.generator", ObjectID="zray.objects.object_ref",
            ObjectRef="zray.objects.object_ref")


def timeline(filename=None):
    """Chrome trace events of the mesh's tasks (zray/state/timeline.py); written as JSON to
    `filename` when given, as ray.timeline."""
    from .state.timeline import timeline as _timeline
    return _timeline(filename)


# Libraries and heavy modules load on first use (`zray.data`, `zray.collective`, ...), as Ray's
# do: `import zray` stays light.
_LAZY = {"actor": "zray.actor", "exceptions": "zray.exceptions", "job_config": "zray.job_config",
         "runtime_context": "zray.runtime_context", "util": "zray.util",
         "collective": "zray.util.collective", "data": "zray.data", "train": "zray.train",
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
    import importlib
    where = _API.get(name)
    if where is not None:
        value = getattr(importlib.import_module(where), name)
        globals()[name] = value
        return value
    target = _LAZY.get(name)
    if target is None and not name.startswith("_"):
        # Any subpackage by attribute (`zray.api`, `zray.objects`, ...), as when importing the
        # API loaded them all.
        import importlib.util
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            target = f"{__name__}.{name}"
    if target is None:
        raise AttributeError(f"module 'zray' has no attribute {name!r}")
    module = importlib.import_module(target)
    globals()[name] = module
    return module


def __dir__():
    return sorted(set(globals()) | set(_API) | set(_LAZY))


__all__ = [
    "DynamicObjectRefGenerator", "ObjectID", "ObjectRef", "ObjectRefGenerator", "actor", "available_resources", "cancel",
    "cluster_resources", "exceptions", "get", "get_actor", "get_gpu_ids", "get_runtime_context",
    "init", "install_as_ray", "is_initialized", "job_config", "kill", "method", "nodes", "put",
    "remote", "shutdown", "timeline", "util", "wait",
]
