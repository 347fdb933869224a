"""Which GPUs a worker sees, and which are its own: the node's list, never masked per worker.

A node has GPU slots 0..n-1 (the scheduler grants slots) and a list of device ids, one per
slot: the ids the node was started with in CUDA_VISIBLE_DEVICES (what Slurm or the user gave
it), else 0..n-1. Every worker of the node sees that whole list in CUDA_VISIBLE_DEVICES;
`zray.get_gpu_ids()` is the ids of the slots granted to the running task or actor, and code
picks its device by *index* in the visible list (`device_indices()`), as torchrun does with
LOCAL_RANK. Why not mask per worker as Ray does: NCCL's cuMem and NVLS paths need to see the
peers' devices from one process view; with one device per process, Ray #61073 measured a 4 KB
allreduce at 3.6 s against 1.5 ms under torchrun, and large ones hung. docs/hpc.md has the
policy; ZRAY_MASK_GPUS=1 restores masking (CUDA_VISIBLE_DEVICES = the granted ids only) for
programs that rely on it.
"""
import os

MASK_ENV = "ZRAY_MASK_GPUS"
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"


def node_gpu_ids(environ, num_gpus):
    """The device id of each of a node's `num_gpus` slots, as strings."""
    n = int(num_gpus or 0)
    if n <= 0:
        return []
    given = [s.strip() for s in (environ.get(VISIBLE_ENV) or "").split(",") if s.strip()]
    if len(given) >= n:
        return given[:n]
    return [str(i) for i in range(n)]


def masking(environ=os.environ):
    return (environ.get(MASK_ENV) or "").strip().lower() in ("1", "true", "yes", "on")


def _as_id(value):
    return int(value) if value.isdigit() else value


def assigned_ids(slots, node_ids):
    """The device ids of granted slots (ints where numeric, as Ray's get_gpu_ids)."""
    return [_as_id(node_ids[s]) if s < len(node_ids) else s for s in slots]


def visible_devices(node_ids, assigned, mask):
    """What CUDA_VISIBLE_DEVICES becomes for a task: the node's list, or (masking) its own
    ids. None: leave it as it is (a node without GPUs)."""
    if mask:
        return ",".join(str(i) for i in assigned)     # "" for a task without GPUs
    if node_ids:
        return ",".join(node_ids)
    return None


def device_indices(assigned=None, environ=os.environ):
    """The CUDA device index of each GPU id in `assigned` (default: zray.get_gpu_ids()): its
    position in CUDA_VISIBLE_DEVICES, which is what cupy.cuda.Device / torch.cuda.set_device
    take. An id not listed there (no variable set) is taken as an index itself."""
    if assigned is None:
        import zray
        assigned = zray.get_gpu_ids() if zray.is_initialized() else []
    visible = [s.strip() for s in (environ.get(VISIBLE_ENV) or "").split(",") if s.strip()]
    out = []
    for gpu in assigned:
        key = str(gpu)
        if key in visible:
            out.append(visible.index(key))
        else:
            out.append(int(gpu) if key.isdigit() else 0)
    return out
