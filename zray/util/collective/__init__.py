"""zray.util.collective: collective communication between zray actors and tasks.

ray.util.collective's names and semantics over three backends: "cpu" (alias "gloo": shared
memory inside a node, ZeroMQ between nodes; needs nothing installed), "mpi" (mpi4py) and
"nccl" (CuPy). Beyond Ray: gather, scatter, alltoall, ReduceOp.AVG, subgroups (new_group),
async_op=True returning a Work, timeout_ms on every call, and the CollectiveError family.
See docs/collectives.md.
"""
from .collective import (allgather, allreduce, alltoall, barrier, broadcast,
                         create_collective_group, destroy_collective_group, gather, get_backend,
                         get_collective_group_size, get_config, get_group_handle, get_rank,
                         init_collective_group, is_group_initialized, new_group, recv, reduce,
                         reducescatter, scatter, send, set_config, synchronize)
from .errors import (BackendUnavailableError, CollectiveArgumentError, CollectiveError,
                     CollectiveTimeoutError, GroupBrokenError, GroupNotInitializedError,
                     PeerDiedError)
from .types import (AllGatherOptions, AllReduceOptions, AllToAllOptions, Backend,
                    BarrierOptions, BroadcastOptions, CollectiveConfig, GatherOptions,
                    RecvOptions, ReduceOp, ReduceOptions, ReduceScatterOptions, ScatterOptions,
                    SendOptions)
from .work import Work
# The cpu backend needs only numpy and zmq (in every worker already); importing it here, when
# an actor's code first names the package (usually as its class is loaded), keeps its imports
# (~20 ms, far more on a loaded node) off the group's formation on the first collective call.
from .backends import cpu as _cpu  # noqa: F401,E402


def _backend_available(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None


def nccl_available():
    return _backend_available("cupy")


def gloo_available():
    """The cpu backend stands in for gloo and needs nothing: always True."""
    return True


def mpi_available():
    return _backend_available("mpi4py")


def is_backend_available(backend):
    """Ray's check by name, in any case ("GLOO", "nccl", "mpi", "cpu"): False for a name that
    is no backend, as Ray answers."""
    from .errors import CollectiveArgumentError
    from .types import normalize_backend
    try:
        name = normalize_backend(backend)
    except CollectiveArgumentError:
        return False
    return {"cpu": gloo_available, "mpi": mpi_available, "nccl": nccl_available}[name]()


def _one_device_per_member(name):
    """Ray's *_multigpu calls drive several GPUs from one process; a zray group member holds
    one device (chosen by index), so these names raise an error that says what to do instead
    of an AttributeError that reads as a missing port."""
    single = name[:-len("_multigpu")]

    def call(*args, **kwargs):
        from .errors import CollectiveError
        raise CollectiveError(
            f"{name}: a zray collective group member holds one device, not several; start "
            f"one actor per GPU (num_gpus=1), form the group over them, and call {single} in "
            "each")
    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"Not available in zray: {_one_device_per_member.__doc__}"
    return call


allreduce_multigpu, reduce_multigpu, broadcast_multigpu, allgather_multigpu, \
    reducescatter_multigpu, send_multigpu, recv_multigpu = (
        _one_device_per_member(f"{op}_multigpu") for op in
        ("allreduce", "reduce", "broadcast", "allgather", "reducescatter", "send", "recv"))


def init_collective_group_from_world(backend="mpi", group_name="default", **kwargs):
    """Under an MPI launcher: the job's COMM_WORLD becomes the group (no rendezvous)."""
    from .backends.mpi import init_from_world
    return init_from_world(backend, group_name, **kwargs)


__all__ = [
    "AllGatherOptions", "AllReduceOptions", "AllToAllOptions", "Backend",
    "BackendUnavailableError", "BarrierOptions", "BroadcastOptions", "CollectiveArgumentError",
    "CollectiveConfig", "CollectiveError", "CollectiveTimeoutError", "GatherOptions",
    "GroupBrokenError", "GroupNotInitializedError", "PeerDiedError", "RecvOptions", "ReduceOp",
    "ReduceOptions", "ReduceScatterOptions", "ScatterOptions", "SendOptions", "Work",
    "allgather", "allreduce", "alltoall", "barrier", "broadcast", "create_collective_group",
    "destroy_collective_group", "gather", "get_backend", "get_collective_group_size",
    "get_config", "get_group_handle", "get_rank", "gloo_available",
    "init_collective_group", "init_collective_group_from_world", "is_backend_available",
    "is_group_initialized",
    "mpi_available", "nccl_available", "new_group", "recv", "reduce", "reducescatter",
    "scatter", "send", "set_config", "synchronize",
]
