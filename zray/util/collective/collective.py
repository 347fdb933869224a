"""The public API: ray.util.collective's names and semantics, plus gather, scatter, alltoall,
subgroups, ReduceOp.AVG, async_op=True and timeout_ms on every call.

Each call: check the arguments (one CollectiveArgumentError per problem), build its frozen
options, then run on the group's backend in call order (inline, or on the group's thread with
async_op=True, returning a Work). A failure other than an argument error that every member saw
alike (a timeout, a dead peer) breaks the group: later calls raise GroupBrokenError until it is
destroyed and created again.
"""
import logging
import os
import socket
import threading
import time

import numpy as np

from . import types as T
from .errors import (BackendUnavailableError, CollectiveArgumentError, CollectiveError,
                     GroupBrokenError, GroupNotInitializedError, PeerDiedError)
from .rendezvous import default_rendezvous, remaining_s
from .tensors import check_op_dtype, check_same, view, view_list
from .work import Sequencer, Work

log = logging.getLogger("zray.util.collective")

_groups = {}
_groups_lock = threading.RLock()
_config = None


def get_config():
    global _config
    if _config is None:
        _config = T.CollectiveConfig.from_env()
    return _config


def set_config(config):
    """Replace the CollectiveConfig used by groups created from now on."""
    global _config
    if not isinstance(config, T.CollectiveConfig):
        raise CollectiveArgumentError(f"config must be a CollectiveConfig, got {config!r}")
    _config = config


class _Group:
    """A formed group as the API sees it: the backend's group, its order and its health."""

    def __init__(self, impl, name):
        self.impl, self.name = impl, name
        self.world_size, self.rank = impl.world_size, impl.rank
        self.backend = impl.backend
        self.seq = Sequencer(name)
        self.broken = None
        # The backend's allreduce of a flat host array, for the API's hot path (or None),
        # and its native path (True: done; False: nothing started, take allreduce_flat).
        self.allreduce_flat = getattr(impl, "allreduce_flat", None)
        self.allreduce_hot = getattr(impl, "allreduce_hot", None)

    def call(self, op_name, fn, timeout_ms, async_op, *args):
        """Run fn(*args, deadline) in the group's call order; async_op: return a Work."""
        if timeout_ms is None:
            timeout_ms = self.impl.config.timeout_ms
        if async_op:
            return Work(self.seq.run_async(lambda: self._run(op_name, fn, args, timeout_ms)),
                        self.name, self.rank, op_name)
        return self.seq.run_sync(self._run, op_name, fn, args, timeout_ms)

    def call_default(self, op_name, fn, *args):
        """call() of a synchronous call with the group's default timeout. The idle,
        healthy case is run_sync's and _run's inline: two frames fewer on the API's
        allreduce of a backend without a native path (the cpu backend's)."""
        seq = self.seq
        if seq.pending or self.broken is not None:
            return seq.run_sync(self._run, op_name, fn, args, self.impl.config.timeout_ms)
        with seq.lock:
            deadline = time.monotonic() + self.impl.config.timeout_ms / 1000
            try:
                return fn(*args, deadline)
            except Exception as exc:
                self._failed(op_name, exc)

    def _run(self, op_name, fn, args, timeout_ms):
        if self.broken is not None:
            raise GroupBrokenError(f"{op_name} refused: an earlier call failed "
                                   f"({self.broken})", group=self.name, rank=self.rank) \
                from self.broken
        deadline = time.monotonic() + timeout_ms / 1000     # from the start of the call
        try:
            return fn(*args, deadline)
        except Exception as exc:
            self._failed(op_name, exc)

    def _failed(self, op_name, exc):
        """Raise what a call that raised `exc` raises; break the group where it must."""
        if isinstance(exc, CollectiveArgumentError):
            if exc.peer is not None and self.backend == "cpu" and not self.impl.use_shm:
                self._break(exc)       # the peers saw other data: they cannot recover
            raise exc
        if isinstance(exc, CollectiveError):
            self._break(exc)
            raise exc
        self._break(exc)
        raise CollectiveError(f"{op_name} failed: {exc!r}", group=self.name,
                              rank=self.rank) from exc

    def _break(self, exc):
        if self.broken is None:
            self.broken = exc
            log.warning("collective group %r (rank %d) broken: %s", self.name, self.rank, exc)
            try:
                self.impl.abort()
            except Exception as abort_exc:     # noqa: BLE001 - best effort, logged
                log.debug("abort of %r failed: %r", self.name, abort_exc)

    def destroy(self):
        self.seq.shutdown()
        self.impl.destroy()


