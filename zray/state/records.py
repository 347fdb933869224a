"""What a node remembers of the tasks it ran: running ones, and a bounded ring of finished ones.

I/O-free. The node that *runs* a task records it (the daemon at dispatch and at
TASK_FINISHED; actor calls, which never pass through the daemon, come in batches from the
actor's worker), so recording costs one small object per task on the node doing the work and
nothing on the submit path. Finished tasks are kept newest last in an ordered dict that drops
the oldest beyond `keep` (ZRAY_STATE_MAX_FINISHED_TASKS, default 100,000 as Ray keeps per job);
what was dropped is counted, so a summary can say so.

A record is a `TaskRow` with Ray's column names as attributes; rows become dicts only when a
query returns them, so listing 100 of 100,000 builds 100 dicts.
"""
import collections
import itertools
import os
import time
from operator import attrgetter

from ..scheduling.resources import from_units
from ..scheduling.task_spec import ACTOR_CREATION

DEFAULT_KEEP = 100_000

NORMAL_TASK = "NORMAL_TASK"
ACTOR_CREATION_TASK = "ACTOR_CREATION_TASK"
ACTOR_TASK = "ACTOR_TASK"


def keep_from_env():
    text = os.environ.get("ZRAY_STATE_MAX_FINISHED_TASKS")
    if not text:
        return DEFAULT_KEEP
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"ZRAY_STATE_MAX_FINISHED_TASKS must be an int, not {text!r}") from None
    if value < 0:
        raise ValueError(f"ZRAY_STATE_MAX_FINISHED_TASKS must be >= 0, not {value}")
    return value


class TaskRow:
    __slots__ = ("task_id", "attempt_number", "name", "state", "job_id", "actor_id", "type",
                 "func_or_class_name", "parent_task_id", "node_id", "worker_id", "worker_pid",
                 "error_type", "error_message", "start_time_ms", "end_time_ms",
                 "required_resources", "placement_group_id", "creation_time_ms",
                 "pending_reason")

    def __init__(self, task_id, attempt_number, name, state, job_id, actor_id, type_,
                 func_or_class_name, parent_task_id, node_id, worker_id, worker_pid,
                 start_time_ms, required_resources=None, placement_group_id=None):
        self.task_id = task_id
        self.attempt_number = attempt_number
        self.name = name
        self.state = state
        self.job_id = job_id
        self.actor_id = actor_id
        self.type = type_
        self.func_or_class_name = func_or_class_name
        self.parent_task_id = parent_task_id
        self.node_id = node_id
        self.worker_id = worker_id
        self.worker_pid = worker_pid
        self.error_type = None
        self.error_message = None
        self.start_time_ms = start_time_ms
        self.end_time_ms = None
        self.required_resources = required_resources   # scheduling units (resources.py)
        self.placement_group_id = placement_group_id
        self.creation_time_ms = start_time_ms
        self.pending_reason = None

    def get(self, column):
        return getattr(self, column, None)

    def to_dict(self, detail):
        from .query import COLUMNS
        base, more = COLUMNS["tasks"]
        out = {k: getattr(self, k) for k in base}
        if out["pending_reason"] is None:
            del out["pending_reason"]
        if detail:
            for k in more:
                out[k] = getattr(self, k)
            if out["required_resources"] is not None:   # kept in units until shown
                out["required_resources"] = from_units(out["required_resources"])
        return out


def now_ms():
    return time.time() * 1000.0     # ms, as a float: timelines want microseconds


def row_of_spec(spec, node_id, state, worker_id=None, pid=None, start_ms=None):
    """A TaskRow for a task spec as a node holds it (queued, or dispatched to a worker)."""
    extra = spec.extra or {}
    actor_id = extra.get("actor_id")
    parent = spec.parent_task_id
    row = TaskRow(spec.task_id.hex(), spec.attempt, spec.name, state, spec.job_id,
                  actor_id.hex() if isinstance(actor_id, bytes) else actor_id,
                  ACTOR_CREATION_TASK if spec.kind == ACTOR_CREATION else NORMAL_TASK,
                  spec.name, parent.hex() if isinstance(parent, bytes) else parent, node_id,
                  worker_id, pid, start_ms, spec.resources, _group_of(extra))
    return row


def _group_of(extra):
    group = extra.get("placement_group")
    if isinstance(group, (tuple, list)) and group:
        group = group[0]
    if isinstance(group, bytes):
        return group.hex()
    return group if isinstance(group, str) else None


# Columns that hold str or None: a filter compares them as they are (enum-like ones are kept
# upper case, as query.py compares them), without a str() per row.
TEXT_COLUMNS = frozenset({"task_id", "name", "state", "job_id", "actor_id", "type",
                          "func_or_class_name", "parent_task_id", "node_id", "worker_id",
                          "error_type", "error_message", "placement_group_id", "pending_reason"})


NUMBER_COLUMNS = frozenset({"attempt_number", "worker_pid", "start_time_ms", "end_time_ms",
                            "creation_time_ms"})


def row_predicate(filters):
    """A fast test row -> bool for normalized filters (query.normalize_filters), or None."""
    from .query import ENUM_COLUMNS, _as_text
    tests = []
    for column, predicate, value in filters:
        get = attrgetter(column)
        enum = column in ENUM_COLUMNS
        want = value.upper() if enum else value
        if column in TEXT_COLUMNS:
            if want == "":
                def test(r, get=get):
                    return not get(r)
            else:
                def test(r, get=get, want=want):
                    return get(r) == want
        elif column in NUMBER_COLUMNS:
            try:
                number = float(want)
            except ValueError:
                number = None      # "=" never matches, "!=" always does

            def test(r, get=get, number=number):
                value = get(r)
                return value is not None and value == number
        else:
            def test(r, get=get, want=want, enum=enum):
                return _as_text(get(r), enum) == want
        if predicate == "!=":
            def test(r, inner=test):
                return not inner(r)
        tests.append(test)
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    return lambda r: all(t(r) for t in tests)


