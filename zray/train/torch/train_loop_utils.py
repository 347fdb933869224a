"""prepare_model, prepare_data_loader, get_device, enable_reproducibility."""
import logging
import os
import random

import torch

from ..session import get_context

logger = logging.getLogger("zray.train")


def get_device():
    """The CUDA device of this worker's first GPU, by its index in the node's
    CUDA_VISIBLE_DEVICES (zray/core/gpus.py: devices are never masked per worker), else cpu."""
    from ...core.gpus import device_indices
    indices = device_indices() if torch.cuda.is_available() else []
    if indices:
        return torch.device("cuda", indices[0] % torch.cuda.device_count())
    return torch.device("cpu")


def get_devices():
    return [get_device()]


def prepare_model(model, move_to_device=True, parallel_strategy="ddp",
                  parallel_strategy_kwargs=None):
    """Moves the model to this worker's device and wraps it in DistributedDataParallel
    (parallel_strategy="ddp") or FullyShardedDataParallel ("fsdp") when there are several
    workers; None returns it unwrapped."""
    if parallel_strategy not in ("ddp", "fsdp", None):
        raise ValueError(f"parallel_strategy must be 'ddp', 'fsdp' or None, got "
                         f"{parallel_strategy!r}")
    device = get_device()
    if move_to_device:
        model = model.to(device if move_to_device is True else move_to_device)
    kwargs = dict(parallel_strategy_kwargs or {})
    import torch.distributed as dist
    if parallel_strategy is None or get_context().get_world_size() <= 1 \
            or not dist.is_initialized():
        return model
    if parallel_strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel
        if device.type == "cuda":
            kwargs.setdefault("device_ids", [device])
            kwargs.setdefault("output_device", device)
        return DistributedDataParallel(model, **kwargs)
    from torch.distributed.fsdp import FullyShardedDataParallel
    kwargs.setdefault("device_id", device)     # named even on CPU, which FSDP would refuse
    return FullyShardedDataParallel(model, **kwargs)


class _DeviceDataLoader:
    """A DataLoader whose batches come out on `device` (attributes pass through, so
    `loader.sampler.set_epoch(e)` works)."""

    def __init__(self, loader, device):
        self._loader = loader
        self._device = device

    def __len__(self):
        return len(self._loader)

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def _move(self, item):
        if isinstance(item, torch.Tensor):
            return item.to(self._device, non_blocking=True)
        if isinstance(item, (list, tuple)):
            return type(item)(self._move(x) for x in item)
        if isinstance(item, dict):
            return {k: self._move(v) for k, v in item.items()}
        return item

    def __iter__(self):
        for batch in self._loader:
            yield self._move(batch)


def prepare_data_loader(data_loader, add_dist_sampler=True, move_to_device=True,
                        auto_transfer=True):
    """With several workers, rebuilds the loader over a DistributedSampler (each rank its
    share; shuffled when the loader was); with a GPU, batches come out on the device."""
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
    ctx = get_context()
    if add_dist_sampler and ctx.get_world_size() > 1 and not isinstance(
            data_loader.sampler, DistributedSampler) and not isinstance(
            data_loader.dataset, torch.utils.data.IterableDataset):
        shuffle = isinstance(data_loader.sampler, RandomSampler)
        sampler = DistributedSampler(data_loader.dataset, num_replicas=ctx.get_world_size(),
                                     rank=ctx.get_world_rank(), shuffle=shuffle)
        loader = data_loader
        data_loader = DataLoader(
            loader.dataset, batch_size=loader.batch_size, sampler=sampler,
            num_workers=loader.num_workers, collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory, drop_last=loader.drop_last, timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn, generator=loader.generator,
            prefetch_factor=loader.prefetch_factor if loader.num_workers else None,
            persistent_workers=loader.persistent_workers)
    device = get_device()
    if move_to_device and device.type != "cpu":
        return _DeviceDataLoader(data_loader, device)
    return data_loader


def enable_reproducibility(seed=0):
    """Seeds Python, numpy and torch, and asks torch for deterministic algorithms (slower)."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy
        numpy.random.seed(seed)
    except ImportError:
        pass
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
