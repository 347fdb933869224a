"""`zray.util.state`: Ray's state API over the mesh (list_*, get_*, summarize_*, logs).

Every call asks one node (this process's own node when zray is initialized here, else the
node `address` names: "auto", "HOST:PORT" of any member, or a node file), and that node answers
for the whole mesh (zray/node/state_service.py). Rows are `StateRow`s: dicts with Ray's column
names that also read as attributes (`actor.state`, `actor["state"]`), subclassed per resource
(ActorState, TaskState, ...) as Ray's dataclasses are named.

For a node-side HTTP handler (the dashboard): `query(resource, ...)` returns the raw answer
(rows, total, nodes, failed_nodes, summary) and takes `node=` (a node info dict with "address"
and "session") to ask a given node without a runtime.
"""
import logging
import time
import warnings

from ...state import client
from ...state.query import DEFAULT_LIMIT, DEFAULT_TIMEOUT_S, StateQuery

log = logging.getLogger("zray.state")


class RayStateApiException(Exception):
    """A state query could not be answered in full (a node did not answer, none was found)."""


class StateRow(dict):
    """A row: a dict with Ray's column names, readable as attributes too."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no column {name!r}") from None

    def __dir__(self):
        return list(self.keys()) + list(super().__dir__())


class ActorState(StateRow):
    pass


class TaskState(StateRow):
    pass


class ObjectState(StateRow):
    pass


class NodeState(StateRow):
    pass


class WorkerState(StateRow):
    pass


class JobState(StateRow):
    pass


class PlacementGroupState(StateRow):
    pass


_ROW_TYPES = {"actors": ActorState, "tasks": TaskState, "objects": ObjectState,
              "nodes": NodeState, "workers": WorkerState, "jobs": JobState,
              "placement_groups": PlacementGroupState}
_ID_COLUMN = {"actors": "actor_id", "tasks": "task_id", "nodes": "node_id",
              "workers": "worker_id", "jobs": "job_id", "placement_groups": "placement_group_id",
              "objects": "object_id"}


def query(resource, *, filters=None, limit=DEFAULT_LIMIT, detail=False,
          timeout=DEFAULT_TIMEOUT_S, address=None, node=None, scope="cluster", targets=None,
          args=None, offset=0):
    """The raw answer of one node for the mesh: {"rows": [dict], "total": matches in the mesh,
    "nodes": [node ids that answered], "failed_nodes": {node_id: why}, "summary": ...,
    "files": ...}. `offset` skips rows: (offset, limit) pages through the mesh's rows in a
    stable order (nodes by id; on a node: pending, running, then finished newest first).
    Raises ValueError for a bad query, RayStateApiException when no node answers. Stable for
    the dashboard."""
    q = StateQuery(resource, tuple(filters or ()), limit, bool(detail), timeout, scope,
                   tuple(targets) if targets is not None else None, dict(args or {}), offset)
    try:
        return client.run(q, address=address, node=node)
    except client.StateQueryTimeout as exc:
        raise RayStateApiException(str(exc)) from None
    except ConnectionError as exc:
        raise RayStateApiException(f"no zray node to ask: {exc}") from None


def _list(resource, address, filters, limit, timeout, detail, raise_on_missing_output):
    answer = query(resource, filters=filters, limit=limit, detail=detail, timeout=timeout,
                   address=address)
    _check_missing(answer, resource, raise_on_missing_output)
    total, rows = answer["total"], answer["rows"]
    if total > len(rows):
        log.info("%d of %d %s listed (limit=%d)", len(rows), total, resource, limit)
    row_type = _ROW_TYPES[resource]
    return [row_type(r) for r in rows]


def _check_missing(answer, resource, raise_on_missing_output):
    failed = answer.get("failed_nodes") or {}
    if not failed:
        return
    text = (f"the {resource} of {len(failed)} node(s) are missing: "
            + "; ".join(f"{n}: {why}" for n, why in failed.items()))
    if raise_on_missing_output:
        raise RayStateApiException(text + " (raise_on_missing_output=False lists the rest)")
    warnings.warn(text, RuntimeWarning, stacklevel=3)


def list_actors(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT_S,
                detail=False, raise_on_missing_output=True, _explain=False):
    return _list("actors", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_tasks(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT_S,
               detail=False, raise_on_missing_output=True, _explain=False):
    return _list("tasks", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_objects(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT_S,
                 detail=False, raise_on_missing_output=True, _explain=False):
    return _list("objects", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_nodes(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT_S,
               detail=False, raise_on_missing_output=True, _explain=False):
    return _list("nodes", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_workers(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT_S,
                 detail=False, raise_on_missing_output=True, _explain=False):
    return _list("workers", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_jobs(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT_S,
              detail=False, raise_on_missing_output=True, _explain=False):
    return _list("jobs", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_placement_groups(address=None, filters=None, limit=DEFAULT_LIMIT,
                          timeout=DEFAULT_TIMEOUT_S, detail=False, raise_on_missing_output=True,
                          _explain=False):
    return _list("placement_groups", address, filters, limit, timeout, detail,
                 raise_on_missing_output)


def _get(resource, id, address, timeout):
    if not isinstance(id, str) or not id:
        raise ValueError(f"get_{resource[:-1]}() takes an id (a hex str), not {id!r}")
    rows = _list(resource, address, [(_ID_COLUMN[resource], "=", id)], 10_000, timeout, True,
                 False)
    if not rows:
        return None
    if resource == "tasks":
        return rows     # Ray returns every attempt of a task
    return rows[0]


def get_actor(id, address=None, timeout=DEFAULT_TIMEOUT_S, _explain=False):
    return _get("actors", id, address, timeout)


def get_task(id, address=None, timeout=DEFAULT_TIMEOUT_S, _explain=False):
    """Every attempt of the task (a list, as in Ray), or None."""
    return _get("tasks", id, address, timeout)


def get_node(id, address=None, timeout=DEFAULT_TIMEOUT_S, _explain=False):
    return _get("nodes", id, address, timeout)


def get_worker(id, address=None, timeout=DEFAULT_TIMEOUT_S, _explain=False):
    return _get("workers", id, address, timeout)


def get_job(id, address=None, timeout=DEFAULT_TIMEOUT_S, _explain=False):
    return _get("jobs", id, address, timeout)


def get_placement_group(id, address=None, timeout=DEFAULT_TIMEOUT_S, _explain=False):
    return _get("placement_groups", id, address, timeout)


def get_objects(id, address=None, timeout=DEFAULT_TIMEOUT_S, _explain=False):
    """Every copy of the object in the mesh (a list, as in Ray)."""
    return _list("objects", address, [("object_id", "=", id)], 10_000, timeout, True, False)


# -- summaries ------------------------------------------------------------------------------------
def _summary(resource, key, address, timeout, raise_on_missing_output):
    answer = query(resource, timeout=timeout, address=address, limit=1)
    _check_missing(answer, resource, raise_on_missing_output)
    summary = answer.get("summary") or {}
    if resource == "summary_objects":
        from ...state.query import objects_summary_done
        summary = objects_summary_done(summary)
    by = {"summary_tasks": "func_name", "summary_objects": "callsite"}.get(resource, "class")
    return {"cluster": {"summary": summary, key: answer["total"], "summary_by": by,
                        "nodes": answer.get("nodes", [])}}


def summarize_tasks(address=None, timeout=DEFAULT_TIMEOUT_S, raise_on_missing_output=True,
                    _explain=False):
    """{"cluster": {"summary": {func_or_class_name: {"state_counts": {...}, "type"}},
    "total_tasks": n}}"""
    return _summary("summary_tasks", "total_tasks", address, timeout, raise_on_missing_output)


def summarize_actors(address=None, timeout=DEFAULT_TIMEOUT_S, raise_on_missing_output=True,
                     _explain=False):
    return _summary("summary_actors", "total_actors", address, timeout, raise_on_missing_output)


def summarize_objects(address=None, timeout=DEFAULT_TIMEOUT_S, raise_on_missing_output=True,
                      _explain=False):
    return _summary("summary_objects", "total_objects", address, timeout,
                    raise_on_missing_output)


# -- logs -----------------------------------------------------------------------------------------
def _categorize(names):
    out = {}
    for name in names:
        if name.startswith("worker-") and name.endswith(".out"):
            key = "worker_out"
        elif name.startswith("worker-") and name.endswith(".err"):
            key = "worker_err"
        elif name.startswith("worker-"):
            key = "core_worker"
        elif name.startswith("node"):
            key = "raylet"
        elif name.startswith("driver"):
            key = "driver"
        else:
            key = "misc"
        out.setdefault(key, []).append(name)
    return out


def _node_target(address, node_id, node_ip, timeout):
    if node_id is None and node_ip is not None:
        nodes = list_nodes(address=address, filters=[("node_ip", "=", node_ip)],
                           timeout=timeout)
        if not nodes:
            raise ValueError(f"no node of the mesh has the IP {node_ip}")
        if len(nodes) > 1:
            raise ValueError(f"several nodes have the IP {node_ip}; give node_id")
        node_id = nodes[0]["node_id"]
    return node_id


def list_logs(address=None, node_id=None, node_ip=None, glob_filter=None,
              timeout=DEFAULT_TIMEOUT_S):
    """{category: [file names]} of one node's logs (default: the node asked)."""
    node_id = _node_target(address, node_id, node_ip, timeout)
    if node_id is None:
        answer = query("logs", scope="node", timeout=timeout, address=address,
                       args={"glob": glob_filter})
    else:
        answer = query("logs", targets=[node_id], timeout=timeout, address=address,
                       args={"glob": glob_filter})
    files = answer.get("files") or {}
    if node_id is not None and node_id not in files:
        raise ValueError(f"node {node_id} did not answer (is it a live member?)")
    names = files.get(node_id) if node_id is not None else next(iter(files.values()), [])
    return _categorize(names or [])


