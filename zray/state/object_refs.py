"""The object refs one process holds, as list_objects rows: I/O-free.

A node's store knows only the values that live in it. Small values (inline, at most
INLINE_MAX bytes) live in the processes that own them, results of tasks that have not finished
exist only as refs in their owner, and an actor call still queued in its caller is nowhere
else. So, as Ray's list_objects does, every process lists the refs it holds: the node asks each
of its clients (OBJECT_REFS_QUERY, wire.py) and adds their rows to its store's.

    facts = [RefFacts(...), ...]           # read off the process's tables (core_worker.py)
    answer(query, facts, ProcessFacts(...)) -> {"rows": [...], "total": n} (or "summary")

One row per ref, with Ray's columns: object_id, object_size (-1 when this process does not know
it: a value in a store, or not computed yet), task_status (of the task that makes it:
PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER, FINISHED; NIL for a borrowed
ref whose value this process has not seen), reference_type (why the process keeps it:
LOCAL_REFERENCE, USED_BY_PENDING_TASK, CAPTURED_IN_OBJECT, PINNED_IN_MEMORY for a value it owns
and keeps for borrowers, UNKNOWN_STATUS), type (DRIVER or WORKER), pid, ip, node_id,
owner_address, call_site ("disabled" unless ZRAY_RECORD_REF_CREATION_SITES=1 /
RAY_record_ref_creation_sites=1 was set in the process).
"""
from dataclasses import dataclass
from typing import NamedTuple

from . import query as q

UNKNOWN_SIZE = -1


@dataclass(frozen=True)
class ProcessFacts:
    pid: int
    ip: str
    node_id: str
    worker_type: str        # "DRIVER" or "WORKER"
    address: str


class RefFacts(NamedTuple):
    """One ref as the process's tables know it (a named tuple: a process may hold 100k refs
    and builds one per ref per query; rows are built for the page only)."""
    object_id: bytes
    owner: str              # the owner's address
    owned: bool             # this process is the owner
    local: int              # ObjectRef instances alive here
    holds: int              # kept for pending tasks' arguments or values that contain it
    captured: bool          # some value this process knows contains it
    ready: bool             # its value (or error) is known here
    inline_size: int        # bytes of a value held in this process, else None
    task_status: str        # the state of its (pending) task in its owner, else None
    call_site: str = None


def reference_type(f):
    if f.local > 0:
        return "LOCAL_REFERENCE"
    if f.holds > 0:
        return "CAPTURED_IN_OBJECT" if f.captured else "USED_BY_PENDING_TASK"
    if f.owned and f.inline_size is not None:
        return "PINNED_IN_MEMORY"       # an inline value kept here for the borrowers
    return "UNKNOWN_STATUS"


def task_status(f):
    if f.task_status is not None:
        return f.task_status
    if f.ready:
        return "FINISHED"
    return "NIL" if not f.owned else "PENDING_NODE_ASSIGNMENT"


def row(f, process):
    return {"object_id": f.object_id.hex(),
            "object_size": f.inline_size if f.inline_size is not None else UNKNOWN_SIZE,
            "task_status": task_status(f), "reference_type": reference_type(f),
            "type": process.worker_type, "pid": process.pid, "ip": process.ip,
            "node_id": process.node_id, "owner_address": f.owner, "pinned_by": None,
            "copy_from": None, "call_site": f.call_site or "disabled"}


def pending_task_status(task):
    """Ray's state of a task its owner still holds (owner_table.PendingTask)."""
    if task.sent:
        return "SUBMITTED_TO_WORKER"
    if task.deps_left > 0:
        return "PENDING_ARGS_AVAIL"
    return "PENDING_NODE_ASSIGNMENT"       # queued in its owner (an actor call: in its caller)


_READERS = {
    "object_id": lambda f, p: f.object_id.hex(),
    "object_size": lambda f, p: f.inline_size if f.inline_size is not None else UNKNOWN_SIZE,
    "task_status": lambda f, p: task_status(f),
    "reference_type": lambda f, p: reference_type(f),
    "type": lambda f, p: p.worker_type, "pid": lambda f, p: p.pid, "ip": lambda f, p: p.ip,
    "node_id": lambda f, p: p.node_id, "owner_address": lambda f, p: f.owner,
    "pinned_by": lambda f, p: None, "copy_from": lambda f, p: None,
    "call_site": lambda f, p: f.call_site or "disabled",
}


def answer(query, facts, process):
    """This process's part of an objects (or summary_objects) query: filters and a search
    read the facts column by column; rows are built for the page (or the summary) only."""
    if query.resource == "summary_objects":
        match = q.compile_filters(query.filters, lambda f, c: _READERS[c](f, process))
        matched = [row(f, process) for f in facts if match is None or match(f)]
        return {"rows": [], "total": len(matched),
                "summary": q.summarize_objects(matched)}
    page = q.StateQuery("objects", query.filters, min(query.offset + query.limit, q.MAX_LIMIT),
                        query.detail, query.timeout, "node", None, query.args, 0)
    rows, total = q.select(facts, page, get=lambda f, c: _READERS[c](f, process),
                           to_dict=lambda f, detail: _shown(row(f, process), detail))
    return {"rows": rows, "total": total}


def _shown(full, detail):
    return full if detail else q.trim(full, "objects")
