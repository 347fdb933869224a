"""The nccl backend: CuPy's NCCL (cupy-cuda12x + nvidia-nccl-cu12, the `gpu` extra).

Imported only when a group asks for it. Formation: rank 0 makes the NCCL unique id and it
travels in its MemberInfo through the rendezvous (no polling); every member then builds the
communicator on its device. The device is the one the tensors live on, chosen by index with
cupy.cuda.Device(i) (never by masking CUDA_VISIBLE_DEVICES: NCCL's cuMem/NVLS paths break
when each process sees one GPU, Ray #61073); by default the first GPU zray assigned to the
actor (zray.get_gpu_ids()), at its index in the node's CUDA_VISIBLE_DEVICES, else device 0. One non-blocking stream per group carries every
call; a call returns after its stream synchronized (polled against the deadline, so a dead
member is a timeout or an error, not a hang: the communicator is then aborted). torch CUDA
tensors come in through DLPack (tensors.py); send/recv run on the group's communicator
(NCCL point-to-point), so no communicator is made per pair.
"""
import importlib.util
import logging
import time

from ..errors import CollectiveArgumentError, CollectiveTimeoutError
from ..types import ReduceOp
from .base import BaseGroup, MemberInfo
from .liveness import LocalPeers, ProcessId

log = logging.getLogger("zray.util.collective")


def nccl_available():
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        from cupy.cuda import nccl  # noqa: F401
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:                # noqa: BLE001 - no driver, no NCCL, no GPU
        return False


def _default_device():
    """The index (in CUDA_VISIBLE_DEVICES, the node's list) of this worker's first GPU."""
    from ....core.gpus import device_indices
    try:
        indices = device_indices()
    except Exception:                # noqa: BLE001 - outside a worker
        indices = []
    return indices[0] if indices else 0