def get_log(address=None, node_id=None, node_ip=None, filename=None, actor_id=None,
            task_id=None, pid=None, follow=False, tail=-1, timeout=DEFAULT_TIMEOUT_S,
            suffix="out", encoding="utf-8", errors="strict", submission_id=None,
            attempt_number=0, _interval=None, filter_ansi_code=False):
    """The lines of a log file (a generator, as in Ray): by `filename` on a node, or the
    worker log of `actor_id`, `task_id` or `pid`. `tail`: the last N lines (-1: all);
    `follow`: keep yielding what is appended until the caller stops."""
    if suffix not in ("out", "err"):
        raise ValueError(f"suffix must be 'out' or 'err', not {suffix!r}")
    if isinstance(tail, bool) or not isinstance(tail, int):
        raise ValueError(f"tail must be an int, not {tail!r}")
    node_id = _node_target(address, node_id, node_ip, timeout)
    if filename is None:
        node_id, filename = _worker_log_of(address, actor_id, task_id, pid, node_id, suffix,
                                           attempt_number, timeout)
    return _log_lines(address, node_id, filename, tail, follow, timeout,
                      _interval or 0.5, encoding, errors)


def _worker_log_of(address, actor_id, task_id, pid, node_id, suffix, attempt, timeout):
    worker_id = None
    if actor_id is not None:
        actor = get_actor(actor_id, address=address, timeout=timeout)
        if actor is None:
            raise ValueError(f"no actor {actor_id} in the mesh")
        worker_id, node_id = actor["worker_id"], actor["node_id"]
    elif task_id is not None:
        attempts = get_task(task_id, address=address, timeout=timeout) or []
        attempts = [t for t in attempts if t["attempt_number"] == attempt] or attempts
        if not attempts or not attempts[0]["worker_id"]:
            raise ValueError(f"no task {task_id} that ran on a worker in the mesh")
        worker_id, node_id = attempts[0]["worker_id"], attempts[0]["node_id"]
    elif pid is not None:
        filters = [("pid", "=", pid)] + ([("node_id", "=", node_id)] if node_id else [])
        workers = [w for w in list_workers(address=address, filters=filters, timeout=timeout,
                                           raise_on_missing_output=False) if w["is_alive"]]
        if not workers:
            raise ValueError(f"no live worker with pid {pid}")
        worker_id, node_id = workers[0]["worker_id"], workers[0]["node_id"]
    else:
        raise ValueError("get_log() needs a filename, actor_id, task_id or pid")
    if not worker_id:
        raise ValueError("that actor or task has no worker yet")
    return node_id, f"worker-{worker_id}.{suffix}"


def _log_lines(address, node_id, filename, tail, follow, timeout, interval, encoding, errors):
    def fetch(args):
        kwargs = {"targets": [node_id]} if node_id else {"scope": "node"}
        answer = query("log", timeout=timeout, address=address, args=args, **kwargs)
        files = answer.get("files") or {}
        got = files.get(node_id) if node_id else next(iter(files.values()), None)
        if not got:
            raise ValueError(f"no log file {filename!r} on "
                             + (f"node {node_id}" if node_id else "the node asked")
                             + "; list them with list_logs()")
        return got

    first = fetch({"filename": filename, "tail": tail})

    def lines():
        got = first
        pending = ""
        text = got["text"]
        offset = got["size"]
        while True:
            chunk = pending + text
            parts = chunk.splitlines(keepends=True)
            pending = ""
            if parts and not parts[-1].endswith("\n") and follow:
                pending = parts.pop()
            for line in parts:
                yield line.rstrip("\n")
            if not follow:
                return
            time.sleep(interval)
            got = fetch({"filename": filename, "tail": -1, "offset": offset})
            text, offset = got["text"], got["size"]
    return lines()
