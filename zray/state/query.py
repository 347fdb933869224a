"""State queries: what a caller asks, how a node selects its rows, how answers merge.

No sockets here. A `StateQuery` is validated where it is made (the API, the CLI) and again where
it is answered (a node never trusts a peer's query blindly); `select` filters a node's rows and
keeps the first `limit`; `merge` adds the answers of every node of the mesh into one.

A free-text search (args["text"]) is matched on the nodes too (text_matcher).

Filters are Ray's: a list of (column, predicate, value) with predicate "=" or "!=". Values
compare as strings; the enum-like columns (state, type, ...) compare case-insensitively, as
in Ray. A filter on a column the resource does not have is a ValueError naming the columns.
"""
from dataclasses import dataclass, field

RESOURCES = ("actors", "tasks", "objects", "nodes", "workers", "jobs", "placement_groups",
             "logs", "log", "summary_tasks", "summary_actors", "summary_objects", "metrics")
LISTABLE = ("actors", "tasks", "objects", "nodes", "workers", "jobs", "placement_groups")

# The columns of a row, as Ray names them; the first ones are the default (non-detail) view.
COLUMNS = {
    "tasks": (
        ("task_id", "attempt_number", "name", "state", "job_id", "actor_id", "type",
         "func_or_class_name", "parent_task_id", "node_id", "worker_id", "worker_pid",
         "error_type", "start_time_ms", "end_time_ms", "pending_reason"),
        ("error_message", "required_resources", "placement_group_id", "creation_time_ms")),
    "actors": (
        ("actor_id", "class_name", "state", "job_id", "name", "node_id", "pid", "ray_namespace",
         "death_cause", "num_restarts", "pending_reason"),
        ("is_detached", "placement_group_id", "repr_name", "required_resources", "max_restarts",
         "worker_id", "home_node_id")),
    "objects": (
        ("object_id", "object_size", "task_status", "reference_type", "type", "pid", "ip",
         "node_id", "owner_address"),
        ("pinned_by", "copy_from", "call_site")),
    "nodes": (
        ("node_id", "node_ip", "is_head_node", "state", "node_name", "resources_total",
         "labels"),
        ("mesh_address", "resources_available", "hostname")),
    "workers": (
        ("worker_id", "is_alive", "worker_type", "exit_type", "node_id", "ip", "pid",
         "job_id"),
        ("exit_detail", "worker_launch_time_ms", "worker_launched_time_ms", "start_time_ms",
         "end_time_ms", "debugger_port", "num_paused_threads")),
    "jobs": (
        ("job_id", "submission_id", "status", "type", "entrypoint", "driver_node_id",
         "driver_pid", "start_time", "end_time"),
        ("message", "error_type", "driver_info", "metadata", "runtime_env")),
    "placement_groups": (
        ("placement_group_id", "name", "creator_job_id", "state", "strategy", "is_detached"),
        ("bundles", "stats", "home_node_id")),
}
# Columns whose values are names of states or kinds: compared case-insensitively.
ENUM_COLUMNS = frozenset({"state", "type", "worker_type", "exit_type", "status", "task_status",
                          "reference_type", "strategy"})
PREDICATES = ("=", "!=")
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000_000
DEFAULT_TIMEOUT_S = 30.0
# Ray's task states (a node knows these ones).
TASK_STATES = ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER", "RUNNING",
               "FINISHED", "FAILED")
ACTOR_STATES = ("DEPENDENCIES_UNREADY", "PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD")


def all_columns(resource):
    base, detail = COLUMNS[resource]
    return base + detail