def select_rows(records, pending, query):
    """(the page of task rows as dicts, how many match) over pending rows (a list), then
    running, then finished newest first. Cost: O(offset + limit) with no filter; a filter on
    the state alone counts from the ring's tallies and stops at the page; any other filter
    scans every row once, with no str() or dict per row."""
    end = query.offset + query.limit
    filters = query.filters
    source = itertools.chain(pending, list(records.running.values()),
                             reversed(records.finished.values()))
    from .query import text_matcher
    search = text_matcher(query, lambda row, column: getattr(row, column, None))
    if search is not None:      # the dashboard's search box: every row is read once
        match = row_predicate(filters) if filters else None
        matches = [r for r in source if (match is None or match(r)) and search(r)]
        return [r.to_dict(query.detail) for r in matches[:end]], len(matches)
    if not filters:
        total = len(pending) + len(records)
        page = list(itertools.islice(source, end))
    else:
        match = row_predicate(filters)
        if all(c == "state" and p == "=" for c, p, _ in filters):
            wanted = {v.upper() for _, _, v in filters}
            if len(wanted) > 1:
                total, page = 0, []
            else:
                (state,) = wanted
                total = (sum(1 for r in pending if r.state == state)
                         + sum(1 for r in records.running.values() if r.state == state)
                         + records.finished_counts.get(state, 0))
                page = list(itertools.islice(filter(match, source), end))
        else:
            matches = list(filter(match, source))
            total = len(matches)
            page = matches[:end]
    detail = query.detail
    return [r.to_dict(detail) for r in page], total     # merge() cuts the page out


def row_get(row, column):
    return getattr(row, column, None)


def row_to_dict(row, detail):
    return row.to_dict(detail)


class TaskRecords:
    def __init__(self, node_id, keep=DEFAULT_KEEP):
        self.node_id = node_id
        self.keep = keep
        self.running = {}                          # (task_id hex, attempt) -> TaskRow
        self.finished = collections.OrderedDict()  # (task_id hex, attempt) -> TaskRow, oldest first
        self.dropped = 0                           # finished rows pushed out of the ring
        self.ended_count = 0                       # rows that ever ended here
        self.finished_counts = {}       # state -> rows in the ring
        self.summary_counts = {}        # (func_or_class_name, type, state) -> rows in the ring
        self.waiting = {}               # task_id hex -> (owner, TaskRow): waits in its owner

    # -- events --------------------------------------------------------------------------------
    def started(self, row):
        self.running[(row.task_id, row.attempt_number)] = row
        if self.waiting:                # it left its owner (its owner tells so a bit later)
            self.waiting.pop(row.task_id, None)

    def ended(self, task_id, attempt, now_ms, error_type=None, error_message=None):
        """A running task finished (error_type None) or failed. Returns the row or None."""
        row = self.running.pop((task_id, attempt), None)
        if row is None:
            return None
        row.end_time_ms = now_ms
        if error_type is None:
            row.state = "FINISHED"
        else:
            row.state = "FAILED"
            row.error_type = error_type
            row.error_message = error_message
        self._keep(row)
        return row

    def worker_gone(self, worker_id, now_ms, detail):
        """The worker died: what it still ran failed (rows nobody else will end)."""
        for row in [r for r in self.running.values() if r.worker_id == worker_id]:
            self.ended(row.task_id, row.attempt_number, now_ms, "WORKER_DIED",
                       detail or "the worker running it died")

    def args_waiting(self, owner, row):
        self.waiting[row.task_id] = (owner, row)

    def args_resolved(self, task_id):
        self.waiting.pop(task_id, None)

    def owner_gone(self, owner):
        for task_id in [t for t, (o, _) in self.waiting.items() if o == owner]:
            del self.waiting[task_id]

    def add_finished(self, row):
        """A row that is over already (an actor call reported by its worker)."""
        self.running.pop((row.task_id, row.attempt_number), None)
        if self.waiting:
            self.waiting.pop(row.task_id, None)
        self._keep(row)

    def _keep(self, row):
        self.ended_count += 1
        if self.keep <= 0:
            self.dropped += 1
            return
        key = (row.task_id, row.attempt_number)
        finished = self.finished
        old = finished.pop(key, None)
        if old is not None:
            self._count(old, -1)
        finished[key] = row
        self._count(row, 1)
        while len(finished) > self.keep:
            _, gone = finished.popitem(last=False)
            self._count(gone, -1)
            self.dropped += 1

    def _count(self, row, n):
        state = row.state
        counts = self.finished_counts
        counts[state] = counts.get(state, 0) + n
        key = (row.func_or_class_name or row.name, row.type, state)
        counts = self.summary_counts
        value = counts.get(key, 0) + n
        if value:
            counts[key] = value
        else:
            del counts[key]

    # -- queries -------------------------------------------------------------------------------
    def rows(self):
        """Running rows, then finished ones newest first."""
        yield from list(self.running.values())
        yield from reversed(self.finished.values())

    def __len__(self):
        return len(self.running) + len(self.finished)
