"""TorchConfig: torch.distributed in each worker, set up as torchrun does."""
import logging
import os
from dataclasses import dataclass
from typing import Optional

from ..backend import BackendConfig

logger = logging.getLogger("zray.train")

BACKENDS = ("gloo", "nccl", "zray", "mpi")


@dataclass
class TorchConfig(BackendConfig):
    """backend: "gloo" (CPU), "nccl" (GPU), or beyond Ray "zray" (torch.distributed over
    zray.util.collective; `zray_collective_backend` picks its "cpu" or "mpi" backend). None
    picks nccl when the workers have GPUs, gloo otherwise. timeout_s bounds every collective
    (and the rendezvous)."""
    backend: Optional[str] = None
    init_method: str = "env"
    timeout_s: int = 1800
    zray_collective_backend: str = "cpu"
    # torch._dynamo: DDP imports it lazily at construction, ~1.8 s of CPU per worker here.
    preload_modules = ("torch", "torch.distributed", "torch.nn.parallel", "torch._dynamo")

    def __post_init__(self):
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"TorchConfig.backend must be one of {BACKENDS} or None, got "
                             f"{self.backend!r}")
        if self.init_method not in ("env", "tcp"):
            raise ValueError(f"TorchConfig.init_method must be 'env' or 'tcp', got "
                             f"{self.init_method!r}")
        if not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0:
            raise ValueError(f"TorchConfig.timeout_s must be > 0, got {self.timeout_s!r}")

    def resolved_backend(self):
        if self.backend is not None:
            return self.backend
        return "nccl" if _uses_gpu() else "gloo"

    def on_worker_start(self, context):
        import datetime
        import torch
        import torch.distributed as dist
        backend = self.resolved_backend()
        if _uses_gpu():
            # Its own GPU by index in the node's list, not local_rank: the node may have GPUs
            # that belong to other work (zray/core/gpus.py).
            from .train_loop_utils import get_device
            torch.cuda.set_device(get_device())
        if context.world_size <= 1 and backend != "zray":
            return
        if backend == "zray":
            from .zray_backend import register
            register(self.zray_collective_backend)
        if self.init_method == "env":
            init = "env://"
        else:
            init = f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        dist.init_process_group(backend=backend, init_method=init, rank=context.world_rank,
                                world_size=context.world_size,
                                timeout=datetime.timedelta(seconds=self.timeout_s))
        logger.debug("rank %d: torch.distributed up (%s)", context.world_rank, backend)

    def on_worker_end(self, context):
        import sys
        if "torch" not in sys.modules:
            return
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception as exc:      # a broken group at the end of a failed loop
                logger.debug("destroy_process_group failed: %r", exc)


def _uses_gpu():
    """A worker uses its GPU when zray gave it one (zray.get_gpu_ids()) and torch sees CUDA."""
    import zray
    if not (zray.is_initialized() and zray.get_gpu_ids()):
        return False
    import torch
    return torch.cuda.is_available()