# -- checks ----------------------------------------------------------------------------------
def _check_name(group_name):
    if not isinstance(group_name, str) or not group_name:
        raise CollectiveArgumentError(f"group_name must be a non-empty string, got "
                                      f"{group_name!r}")


def _check_world(world_size, rank):
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise CollectiveArgumentError(f"world_size must be an int >= 1, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise CollectiveArgumentError(
            f"rank must be an int in [0, {world_size}), got {rank!r}")


def _check_rank(g, value, what):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < g.world_size:
        raise CollectiveArgumentError(f"{what} must be an int in [0, {g.world_size}), got "
                                      f"{value!r}", group=g.name, rank=g.rank)
    return value


def _group(group_name):
    try:
        g = _groups.get(group_name)       # a formed group: no lock (a dict read is atomic)
    except TypeError:                     # unhashable: _check_name says what is wrong
        g = None
    if g is not None:
        return g
    _check_name(group_name)
    with _groups_lock:
        g = _groups.get(group_name)
    if g is None:
        g = _form_declared(group_name)
    if g is None and group_name == "default" and os.environ.get(SPMD_ENV):
        g = _form_spmd_default()
    if g is None:
        raise GroupNotInitializedError(
            "the collective group is not initialized in this process: call "
            "init_collective_group() here or create_collective_group() from the driver",
            group=group_name)
    return g


# Under `python -m zray.launch --spmd` every rank runs the app; the launcher names the world
# here ("rank size backend"), and the first collective call on the default group forms it over
# the ranks: the job's communicator under MPI, else the cpu backend through the rendezvous.
SPMD_ENV = "ZRAY_SPMD_WORLD"


def _form_spmd_default():
    rank, size, backend = os.environ[SPMD_ENV].split()
    if backend == "mpi":
        from .backends.mpi import init_from_world
        init_from_world("mpi", "default")
    else:
        init_collective_group(int(size), int(rank), backend="cpu", group_name="default")
    with _groups_lock:
        return _groups.get("default")


def _argument(g, exc):
    """Re-raise a check's error with the group and rank in its message."""
    return CollectiveArgumentError(exc.message, group=g.name, rank=g.rank, peer=exc.peer)


# -- groups ----------------------------------------------------------------------------------
def _runtime_node_id():
    try:
        import zray
        if zray.is_initialized():
            return zray.get_runtime_context().get_node_id()
    except Exception as exc:      # noqa: BLE001 - no runtime: the host names the node
        log.debug("no zray node id: %r", exc)
    return socket.gethostname()


def _make_group(backend, world_size, rank, group_name, config):
    if backend == "cpu":
        from .backends.cpu import CpuGroup
        return CpuGroup(group_name, world_size, rank, config, _runtime_node_id())
    if backend == "mpi":
        from .backends.mpi import MpiGroup, mpi_available
        if not mpi_available():
            raise BackendUnavailableError("the mpi backend needs mpi4py (pip install "
                                          "'zray[mpi]')", group=group_name, rank=rank)
        return MpiGroup(group_name, world_size, rank, config, _runtime_node_id())
    from .backends.nccl import NcclGroup, nccl_available
    if not nccl_available():
        raise BackendUnavailableError("the nccl backend needs CuPy with NCCL (pip install "
                                      "'zray[gpu]')", group=group_name, rank=rank)
    return NcclGroup(group_name, world_size, rank, config, _runtime_node_id())


