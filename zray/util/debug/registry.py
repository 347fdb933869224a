"""Paused breakpoints, registered in the cluster key-value store (namespace `_zray_debug`) so
that `zray debug` and the dashboard on any node list every one of the mesh. A record is JSON:
{breakpoint_id, host, port, kind ("pdb" | "debugpy"), pid, node_id, worker_id, job_id, task,
actor, filename, lineno, function, post_mortem, time}, plus step_into (a `remote` step's
callee) or step_out (a `get` step's caller)."""
import json

DEBUG_NAMESPACE = "_zray_debug"


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
