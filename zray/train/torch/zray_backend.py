"""A torch.distributed backend over zray.util.collective: `TorchConfig(backend="zray")`.

torch lets a plugin backend's creator return a Python subclass of ProcessGroup
(`Backend.register_backend`, `issubclass(type(backend_class), ProcessGroup)` in
`_new_process_group_helper`), so each c10d call below becomes the zray collective of the same
name on a group named after the run's attempt: "cpu" (shared memory inside a node, ZeroMQ
between nodes) or "mpi" (`TorchConfig(zray_collective_backend="mpi")`).

Limits: every call runs synchronously and returns a completed Work (DDP cannot overlap its
allreduce with the backward pass); CPU tensors only (GPU tensors: use nccl); alltoall with
unequal splits is not supported.
"""
import logging
import os

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import _create_work_from_future
from torch.futures import Future

import zray.util.collective as col

logger = logging.getLogger("zray.train")

NAME = "zray"
_registered = {}


def _done(value):
    fut = Future()
    fut.set_result(value)
    return _create_work_from_future(fut)


def _op(reduce_op):
    table = {dist.ReduceOp.SUM: col.ReduceOp.SUM, dist.ReduceOp.PRODUCT: col.ReduceOp.PRODUCT,
             dist.ReduceOp.MIN: col.ReduceOp.MIN, dist.ReduceOp.MAX: col.ReduceOp.MAX,
             dist.ReduceOp.AVG: col.ReduceOp.AVG}
    for torch_op, zray_op in table.items():
        if reduce_op == torch_op:
            return zray_op
    raise ValueError(f"the zray torch backend does not support {reduce_op}")


class _Contiguous:
    """A contiguous stand-in for a tensor, copied back on exit when it was not the tensor."""

    def __init__(self, tensor):
        self.tensor = tensor
        self.buf = tensor if tensor.is_contiguous() else tensor.contiguous()

    def __enter__(self):
        return self.buf

    def __exit__(self, *exc):
        if self.buf is not self.tensor and exc[0] is None:
            self.tensor.copy_(self.buf)