class NcclGroup(BaseGroup):
    backend = "nccl"
    use_shm = False

    def __init__(self, name, world_size, rank, config, node_id, device=None):
        super().__init__(name, world_size, rank, config)
        import cupy
        from cupy.cuda import nccl
        self.cupy, self.nccl, self.node_id = cupy, nccl, node_id
        self.device = _default_device() if device is None else int(device)
        self.comm = self.stream = None
        self.peers = LocalPeers(name, rank, {})
        self._uid = nccl.get_unique_id() if rank == 0 else None

    def my_info(self):
        extra = {"nccl_id": self._uid} if self.rank == 0 else {}
        return MemberInfo(self.rank, self.node_id, ProcessId.current(), "", extra)

    def form(self, members, deadline):
        self.peers = LocalPeers(self.name, self.rank,
                                {m.rank: m.process for m in members
                                 if m.node_id == self.node_id and m.rank != self.rank})
        with self.cupy.cuda.Device(self.device):
            self.stream = self.cupy.cuda.Stream(non_blocking=True)
            self.comm = self.nccl.NcclCommunicator(self.world_size, members[0].extra["nccl_id"],
                                                   self.rank)

    def destroy(self):
        if self.comm is not None:
            try:
                self.comm.destroy()
            except Exception as exc:           # noqa: BLE001 - logged, the group is gone
                log.debug("nccl destroy of %r: %r", self.name, exc)
        self.comm = None

    def abort(self):
        if self.comm is not None:
            try:
                self.comm.abort()
            except Exception as exc:           # noqa: BLE001 - best effort
                log.debug("nccl abort of %r: %r", self.name, exc)
            self.comm = None

    # -- helpers ---------------------------------------------------------------------------
    def _types(self, array):
        n = self.nccl
        table = {"float32": n.NCCL_FLOAT32, "float64": n.NCCL_FLOAT64,
                 "float16": n.NCCL_FLOAT16, "int32": n.NCCL_INT32, "int64": n.NCCL_INT64,
                 "uint8": n.NCCL_UINT8, "int8": n.NCCL_INT8, "uint32": n.NCCL_UINT32,
                 "uint64": n.NCCL_UINT64}
        try:
            return table[str(array.dtype)]
        except KeyError:
            raise CollectiveArgumentError(f"nccl has no type for {array.dtype}",
                                          group=self.name, rank=self.rank) from None

    def _op(self, op):
        n = self.nccl
        return {ReduceOp.SUM: n.NCCL_SUM, ReduceOp.AVG: n.NCCL_SUM, ReduceOp.PRODUCT: n.NCCL_PROD,
                ReduceOp.MIN: n.NCCL_MIN, ReduceOp.MAX: n.NCCL_MAX}[op]

    def _device_of(self, array):
        dev = array.device.id
        if dev != self.device:
            raise CollectiveArgumentError(f"tensor on GPU {dev}, the group uses GPU "
                                          f"{self.device}", group=self.name, rank=self.rank)

    def _run(self, what, launch, deadline):
        with self.cupy.cuda.Device(self.device):
            launch(self.stream.ptr)
            event = self.stream.record()
            interval = self.config.liveness_interval_ms / 1000
            next_check = time.monotonic() + interval
            while not event.done:
                time.sleep(2e-5)
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + interval
                    self.peers.check()
                    if now >= deadline:
                        raise CollectiveTimeoutError(f"{what} timed out on GPU {self.device}",
                                                     group=self.name, rank=self.rank)

    def _flat(self, view):
        a = view.flat()
        self._device_of(a)
        return a

    # -- operations ------------------------------------------------------------------------
    def barrier(self, deadline):
        one = self.cupy.zeros(1, self.cupy.float32)
        self._run("barrier", lambda s: self.comm.allReduce(one.data.ptr, one.data.ptr, 1,
                                                           self.nccl.NCCL_FLOAT32,
                                                           self.nccl.NCCL_SUM, s), deadline)

    def allreduce(self, view, op, deadline):
        a = self._flat(view)
        self._run("allreduce", lambda s: self.comm.allReduce(
            a.data.ptr, a.data.ptr, a.size, self._types(a), self._op(op), s), deadline)
        if op is ReduceOp.AVG:
            with self.cupy.cuda.Device(self.device), self.stream:
                a /= self.world_size
            self.stream.synchronize()

    def reduce(self, view, op, root, deadline):
        a = self._flat(view)
        out = a if self.rank == root else self.cupy.empty_like(a)
        self._run("reduce", lambda s: self.comm.reduce(
            a.data.ptr, out.data.ptr, a.size, self._types(a), self._op(op), root, s), deadline)
        if op is ReduceOp.AVG and self.rank == root:
            with self.cupy.cuda.Device(self.device), self.stream:
                a /= self.world_size
            self.stream.synchronize()

    def broadcast(self, view, root, deadline):
        a = self._flat(view)
        self._run("broadcast", lambda s: self.comm.broadcast(
            a.data.ptr, a.data.ptr, a.size, self._types(a), root, s), deadline)

    def allgather(self, outs, view, deadline):
        a = self._flat(view)
        buf = self.cupy.empty((self.world_size, a.size), a.dtype)
        self._run("allgather", lambda s: self.comm.allGather(
            a.data.ptr, buf.data.ptr, a.size, self._types(a), s), deadline)
        for k, o in enumerate(outs):
            o.flat()[:] = buf[k]
        self.cupy.cuda.Device(self.device).synchronize()

    def reducescatter(self, out, ins, op, deadline):
        a = self._flat(out)
        src = self.cupy.concatenate([v.flat() for v in ins])
        self._run("reducescatter", lambda s: self.comm.reduceScatter(
            src.data.ptr, a.data.ptr, a.size, self._types(a), self._op(op), s), deadline)
        if op is ReduceOp.AVG:
            with self.cupy.cuda.Device(self.device), self.stream:
                a /= self.world_size
            self.stream.synchronize()

    def _grouped(self, what, calls, deadline):
        def launch(s):
            self.nccl.groupStart()
            try:
                for c in calls:
                    c(s)
            finally:
                self.nccl.groupEnd()
        self._run(what, launch, deadline)

    def gather(self, outs, view, root, deadline):
        a = self._flat(view)
        t = self._types(a)
        calls = [lambda s: self.comm.send(a.data.ptr, a.size, t, root, s)] \
            if self.rank != root else []
        if self.rank == root:
            outs[root].flat()[:] = a
            calls += [(lambda k: lambda s: self.comm.recv(outs[k].flat().data.ptr, a.size, t,
                                                          k, s))(k)
                      for k in range(self.world_size) if k != root]
        self._grouped("gather", calls, deadline)

    def scatter(self, out, ins, root, deadline):
        a = self._flat(out)
        t = self._types(a)
        if self.rank == root:
            a[:] = ins[root].flat()
            calls = [(lambda k: lambda s: self.comm.send(ins[k].flat().data.ptr, a.size, t, k,
                                                         s))(k)
                     for k in range(self.world_size) if k != root]
        else:
            calls = [lambda s: self.comm.recv(a.data.ptr, a.size, t, root, s)]
        self._grouped("scatter", calls, deadline)

    def alltoall(self, outs, ins, deadline):
        t = self._types(ins[0].flat())
        m = ins[0].flat().size
        outs[self.rank].flat()[:] = ins[self.rank].flat()
        calls = []
        for k in range(self.world_size):
            if k != self.rank:
                calls.append((lambda k: lambda s: self.comm.send(ins[k].flat().data.ptr, m, t,
                                                                 k, s))(k))
                calls.append((lambda k: lambda s: self.comm.recv(outs[k].flat().data.ptr, m, t,
                                                                 k, s))(k))
        self._grouped("alltoall", calls, deadline)

    def send(self, view, dst, deadline):
        a = self._flat(view)
        self._run("send", lambda s: self.comm.send(a.data.ptr, a.size, self._types(a), dst, s),
                  deadline)

    def recv(self, view, src, deadline):
        a = self._flat(view)
        self._run("recv", lambda s: self.comm.recv(a.data.ptr, a.size, self._types(a), src, s),
                  deadline)
