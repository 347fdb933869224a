"""Paused breakpoints, registered in the cluster key-value store (namespace `_zray_debug`) so
that `zray debug` and the dashboard on any node list every one of the mesh. A record is JSON:
{breakpoint_id, host, port, kind ("pdb" | "debugpy"), pid, node_id, worker_id, job_id, task,
actor, filename, lineno, function, post_mortem, time}, plus step_into (a `remote` step's
callee) or step_out (a `get` step's caller)."""
import json
import threading

DEBUG_NAMESPACE = "_zray_debug"
_paused = {}          # thread ident -> debugger port: this process's threads paused in a debugger
_paused_lock = threading.Lock()


def _kv():
    from ...core import runtime
    return runtime.current().kv


def register(record):
    _kv().put(record["breakpoint_id"], json.dumps(record).encode(), namespace=DEBUG_NAMESPACE,
              timeout=10)


def unregister(breakpoint_id):
    try:
        _kv().delete(breakpoint_id, namespace=DEBUG_NAMESPACE, timeout=10)
    except Exception:    # the node is going away: nothing will list it any more
        pass


def list_breakpoints():
    """Every registered breakpoint, oldest first."""
    out = []
    kv = _kv()
    for key in kv.keys(namespace=DEBUG_NAMESPACE):
        raw = kv.get(key, namespace=DEBUG_NAMESPACE)
        if raw:
            out.append(json.loads(raw))
    return sorted(out, key=lambda r: r.get("time", 0))


def thread_paused(port):
    """This thread waits in (or for) a debugger on `port`: the node hears of it in the next
    WORKER_REPORT (list_workers' debugger_port and num_paused_threads, as Ray's worker rows)."""
    with _paused_lock:
        _paused[threading.get_ident()] = port
        ports = sorted(_paused.values())
    _tell_node(ports)


def thread_resumed():
    with _paused_lock:
        if _paused.pop(threading.get_ident(), None) is None:
            return
        ports = sorted(_paused.values())
    _tell_node(ports)


def _tell_node(ports):
    from ...core import runtime
    try:
        runtime.current()._core.reporter.debugger_changed(ports)
    except Exception:    # shutting down: the node forgets the worker anyway
        pass