class ZrayProcessGroup(dist.ProcessGroup):
    def __init__(self, rank, size, group_name, backend, timeout_ms):
        super().__init__(rank, size)
        self._zray_group = group_name
        self.timeout_ms = timeout_ms
        col.init_collective_group(size, rank, backend, group_name, timeout_ms=timeout_ms)

    def getBackendName(self):
        return NAME

    def _kw(self):
        return {"group_name": self._zray_group, "timeout_ms": self.timeout_ms}

    # -- collectives ----------------------------------------------------------------------------
    def allreduce(self, tensors, opts=None):
        op = _op(opts.reduceOp) if opts is not None else col.ReduceOp.SUM
        for t in tensors:
            with _Contiguous(t) as buf:
                col.allreduce(buf, op=op, **self._kw())
        return _done(tensors)

    def allreduce_coalesced(self, tensors, opts=None):
        return self.allreduce(tensors, opts)

    def broadcast(self, tensors, opts=None):
        root = opts.rootRank if opts is not None else 0
        for t in tensors:
            with _Contiguous(t) as buf:
                col.broadcast(buf, src_rank=root, **self._kw())
        return _done(tensors)

    def reduce(self, tensors, opts=None):
        for t in tensors:
            with _Contiguous(t) as buf:
                col.reduce(buf, dst_rank=opts.rootRank, op=_op(opts.reduceOp), **self._kw())
        return _done(tensors)

    def allgather(self, output_lists, input_tensors, opts=None):
        for outs, t in zip(output_lists, input_tensors):
            bufs = [o if o.is_contiguous() else torch.empty_like(o) for o in outs]
            col.allgather(bufs, t.contiguous(), **self._kw())
            for o, b in zip(outs, bufs):
                if o is not b:
                    o.copy_(b)
        return _done(output_lists)

    def _allgather_base(self, output, input, opts=None):
        with _Contiguous(output) as buf:
            col.allgather(list(buf.view(self.size(), -1).unbind(0)), input.contiguous().view(-1),
                          **self._kw())
        return _done([output])

    def allgather_into_tensor_coalesced(self, outputs, inputs, opts=None):
        for o, i in zip(outputs, inputs):
            self._allgather_base(o, i, opts)
        return _done(outputs)

    def reduce_scatter(self, outputs, input_lists, opts=None):
        op = _op(opts.reduceOp) if opts is not None else col.ReduceOp.SUM
        for out, ins in zip(outputs, input_lists):
            with _Contiguous(out) as buf:
                col.reducescatter(buf, [i.contiguous() for i in ins], op=op, **self._kw())
        return _done(outputs)

    def _reduce_scatter_base(self, output, input, opts=None):
        op = _op(opts.reduceOp) if opts is not None else col.ReduceOp.SUM
        parts = list(input.contiguous().view(self.size(), -1).unbind(0))
        with _Contiguous(output) as buf:
            col.reducescatter(buf.view(-1), [p.clone() for p in parts], op=op, **self._kw())
        return _done([output])

    def gather(self, output_lists, input_tensors, opts=None):
        root = opts.rootRank
        outs = output_lists[0] if self.rank() == root else None
        col.gather(outs, input_tensors[0].contiguous(), dst_rank=root, **self._kw())
        return _done(output_lists)

    def scatter(self, output_tensors, input_lists, opts=None):
        root = opts.rootRank
        ins = [i.contiguous() for i in input_lists[0]] if self.rank() == root else None
        with _Contiguous(output_tensors[0]) as buf:
            col.scatter(buf, ins, src_rank=root, **self._kw())
        return _done(output_tensors)

    def alltoall(self, output_tensors, input_tensors, opts=None):
        col.alltoall(list(output_tensors), [i.contiguous() for i in input_tensors],
                     **self._kw())
        return _done(output_tensors)

    def alltoall_base(self, output, input, output_split_sizes, input_split_sizes, opts=None):
        if output_split_sizes or input_split_sizes:
            raise NotImplementedError("the zray torch backend: alltoall with split sizes")
        with _Contiguous(output) as buf:
            col.alltoall(list(buf.view(self.size(), -1).unbind(0)),
                         [p.contiguous() for p in input.view(self.size(), -1).unbind(0)],
                         **self._kw())
        return _done([output])

    def send(self, tensors, dst_rank, tag=0):
        for t in tensors:
            col.send(t.contiguous(), dst_rank, **self._kw())
        return _done(tensors)

    def recv(self, tensors, src_rank, tag=0):
        for t in tensors:
            with _Contiguous(t) as buf:
                col.recv(buf, src_rank, **self._kw())
        return _done(tensors)

    def barrier(self, opts=None):
        col.barrier(**self._kw())
        return _done([])

    def shutdown(self):
        if col.is_group_initialized(self._zray_group):
            col.destroy_collective_group(self._zray_group)


def _create(dist_opts, pg_options):
    base = os.environ.get("ZRAY_TRAIN_GROUP") or "zray-torch"
    name = f"{base}-{dist_opts.group_id}"
    timeout_ms = int(dist_opts.timeout.total_seconds() * 1000)
    backend = os.environ.get("ZRAY_TORCH_COLLECTIVE_BACKEND", "cpu")
    logger.debug("zray torch backend: group %s, rank %d of %d over %s", name,
                 dist_opts.group_rank, dist_opts.group_size, backend)
    return ZrayProcessGroup(dist_opts.group_rank, dist_opts.group_size, name, backend,
                            timeout_ms)


def register(collective_backend="cpu"):
    """Makes "zray" a torch.distributed backend in this process (idempotent)."""
    os.environ["ZRAY_TORCH_COLLECTIVE_BACKEND"] = collective_backend
    if NAME not in _registered:
        dist.Backend.register_backend(NAME, _create, extended_api=True, devices=["cpu"])
        _registered[NAME] = True
