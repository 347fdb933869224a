"""The nccl backend: skipped cleanly without CuPy or a GPU (NCCL refuses two ranks on one
GPU, so a one-GPU machine checks world size 1 only)."""
import pytest

import zray.util.collective as col
from zray.util.collective.backends.nccl import nccl_available

pytestmark = pytest.mark.skipif(not nccl_available(), reason="no CuPy with NCCL and a GPU")


def test_world_of_one_on_gpu_0():
    import cupy
    col.init_collective_group(1, 0, "nccl", "gpu-solo")
    try:
        x = cupy.arange(8, dtype=cupy.float32)
        col.allreduce(x, "gpu-solo")
        assert cupy.asnumpy(x).tolist() == list(range(8))
        outs = [cupy.zeros(8, cupy.float32)]
        col.allgather(outs, x, "gpu-solo")
        assert cupy.asnumpy(outs[0]).tolist() == list(range(8))
        col.barrier("gpu-solo")
    finally:
        col.destroy_collective_group("gpu-solo")


def test_torch_cuda_through_dlpack():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    col.init_collective_group(1, 0, "nccl", "gpu-torch")
    try:
        t = torch.ones(4, device="cuda:0")
        col.allreduce(t, "gpu-torch", col.ReduceOp.AVG)
        assert t.cpu().tolist() == [1.0] * 4
    finally:
        col.destroy_collective_group("gpu-torch")


def test_nccl_module_imports_without_cupy():
    import importlib
    importlib.import_module("zray.util.collective.backends.nccl")
