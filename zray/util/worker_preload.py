"""preload_worker_modules: a library asks every node of the cluster to have the workers it
starts from now on begin with some modules already imported (zray.train: torch; zray.data:
pyarrow), instead of each fresh worker importing them again (seconds for torch).

Each node's zygote imports them once, between two forks (zray/node/preload_service.py and
zygote.py); a name is sent at most once per process and connection, and a module that cannot
be imported is reported in the node's log and ignored. $ZRAY_WORKER_PRELOAD does the same at
the start of a node.

Asked for before zray.init() (zray.train.torch does so when it is imported: a script that
imports TorchTrainer before init() trains with torch), the names wait for the next init(): the
node it starts has its zygote import them from its start, in parallel with the rest of init()
and whatever the script does before its first fit(); init() joining a running cluster sends
them once connected. One init() takes them (a later one, after shutdown(), is not changed).
"""
import threading

_lock = threading.Lock()
_sent = {}          # runtime address -> names already asked for through it
_pending = []       # asked for before init(): the next init() takes them (take_pending)


def preload_worker_modules(modules):
    """Ask the nodes to preload `modules` (names like "torch.distributed") into the workers
    they start from now on. Returns at once; before zray.init(), the next init() takes them
    (see above). Workers already running are not changed."""
    from ..objects.object_ref import get_runtime
    from ..transport import wire
    if isinstance(modules, str):
        modules = [modules]
    names = [m for m in dict.fromkeys(modules) if isinstance(m, str) and m]
    core = get_runtime()
    if core is None:
        with _lock:
            _pending.extend(m for m in names if m not in _pending)
        return
    with _lock:
        sent = _sent.setdefault(core.address, set())
        new = [m for m in names if m not in sent]
        if not new:
            return
        sent.update(new)
    core.send(core.daemon, wire.WORKER_PRELOAD, (new, "cluster"))


def take_pending():
    """The names asked for before init(), which the caller (init()) now owns."""
    with _lock:
        names = tuple(_pending)
        _pending.clear()
    return names
