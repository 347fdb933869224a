"""Tensors as the backends see them: a flat, writable, contiguous array view.

numpy arrays and torch CPU tensors become numpy views sharing memory (results land in place);
CuPy arrays and torch CUDA tensors (through DLPack) become CuPy views, for the nccl backend.
torch and CuPy are looked up in sys.modules only: a tensor of theirs implies they are imported.
"""
import sys
from typing import NamedTuple

import numpy as np

from .errors import CollectiveArgumentError
from .types import ReduceOp

HOST, DEVICE = "host", "device"
_HOST_KINDS = frozenset("biufc")


class TensorView(NamedTuple):
    """A tuple (cheap to build on every call; immutable like a frozen dataclass)."""
    array: object          # numpy.ndarray (host) or cupy.ndarray (device), same memory
    kind: str              # "numpy", "torch", "cupy", "torch_cuda"
    where: str             # HOST or DEVICE

    @property
    def nbytes(self):
        return self.array.nbytes

    def descriptor(self):
        return (tuple(self.array.shape), np.dtype(self.array.dtype).str)

    def flat(self):
        a = self.array
        return a if a.ndim == 1 else a.reshape(-1)


def _is_torch(t):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(t, torch.Tensor)


def _is_cupy(t):
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(t, cupy.ndarray)


def view(tensor, *, what="tensor", writable=True):
    """The TensorView of one tensor, or CollectiveArgumentError naming what is wrong."""
    if type(tensor) is np.ndarray:      # the common case, checked in one expression
        flags = tensor.flags
        if flags.c_contiguous and (flags.writeable or not writable) and \
                tensor.dtype.kind in _HOST_KINDS:
            return TensorView(tensor, "numpy", HOST)
    if isinstance(tensor, np.ndarray):
        array, kind, where = tensor, "numpy", HOST
    elif _is_torch(tensor):
        if tensor.is_cuda:
            import cupy
            if not tensor.is_contiguous():
                raise CollectiveArgumentError(f"{what} must be contiguous")
            array, kind, where = cupy.from_dlpack(tensor.detach()), "torch_cuda", DEVICE
        elif tensor.device.type != "cpu":
            raise CollectiveArgumentError(f"{what} on device {tensor.device} is not supported")
        else:
            if not tensor.is_contiguous():
                raise CollectiveArgumentError(f"{what} must be contiguous")
            if tensor.is_sparse or tensor.is_quantized:
                raise CollectiveArgumentError(f"{what} layout is not supported")
            try:
                array = tensor.detach().numpy()
            except (TypeError, RuntimeError) as exc:    # bfloat16 has no numpy twin
                raise CollectiveArgumentError(f"{what}: {exc}") from None
            kind, where = "torch", HOST
    elif _is_cupy(tensor):
        array, kind, where = tensor, "cupy", DEVICE
    else:
        raise CollectiveArgumentError(
            f"{what} must be a numpy array, a torch tensor or a CuPy array, "
            f"got {type(tensor).__name__}")
    if where == HOST:
        if not array.flags.c_contiguous:
            raise CollectiveArgumentError(f"{what} must be C-contiguous")
        if writable and not array.flags.writeable:
            raise CollectiveArgumentError(
                f"{what} is read-only (values from zray.get are): pass a copy")
        if array.dtype.hasobject or array.dtype.kind not in "biufc":
            raise CollectiveArgumentError(f"{what} has unsupported dtype {array.dtype}")
    elif not array.flags.c_contiguous:
        raise CollectiveArgumentError(f"{what} must be C-contiguous")
    return TensorView(array, kind, where)


def view_list(tensors, length, *, what="tensor_list", like=None, writable=True):
    """Views of a list of `length` tensors, all of one shape and dtype (that of `like`)."""
    if not isinstance(tensors, (list, tuple)):
        raise CollectiveArgumentError(f"{what} must be a list, got {type(tensors).__name__}")
    if len(tensors) != length:
        raise CollectiveArgumentError(
            f"{what} must hold {length} tensors (one per rank), got {len(tensors)}")
    views = [view(t, what=f"{what}[{i}]", writable=writable) for i, t in enumerate(tensors)]
    ref = like if like is not None else (views[0] if views else None)
    for i, v in enumerate(views):
        check_same(ref, v, f"{what}[{i}]")
    return views


def check_same(ref, other, what):
    if ref is None:
        return
    if tuple(ref.array.shape) != tuple(other.array.shape) or ref.array.dtype != other.array.dtype:
        raise CollectiveArgumentError(
            f"{what} has shape {tuple(other.array.shape)} and dtype {other.array.dtype}, "
            f"expected {tuple(ref.array.shape)} and {ref.array.dtype}")
    if ref.where != other.where:
        raise CollectiveArgumentError(f"{what} is on the {other.where}, expected {ref.where}")


def check_op_dtype(op, dtype):
    kind = dtype.kind if isinstance(dtype, np.dtype) else np.dtype(dtype).kind
    if op is ReduceOp.AVG and kind not in "fc":
        raise CollectiveArgumentError(f"ReduceOp.AVG needs a floating dtype, got {dtype}")
    if kind == "b" and op in (ReduceOp.SUM, ReduceOp.PRODUCT, ReduceOp.AVG):
        raise CollectiveArgumentError(f"{op} is not defined on bool tensors")


_UFUNC = {ReduceOp.SUM: np.add, ReduceOp.AVG: np.add, ReduceOp.PRODUCT: np.multiply,
          ReduceOp.MIN: np.minimum, ReduceOp.MAX: np.maximum}


def reducer(op):
    """reduce(into, other): into <- into (op) other, in place, for numpy arrays."""
    ufunc = _UFUNC[op]

    def reduce_into(into, other):
        ufunc(into, other, out=into)
    return reduce_into


def finish_avg(array, world_size):
    """AVG is SUM followed by this division on the reduced values."""
    np.divide(array, world_size, out=array)