@dataclass(frozen=True)
class StateQuery:
    """One question to the mesh. scope "cluster": the node asked gathers every live member's
    answer; "node": only its own. targets: node ids to ask (None: every live one)."""
    resource: str
    filters: tuple = ()
    limit: int = DEFAULT_LIMIT
    detail: bool = False
    timeout: float = DEFAULT_TIMEOUT_S
    scope: str = "cluster"
    targets: tuple = None
    args: dict = field(default_factory=dict)    # resource-specific: a log's file name, lines
    offset: int = 0     # rows to skip (pages: offset, offset + limit) in the mesh's row order

    def __post_init__(self):
        if self.resource not in RESOURCES:
            raise ValueError(f"unknown state resource {self.resource!r}; one of "
                             + ", ".join(RESOURCES))
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise ValueError(f"limit must be an int, not {self.limit!r}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, not {self.limit}")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) \
                or not 0 < self.timeout <= 3600:
            raise ValueError(f"timeout must be seconds in (0, 3600], not {self.timeout!r}")
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or \
                not 0 <= self.offset <= MAX_LIMIT:
            raise ValueError(f"offset must be an int in [0, {MAX_LIMIT}], not {self.offset!r}")
        if self.scope not in ("cluster", "node"):
            raise ValueError(f"scope must be 'cluster' or 'node', not {self.scope!r}")
        object.__setattr__(self, "filters", normalize_filters(self.resource, self.filters))
        text = self.args.get("text")
        if text is not None and (not isinstance(text, str) or not text):
            raise ValueError(f"a text search is a non-empty str, not {text!r}")
        if self.targets is not None:
            object.__setattr__(self, "targets", tuple(str(t) for t in self.targets))

    def to_wire(self):
        return {"resource": self.resource, "filters": list(self.filters), "limit": self.limit,
                "detail": self.detail, "timeout": self.timeout, "scope": self.scope,
                "targets": list(self.targets) if self.targets is not None else None,
                "args": dict(self.args), "offset": self.offset}

    @classmethod
    def from_wire(cls, data):
        if not isinstance(data, dict):
            raise ValueError(f"a state query is a dict, not {type(data).__name__}")
        known = {"resource", "filters", "limit", "detail", "timeout", "scope", "targets", "args",
                 "offset"}
        extra = set(data) - known
        if extra:
            raise ValueError(f"unknown fields in a state query: {sorted(extra)}")
        args = data.get("args") or {}
        if not isinstance(args, dict):
            raise ValueError("a state query's args must be a dict")
        return cls(data.get("resource"), tuple(data.get("filters") or ()),
                   data.get("limit", DEFAULT_LIMIT), bool(data.get("detail", False)),
                   data.get("timeout", DEFAULT_TIMEOUT_S), data.get("scope", "cluster"),
                   data.get("targets"), args, data.get("offset", 0))

    def for_peer(self):
        # A peer's rows are merged here: it sends the whole first page's worth, unsliced.
        return StateQuery(self.resource, self.filters, min(self.offset + self.limit, MAX_LIMIT),
                          self.detail, self.timeout, "node", None, self.args, 0)


def normalize_filters(resource, filters):
    """((column, predicate, value as str), ...) or ValueError saying what is wrong."""
    if filters is None:
        return ()
    if isinstance(filters, (str, bytes)) or not hasattr(filters, "__iter__"):
        raise ValueError(f"filters must be a list of (column, predicate, value), not {filters!r}")
    columns = set(all_columns(resource)) if resource in COLUMNS else None
    out = []
    for f in filters:
        if not isinstance(f, (tuple, list)) or len(f) != 3:
            raise ValueError(f"a filter is (column, predicate, value), not {f!r}")
        column, predicate, value = f
        if not isinstance(column, str):
            raise ValueError(f"a filter's column must be a str, not {column!r}")
        if columns is not None and column not in columns:
            raise ValueError(f"{column!r} is not a column of {resource}; filter on one of "
                             + ", ".join(sorted(columns)))
        if predicate not in PREDICATES:
            raise ValueError(f"unsupported predicate {predicate!r}; use '=' or '!='")
        value = "" if value is None else str(value)
        out.append((column, predicate, value))
    return tuple(out)


def _as_text(value, enum):
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    text = str(value)
    return text.upper() if enum else text


def compile_filters(filters, get):
    """A predicate row -> bool for every filter; get(row, column) reads a column."""
    if not filters:
        return None
    checks = []
    for column, predicate, value in filters:
        enum = column in ENUM_COLUMNS
        want = value.upper() if enum else value
        checks.append((column, predicate == "=", want, enum))

    def match(row):
        for column, equal, want, enum in checks:
            if (_as_text(get(row, column), enum) == want) != equal:
                return False
        return True
    return match


