"""preload_worker_modules: a library asks every node of the cluster to have the workers it
starts from now on begin with some modules already imported (zray.train: torch; zray.data:
pyarrow), instead of each fresh worker importing them again (seconds for torch).

Each node's zygote imports them once, between two forks (zray/node/preload_service.py and
zygote.py); a name is sent at most once per process and connection, and a module that cannot
be imported is reported in the node's log and ignored. $ZRAY_WORKER_PRELOAD does the same at
the start of a node.
"""
import threading

_lock = threading.Lock()
_sent = {}          # runtime address -> names already asked for through it


def preload_worker_modules(modules):
    """Ask the nodes to preload `modules` (names like "torch.distributed") into the workers
    they start from now on. Returns at once; a no-op when zray is not initialized. Workers
    already running are not changed."""
    from ..objects.object_ref import get_runtime
    from ..transport import wire
    if isinstance(modules, str):
        modules = [modules]
    core = get_runtime()
    if core is None:
        return
    names = [m for m in dict.fromkeys(modules) if isinstance(m, str) and m]
    with _lock:
        sent = _sent.setdefault(core.address, set())
        new = [m for m in names if m not in sent]
        if not new:
            return
        sent.update(new)
    core.send(core.daemon, wire.WORKER_PRELOAD, (new, "cluster"))