def init_collective_group(world_size, rank, backend=T.Backend.NCCL, group_name="default",
                          gloo_timeout=30000, *, timeout_ms=None, config=None):
    """Join (collectively: every rank calls it) the group `group_name` as `rank`."""
    _check_name(group_name)
    _check_world(world_size, rank)
    backend = T.normalize_backend(backend)
    config = config or get_config()
    timeout_ms = timeout_ms if timeout_ms is not None else max(gloo_timeout,
                                                               config.rendezvous_timeout_ms)
    T._check_timeout(timeout_ms)
    with _groups_lock:
        if group_name in _groups:
            raise CollectiveArgumentError("the group is already initialized in this process",
                                          group=group_name, rank=rank)
        _groups[group_name] = None         # reserved while forming
    try:
        deadline = time.monotonic() + timeout_ms / 1000
        impl = _make_group(backend, world_size, rank, group_name, config)
        joined = False          # a failed join cleans up itself (and may not own the record)
        try:
            if world_size == 1:
                members = [impl.my_info()]
            else:
                members = default_rendezvous().join(group_name, world_size, rank,
                                                    impl.my_info(), remaining_s(deadline))
                joined = True
            impl.form(members, deadline)
        except BaseException:
            impl.destroy()
            if joined:
                default_rendezvous().leave(group_name, rank)
            raise
        if joined:
            # form() is collective (every member read the infos before any returns), so the
            # join record can go now: a re-creation under this name starts clean.
            default_rendezvous().leave(group_name, rank)
    except BaseException:
        with _groups_lock:
            _groups.pop(group_name, None)
        raise
    with _groups_lock:
        _groups[group_name] = _Group(impl, group_name)
    log.debug("group %r formed: rank %d of %d on %s", group_name, rank, world_size, backend)


def create_collective_group(actors, world_size, ranks, backend=T.Backend.NCCL,
                            group_name="default", gloo_timeout=30000, *, timeout_ms=None):
    """Declare, from the driver, that `actors` form a group; each forms it on its first call."""
    _check_name(group_name)
    backend = T.normalize_backend(backend)
    if not isinstance(actors, (list, tuple)) or not isinstance(ranks, (list, tuple)):
        raise CollectiveArgumentError("actors and ranks must be lists", group=group_name)
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise CollectiveArgumentError(f"world_size must be an int >= 1, got {world_size!r}",
                                      group=group_name)
    if len(actors) != world_size or len(ranks) != world_size:
        raise CollectiveArgumentError(
            f"need world_size ({world_size}) actors and ranks, got {len(actors)} actors and "
            f"{len(ranks)} ranks", group=group_name)
    if sorted(r if isinstance(r, int) and not isinstance(r, bool) else -1 for r in ranks) \
            != list(range(world_size)):
        raise CollectiveArgumentError(
            f"ranks must be a permutation of 0..{world_size - 1}, got {list(ranks)}",
            group=group_name)
    ids = []
    for a in actors:
        actor_id = getattr(a, "_actor_id", None)
        if actor_id is None:
            raise CollectiveArgumentError(f"{a!r} is not an actor handle", group=group_name)
        ids.append(actor_id.hex())
    if len(set(ids)) != len(ids):
        raise CollectiveArgumentError("the same actor appears twice", group=group_name)
    timeout_s = (timeout_ms or max(gloo_timeout, get_config().rendezvous_timeout_ms)) / 1000
    default_rendezvous().declare(group_name, world_size, dict(zip(ids, ranks)), backend,
                                 timeout_s)


def _form_declared(group_name):
    """An actor's first call on a group the driver declared: form it now (as Ray does)."""
    try:
        import zray
        if not zray.is_initialized():
            return None
        actor_id = zray.get_runtime_context().get_actor_id()
    except Exception:             # noqa: BLE001 - no runtime, no declaration
        return None
    if actor_id is None:
        return None
    config = get_config()
    found = default_rendezvous().declared(group_name, actor_id,
                                          config.rendezvous_timeout_ms / 1000)
    if found is None:
        return None
    world_size, rank, backend = found
    try:
        init_collective_group(world_size, rank, backend, group_name)
    except CollectiveArgumentError:
        pass                       # formed meanwhile by another thread of this actor
    with _groups_lock:
        return _groups.get(group_name)


