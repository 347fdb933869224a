"""`zray.timeline()`: the mesh's tasks as a Chrome trace (chrome://tracing, Perfetto).

Built from the state API's task rows (every node's history of the tasks it ran, with start and
end times): one complete event ("ph": "X") per task attempt, on a track per node ("pid") and
worker ("tid"), named after the function or method, colored by outcome, plus metadata events
naming each track. `events(rows)` is the I/O-free part.
"""
import json

_COLORS = {"FINISHED": "good", "FAILED": "terrible", "RUNNING": "rail_animation"}


def events(rows, now_ms=None):
    """Chrome trace events of task rows (dicts with Ray's task columns)."""
    out = []
    named = set()
    for row in rows:
        start = row.get("start_time_ms")
        if start is None:
            continue
        end = row.get("end_time_ms")
        if end is None:
            if now_ms is None:
                continue
            end = now_ms
        node = row.get("node_id") or "?"
        worker = str(row.get("worker_pid") or row.get("worker_id") or "?")
        if (node, None) not in named:
            named.add((node, None))
            out.append({"ph": "M", "name": "process_name", "pid": node,
                        "args": {"name": f"node {node[:12]}"}})
        if (node, worker) not in named:
            named.add((node, worker))
            out.append({"ph": "M", "name": "thread_name", "pid": node, "tid": worker,
                        "args": {"name": f"worker {worker}"}})
        out.append({
            "cat": row.get("type") or "task", "name": row.get("func_or_class_name") or row.get("name"),
            "pid": node, "tid": worker, "ph": "X", "ts": start * 1000,
            "dur": max(end - start, 0) * 1000, "cname": _COLORS.get(row.get("state"), "generic_work"),
            "args": {"task_id": row.get("task_id"), "attempt": row.get("attempt_number"),
                     "state": row.get("state"), "job_id": row.get("job_id"),
                     "actor_id": row.get("actor_id"), "error_type": row.get("error_type")},
        })
    return out


def timeline(filename=None, address=None, limit=100_000):
    """The trace events of up to `limit` task attempts of the whole mesh; written as JSON to
    `filename` when given (and returned either way), as ray.timeline does."""
    import time
    from ..util.state import api
    answer = api.query("tasks", limit=limit, detail=True, address=address)
    trace = events(answer["rows"], now_ms=int(time.time() * 1000))
    if filename is not None:
        with open(filename, "w") as f:
            json.dump(trace, f)
    return trace