def dict_get(row, column):
    return row.get(column)


def text_matcher(query, get=dict_get):
    """A predicate row -> bool for the query's free-text search (args["text"], the
    dashboard's search box): some column the answer shows contains it, case-insensitively;
    None when there is no search. Searching on the node sends only the page back."""
    text = query.args.get("text")
    if not text or query.resource not in COLUMNS:
        return None
    needle = text.lower()
    columns = all_columns(query.resource) if query.detail else COLUMNS[query.resource][0]

    def match(row):
        for column in columns:
            value = get(row, column)
            if value is not None and needle in str(value).lower():
                return True
        return False
    return match


def select(rows, query, get=dict_get, to_dict=None, skip=0, search=None):
    """(the first `limit` matching rows as dicts, how many matched). rows: an iterable of
    dicts (or of objects read by `get` and turned into dicts by `to_dict(row, detail)`; the
    first `skip` of those are None, for an answer whose merge cuts them off). search: the
    text search's predicate when the caller has a faster one than text_matcher's."""
    match = compile_filters(query.filters, get)
    if search is None:
        search = text_matcher(query, get)
    if search is not None:
        match = search if match is None else (lambda r, f=match: f(r) and search(r))
    limit = query.offset + query.limit      # a page needs the rows before it too
    out = []
    total = 0
    for row in rows:
        if match is not None and not match(row):
            continue
        total += 1
        if total <= limit:
            out.append(row)
    if to_dict is not None:
        skip = min(skip, len(out))
        out = [None] * skip + [to_dict(row, query.detail) for row in out[skip:]]
    elif not query.detail and query.resource in COLUMNS:
        out = [trim(row, query.resource) for row in out]
    return out, total


def trim(row, resource):
    """A row's default (non-detail) columns, plus node_id when it has one."""
    base = COLUMNS[resource][0]
    return {k: row[k] for k in base if k in row}


def empty_answer():
    return {"rows": [], "total": 0, "nodes": [], "failed_nodes": {}, "summary": None,
            "files": None, "text": None}


def merge(answers, query):
    """One answer from the answers of several nodes (each itself an answer dict). Rows keep
    each node's order and nodes go by id, so pages (offset, limit) are stable between calls."""
    out = empty_answer()
    rows = []
    answers = sorted(answers, key=lambda a: (not a.get("nodes"), (a.get("nodes") or [""])[0]))
    for answer in answers:
        rows.extend(answer.get("rows") or ())
        out["total"] += answer.get("total") or 0
        out["nodes"].extend(answer.get("nodes") or ())
        out["failed_nodes"].update(answer.get("failed_nodes") or {})
        if answer.get("summary") is not None:
            out["summary"] = merge_summaries(out["summary"], answer["summary"])
        if answer.get("text") is not None and out["text"] is None:
            out["text"] = answer["text"]
        if answer.get("files") is not None:
            out["files"] = dict(out["files"] or {}, **answer["files"])
    if query.resource == "jobs":
        rows, joined = join_jobs(rows)
        out["total"] -= joined
    out["rows"] = rows[query.offset:query.offset + query.limit]
    return out


def join_jobs(rows):
    """(rows, how many were folded): a submitted job's row takes its driver's pid and node
    from the driver's own row (type DRIVER, same job_id), which then goes, as Ray lists a
    submitted job once. A driver whose submission is not listed keeps its row."""
    submitted = {r.get("job_id"): r for r in rows
                 if r.get("type") == "SUBMISSION" and r.get("job_id")}
    if not submitted:
        return rows, 0
    out, joined = [], 0
    for row in rows:
        job = submitted.get(row.get("job_id")) if row.get("type") == "DRIVER" else None
        if job is None:
            out.append(row)
            continue
        joined += 1
        job["driver_pid"] = row.get("driver_pid")
        job["driver_node_id"] = job.get("driver_node_id") or row.get("driver_node_id")
        if "driver_info" in row:
            job["driver_info"] = row["driver_info"]
    return out, joined