def _register(group_name, impl):
    """Register an already formed backend group (init_collective_group_from_world)."""
    with _groups_lock:
        if _groups.get(group_name) is not None:
            raise CollectiveArgumentError("the group is already initialized in this process",
                                          group=group_name, rank=impl.rank)
        _groups[group_name] = _Group(impl, group_name)


def destroy_collective_group(group_name="default"):
    """Leave the group here and free its resources (a no-op for an unknown name)."""
    _check_name(group_name)
    with _groups_lock:
        g = _groups.pop(group_name, None)
    if g is None:
        return
    rank = g.rank
    g.destroy()
    if rank == 0:
        from .rendezvous import default_rendezvous as rdv
        rdv().retire(group_name)


def is_group_initialized(group_name):
    with _groups_lock:
        return _groups.get(group_name) is not None


def get_rank(group_name="default"):
    """This process's rank in the group, -1 if it is not initialized here (as Ray)."""
    with _groups_lock:
        g = _groups.get(group_name)
    return g.rank if g is not None else -1


def get_collective_group_size(group_name="default"):
    """The group's world size, -1 if it is not initialized here (as Ray)."""
    with _groups_lock:
        g = _groups.get(group_name)
    return g.world_size if g is not None else -1


def get_group_handle(group_name="default"):
    return _group(group_name).impl


def get_backend(group_name="default"):
    return _group(group_name).backend


def new_group(ranks, group_name, parent_group="default", *, timeout_ms=None):
    """A subgroup of `parent_group` over `ranks` (called by those ranks only); a member's
    rank in it is its index in `ranks`. Same backend as the parent."""
    parent = _group(parent_group)
    if not isinstance(ranks, (list, tuple)) or not ranks:
        raise CollectiveArgumentError("ranks must be a non-empty list", group=group_name)
    for r in ranks:
        _check_rank(parent, r, "each rank of a subgroup")
    if len(set(ranks)) != len(ranks):
        raise CollectiveArgumentError(f"ranks repeat: {list(ranks)}", group=group_name)
    if parent.rank not in ranks:
        raise CollectiveArgumentError(f"rank {parent.rank} of {parent_group!r} is not in "
                                      f"{list(ranks)}", group=group_name, rank=parent.rank)
    _check_name(group_name)
    if parent.backend == "mpi":        # a sub-communicator, no rendezvous
        impl = parent.impl.subgroup(list(ranks), group_name, timeout_ms)
        _register(group_name, impl)
        return
    init_collective_group(len(ranks), list(ranks).index(parent.rank), parent.backend,
                          group_name, timeout_ms=timeout_ms)


# -- operations ------------------------------------------------------------------------------
def _checked(g, check):
    try:
        return check()
    except CollectiveArgumentError as exc:
        if exc.group is None:
            raise _argument(g, exc) from None
        raise


def allreduce(tensor, group_name="default", op=T.ReduceOp.SUM, *, timeout_ms=None,
              async_op=False):
    """Reduce `tensor` over the group; every rank gets the result in place."""
    g = _group(group_name)
    # The hot path (a training loop's): a numpy array, a synchronous call, the default
    # timeout. view()'s and check_op_dtype()'s checks in one expression, no TensorView;
    # anything else, valid or not, takes the general path below (which says what is wrong).
    if type(tensor) is np.ndarray and timeout_ms is None and not async_op and \
            type(op) is T.ReduceOp and g.allreduce_flat is not None:
        flags, kind = tensor.flags, tensor.dtype.kind
        if flags.c_contiguous and flags.writeable and kind in "iuf" and \
                (kind == "f" or op is not T.ReduceOp.AVG):
            flat = tensor if tensor.ndim == 1 else tensor.reshape(-1)
            hot, seq = g.allreduce_hot, g.seq
            if hot is not None and not seq.pending and g.broken is None:
                with seq.lock:                # call_default's idle case, and no deadline
                    try:
                        if hot(flat, op):
                            return None
                    except Exception as exc:
                        g._failed("allreduce", exc)
            return g.call_default("allreduce", g.allreduce_flat, flat, op)
    try:                                  # the checks inline: this is the hot call
        if timeout_ms is None and type(op) is T.ReduceOp:
            reduce_op = op                # the defaults: nothing to build
        else:
            opts = T.AllReduceOptions(timeout_ms=timeout_ms, reduce_op=op)
            timeout_ms, reduce_op = opts.timeout_ms, opts.reduce_op
        v = view(tensor)
        if reduce_op is not T.ReduceOp.SUM or v.array.dtype.kind == "b":
            check_op_dtype(reduce_op, v.array.dtype)
    except CollectiveArgumentError as exc:
        if exc.group is None:
            raise _argument(g, exc) from None
        raise
    return g.call("allreduce", g.impl.allreduce, timeout_ms, async_op, v, reduce_op)


def barrier(group_name="default", *, timeout_ms=None, async_op=False):
    g = _group(group_name)
    opts = _checked(g, lambda: T.BarrierOptions(timeout_ms=timeout_ms))
    return g.call("barrier", g.impl.barrier, opts.timeout_ms, async_op)


def reduce(tensor, dst_rank=0, group_name="default", op=T.ReduceOp.SUM, *, timeout_ms=None,
           async_op=False):
    """Reduce `tensor` over the group into dst_rank's tensor (the others' stay as they were)."""
    g = _group(group_name)
    _checked(g, lambda: _check_rank(g, dst_rank, "dst_rank"))
    opts = _checked(g, lambda: T.ReduceOptions(timeout_ms=timeout_ms, reduce_op=op,
                                               root_rank=dst_rank))
    v = _checked(g, lambda: view(tensor))
    _checked(g, lambda: check_op_dtype(op, v.array.dtype))
    return g.call("reduce", g.impl.reduce, opts.timeout_ms, async_op,
                  v, op, dst_rank)


def broadcast(tensor, src_rank=0, group_name="default", *, timeout_ms=None, async_op=False):
    g = _group(group_name)
    _checked(g, lambda: _check_rank(g, src_rank, "src_rank"))
    opts = _checked(g, lambda: T.BroadcastOptions(timeout_ms=timeout_ms, root_rank=src_rank))
    v = _checked(g, lambda: view(tensor))
    return g.call("broadcast", g.impl.broadcast, opts.timeout_ms, async_op,
                  v, src_rank)


def allgather(tensor_list, tensor, group_name="default", *, timeout_ms=None, async_op=False):
    """tensor_list[k] <- rank k's tensor, on every rank."""
    g = _group(group_name)
    opts = _checked(g, lambda: T.AllGatherOptions(timeout_ms=timeout_ms))
    v = _checked(g, lambda: view(tensor, writable=False))
    outs = _checked(g, lambda: view_list(tensor_list, g.world_size, like=v))
    return g.call("allgather", g.impl.allgather, opts.timeout_ms, async_op,
                  outs, v)


def reducescatter(tensor, tensor_list, group_name="default", op=T.ReduceOp.SUM, *,
                  timeout_ms=None, async_op=False):
    """tensor <- the reduction over ranks of their tensor_list[my rank]."""
    g = _group(group_name)
    opts = _checked(g, lambda: T.ReduceScatterOptions(timeout_ms=timeout_ms, reduce_op=op))
    v = _checked(g, lambda: view(tensor))
    ins = _checked(g, lambda: view_list(tensor_list, g.world_size, like=v, writable=False))
    _checked(g, lambda: check_op_dtype(op, v.array.dtype))
    return g.call("reducescatter", g.impl.reducescatter, opts.timeout_ms, async_op,
                  v, ins, op)