# -- summaries ----------------------------------------------------------------------------------
def summarize(rows, key, kind):
    """{key value: {"state_counts": {state: n}, ...}} of rows (dicts) for summarize_*()."""
    if kind == "objects":
        return summarize_objects(rows)
    out = {}
    for row in rows:
        name = row.get(key) or ""
        entry = out.get(name)
        if entry is None:
            entry = out[name] = {key: name, "state_counts": {}}
            if kind == "tasks":
                entry["type"] = row.get("type")
        state = row.get("state") or row.get("task_status") or ""
        entry["state_counts"][state] = entry["state_counts"].get(state, 0) + 1
        if kind == "objects":
            entry["total_objects"] = entry.get("total_objects", 0) + 1
            entry["total_size_mb"] = entry.get("total_size_mb", 0.0) + \
                max(row.get("object_size") or 0, 0) / 2**20     # -1: not known here
    return out


def summarize_objects(rows):
    """Ray's summarize_objects: per call site (all "disabled" unless call sites are recorded),
    how many refs and bytes, their task states and reference types, and the processes and
    nodes that hold them (as lists here, so nodes' summaries add up; counted at the end by
    objects_summary_done)."""
    out = {}
    for row in rows:
        site = row.get("call_site") or "disabled"
        entry = out.get(site)
        if entry is None:
            entry = out[site] = {"call_site": site, "total_objects": 0, "total_size_mb": 0.0,
                                 "task_state_counts": {}, "ref_type_counts": {},
                                 "holders": [], "node_ids": []}
        entry["total_objects"] += 1
        entry["total_size_mb"] += max(row.get("object_size") or 0, 0) / 2**20  # -1: unknown
        for field_name, value in (("task_state_counts", row.get("task_status")),
                                  ("ref_type_counts", row.get("reference_type"))):
            counts = entry[field_name]
            counts[value or ""] = counts.get(value or "", 0) + 1
        holder = f"{row.get('node_id')}:{row.get('pid')}" if row.get("pid") else None
        if holder is not None and holder not in entry["holders"]:
            entry["holders"].append(holder)
        if row.get("node_id") and row["node_id"] not in entry["node_ids"]:
            entry["node_ids"].append(row["node_id"])
    return out


def objects_summary_done(summary):
    """The merged objects summary as Ray shows it: the holders counted."""
    out = {}
    for site, entry in (summary or {}).items():
        entry = dict(entry)
        entry["total_num_workers"] = len(entry.pop("holders", ()))
        entry["total_num_nodes"] = len(entry.pop("node_ids", ()))
        out[site] = entry
    return out


def _merge_object_entry(mine, entry):
    mine["total_objects"] += entry["total_objects"]
    mine["total_size_mb"] += entry["total_size_mb"]
    for field_name in ("task_state_counts", "ref_type_counts"):
        for k, n in entry[field_name].items():
            mine[field_name][k] = mine[field_name].get(k, 0) + n
    for field_name in ("holders", "node_ids"):
        mine[field_name] = list(dict.fromkeys(mine[field_name] + entry[field_name]))


def merge_summaries(a, b):
    if a is None:
        return {k: _copy_entry(v) for k, v in b.items()}
    for name, entry in b.items():
        mine = a.get(name)
        if mine is None:
            a[name] = _copy_entry(entry)
            continue
        if "ref_type_counts" in entry:
            _merge_object_entry(mine, entry)
            continue
        for state, n in entry["state_counts"].items():
            mine["state_counts"][state] = mine["state_counts"].get(state, 0) + n
        for k in ("total_objects", "total_size_mb"):
            if k in entry:
                mine[k] = mine.get(k, 0) + entry[k]
    return a


def _copy_entry(entry):
    if "ref_type_counts" in entry:
        return dict(entry, task_state_counts=dict(entry["task_state_counts"]),
                    ref_type_counts=dict(entry["ref_type_counts"]),
                    holders=list(entry["holders"]), node_ids=list(entry["node_ids"]))
    return dict(entry, state_counts=dict(entry["state_counts"]))