def gather(tensor_list, tensor, dst_rank=0, group_name="default", *, timeout_ms=None,
           async_op=False):
    """On dst_rank, tensor_list[k] <- rank k's tensor; other ranks pass tensor_list=None."""
    g = _group(group_name)
    _checked(g, lambda: _check_rank(g, dst_rank, "dst_rank"))
    opts = _checked(g, lambda: T.GatherOptions(timeout_ms=timeout_ms, root_rank=dst_rank))
    v = _checked(g, lambda: view(tensor, writable=False))
    outs = None
    if g.rank == dst_rank:
        outs = _checked(g, lambda: view_list(tensor_list, g.world_size, like=v))
    return g.call("gather", g.impl.gather, opts.timeout_ms, async_op,
                  outs, v, dst_rank)


def scatter(tensor, tensor_list=None, src_rank=0, group_name="default", *, timeout_ms=None,
            async_op=False):
    """tensor <- src_rank's tensor_list[my rank]; other ranks pass tensor_list=None."""
    g = _group(group_name)
    _checked(g, lambda: _check_rank(g, src_rank, "src_rank"))
    opts = _checked(g, lambda: T.ScatterOptions(timeout_ms=timeout_ms, root_rank=src_rank))
    v = _checked(g, lambda: view(tensor))
    ins = None
    if g.rank == src_rank:
        ins = _checked(g, lambda: view_list(tensor_list, g.world_size, like=v,
                                            writable=False))
    return g.call("scatter", g.impl.scatter, opts.timeout_ms, async_op,
                  v, ins, src_rank)


def alltoall(output_tensor_list, input_tensor_list, group_name="default", *, timeout_ms=None,
             async_op=False):
    """output_tensor_list[k] <- rank k's input_tensor_list[my rank]."""
    g = _group(group_name)
    opts = _checked(g, lambda: T.AllToAllOptions(timeout_ms=timeout_ms))
    ins = _checked(g, lambda: view_list(input_tensor_list, g.world_size,
                                        what="input_tensor_list", writable=False))
    outs = _checked(g, lambda: view_list(output_tensor_list, g.world_size,
                                         what="output_tensor_list", like=ins[0]))
    return g.call("alltoall", g.impl.alltoall, opts.timeout_ms, async_op,
                  outs, ins)


def send(tensor, dst_rank, group_name="default", *, timeout_ms=None, async_op=False):
    g = _group(group_name)
    _checked(g, lambda: _check_rank(g, dst_rank, "dst_rank"))
    if dst_rank == g.rank:
        raise CollectiveArgumentError("send to itself", group=group_name, rank=g.rank)
    opts = _checked(g, lambda: T.SendOptions(timeout_ms=timeout_ms, dst_rank=dst_rank))
    v = _checked(g, lambda: view(tensor, writable=False))
    return g.call("send", g.impl.send, opts.timeout_ms, async_op,
                  v, dst_rank)


def recv(tensor, src_rank, group_name="default", *, timeout_ms=None, async_op=False):
    g = _group(group_name)
    _checked(g, lambda: _check_rank(g, src_rank, "src_rank"))
    if src_rank == g.rank:
        raise CollectiveArgumentError("recv from itself", group=group_name, rank=g.rank)
    opts = _checked(g, lambda: T.RecvOptions(timeout_ms=timeout_ms, src_rank=src_rank))
    v = _checked(g, lambda: view(tensor))
    return g.call("recv", g.impl.recv, opts.timeout_ms, async_op,
                  v, src_rank)


def synchronize(gpu_id=None):
    """Wait for the GPU's pending work (nccl); a no-op without CuPy."""
    import sys
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        if gpu_id is None:
            cupy.cuda.Device().synchronize()
        else:
            cupy.cuda.Device(gpu_id).synchronize()


def _reset_for_tests():
    with _groups_lock:
        names = [n for n, g in _groups.items() if g is not None]
    for n in names:
        destroy_collective_group(n)


__all__ = [name for name in dir() if not name.startswith("_") and name not in (
    "log", "logging", "os", "socket", "threading", "time", "T", "PeerDiedError")]
