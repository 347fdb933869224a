"""`zray list|get|summary|logs|timeline`: the state API on the command line, as Ray's CLI.

Every command asks one node (--address: "auto", HOST:PORT of any member) which answers for the
whole mesh. Output: a table (default), json or yaml (--format).
"""
import json
import sys

RESOURCES = ["actors", "tasks", "objects", "nodes", "workers", "jobs", "placement-groups"]
# The table's columns per resource (every column with --detail or json/yaml).
TABLE_COLUMNS = {
    "actors": ["actor_id", "class_name", "state", "name", "pid", "node_id", "num_restarts"],
    "tasks": ["task_id", "name", "state", "type", "func_or_class_name", "node_id",
              "worker_pid", "error_type"],
    "objects": ["object_id", "object_size", "task_status", "reference_type", "type", "pid",
                "node_id"],
    "nodes": ["node_id", "node_ip", "state", "node_name", "resources_total"],
    "workers": ["worker_id", "is_alive", "worker_type", "pid", "node_id", "job_id"],
    "jobs": ["job_id", "submission_id", "status", "type", "driver_pid", "driver_node_id",
             "start_time"],
    "placement_groups": ["placement_group_id", "name", "state", "strategy", "creator_job_id"],
}
SHORT_ID_COLUMNS = ("node_id", "driver_node_id")


def add_parsers(sub):
    def common(p):
        p.add_argument("--address", default=None, help="HOST:PORT of any member (default: "
                       "ZRAY_ADDRESS, the job's cluster inside Slurm, or the only node here)")
        p.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
        p.add_argument("--format", choices=["table", "json", "yaml"], default="table")

    lister = sub.add_parser("list", help="list actors, tasks, objects, nodes, workers, jobs or "
                                         "placement groups of the whole mesh")
    lister.add_argument("what", choices=RESOURCES + ["placement_groups"])
    lister.add_argument("--filter", "-f", action="append", default=[], metavar="KEY=VALUE",
                        help='a filter as in Ray: "state=ALIVE", "name!=foo" (repeatable)')
    lister.add_argument("--limit", type=int, default=100, help="rows at most (default 100)")
    lister.add_argument("--detail", action="store_true", help="every column")
    lister.add_argument("--this-node", action="store_true",
                        help="only the node asked (default: every live node)")
    common(lister)
    getter = sub.add_parser("get", help="one actor, task, node, worker, job, placement group "
                                        "or object by id")
    getter.add_argument("what", choices=RESOURCES + ["placement_groups"])
    getter.add_argument("id")
    common(getter)
    summary = sub.add_parser("summary", help="tasks, actors or objects counted by state")
    summary.add_argument("what", choices=["tasks", "actors", "objects"])
    common(summary)
    logs = sub.add_parser("logs", help="list a node's log files, or print one")
    logs.add_argument("glob", nargs="?", default=None,
                      help="a file name (printed) or a pattern (files listed)")
    logs.add_argument("--node-id", default=None)
    logs.add_argument("--node-ip", default=None)
    logs.add_argument("--actor-id", default=None, help="the log of this actor's worker")
    logs.add_argument("--task-id", default=None, help="the log of the worker that ran it")
    logs.add_argument("--pid", type=int, default=None, help="the log of this worker")
    logs.add_argument("--err", action="store_true", help="stderr instead of stdout")
    logs.add_argument("--tail", type=int, default=1000, help="last N lines (-1: all)")
    logs.add_argument("--follow", action="store_true", help="keep printing what is appended")
    logs.add_argument("--address", default=None)
    logs.add_argument("--timeout", type=float, default=30.0)
    timeline = sub.add_parser("timeline", help="write a Chrome trace of the mesh's tasks")
    timeline.add_argument("--output", "-o", default=None,
                          help="file (default: zray-timeline-<time>.json in this folder)")
    timeline.add_argument("--limit", type=int, default=100_000)
    timeline.add_argument("--address", default=None)


def run(args):
    from ..util import state
    try:
        if args.command == "list":
            return _list(args, state)
        if args.command == "get":
            return _get(args, state)
        if args.command == "summary":
            return _summary(args, state)
        if args.command == "logs":
            return _logs(args, state)
        if args.command == "timeline":
            return _timeline(args)
    except (ValueError, state.RayStateApiException, ConnectionError) as exc:
        print(f"zray {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    raise ValueError(f"not a state command: {args.command}")


def _resource(what):
    return what.replace("-", "_")


def parse_filter(text):
    for predicate in ("!=", "="):
        if predicate in text:
            key, value = text.split(predicate, 1)
            key = key.strip()
            if not key:
                break
            return (key, predicate, value.strip())
    raise ValueError(f"a filter is KEY=VALUE or KEY!=VALUE, not {text!r}")


def _list(args, state):
    resource = _resource(args.what)
    filters = [parse_filter(f) for f in args.filter]
    answer = state.query(resource, filters=filters, limit=args.limit, detail=args.detail,
                         timeout=args.timeout, address=args.address,
                         scope="node" if args.this_node else "cluster")
    for node_id, why in (answer.get("failed_nodes") or {}).items():
        print(f"zray: node {node_id} did not answer ({why}); its {args.what} are not listed",
              file=sys.stderr)
    rows = answer["rows"]
    _print(rows, args.format, resource, args.detail)
    if args.format == "table":
        more = answer["total"] - len(rows)
        print(f"({len(rows)} {resource.replace('_', ' ')}"
              + (f"; {more} more match: raise --limit" if more > 0 else "") + ")")
    return 0


def _get(args, state):
    resource = _resource(args.what)
    answer = state.query(resource, filters=[(_id_column(resource), "=", args.id)],
                         limit=10_000, detail=True, timeout=args.timeout, address=args.address)
    rows = answer["rows"]
    if not rows:
        print(f"zray get: no {resource[:-1].replace('_', ' ')} {args.id}", file=sys.stderr)
        return 1
    if args.format == "table":
        for i, row in enumerate(rows):
            if i:
                print()
            width = max(len(k) for k in row)
            for k, v in row.items():
                print(f"{k.ljust(width)}  {_cell(v)}")
        return 0
    _print(rows if resource == "tasks" else rows[0], args.format, resource, True)
    return 0


def _id_column(resource):
    from ..util.state.api import _ID_COLUMN
    return _ID_COLUMN[resource]


def _summary(args, state):
    fn = {"tasks": state.summarize_tasks, "actors": state.summarize_actors,
          "objects": state.summarize_objects}[args.what]
    result = fn(address=args.address, timeout=args.timeout, raise_on_missing_output=False)
    if args.format != "table":
        _dump(result, args.format)
        return 0
    cluster = result["cluster"]
    entries = list(cluster["summary"].values())
    key = {"tasks": "func_or_class_name", "actors": "class_name", "objects": "call_site"}[args.what]
    counts = "task_state_counts" if args.what == "objects" else "state_counts"
    for e in entries:
        e.setdefault("state_counts", e.get(counts, {}))
    states = sorted({s for e in entries for s in e["state_counts"]})
    header = [key.upper()] + (["TYPE"] if args.what == "tasks" else []) + states
    table = []
    for e in sorted(entries, key=lambda e: str(e.get(key))):
        table.append([str(e.get(key))] + ([str(e.get("type"))] if args.what == "tasks" else [])
                     + [str(e["state_counts"].get(s, 0)) for s in states])
    total_key = f"total_{args.what}"
    print(f"======== {args.what} summary: {cluster.get(total_key, 0)} {args.what} on "
          f"{len(cluster.get('nodes', []))} node(s) ========")
    _table(header, table)
    return 0


def _logs(args, state):
    name = args.glob
    wants_file = (args.actor_id or args.task_id or args.pid is not None
                  or (name and not any(c in name for c in "*?[")))
    if not wants_file:
        files = state.list_logs(address=args.address, node_id=args.node_id,
                                node_ip=args.node_ip, glob_filter=name, timeout=args.timeout)
        for category in sorted(files):
            print(f"{category}:")
            for f in files[category]:
                print(f"  {f}")
        return 0
    lines = state.get_log(address=args.address, node_id=args.node_id, node_ip=args.node_ip,
                          filename=name if not (args.actor_id or args.task_id or args.pid)
                          else None, actor_id=args.actor_id, task_id=args.task_id, pid=args.pid,
                          tail=args.tail, follow=args.follow, timeout=args.timeout,
                          suffix="err" if args.err else "out")
    for line in lines:
        print(line, flush=args.follow)
    return 0


def _timeline(args):
    import time
    from ..state.timeline import timeline
    path = args.output or f"zray-timeline-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    events = timeline(path, address=args.address, limit=args.limit)
    print(f"wrote {len(events)} events to {path}; open it in chrome://tracing or "
          "https://ui.perfetto.dev")
    return 0


# -- output -------------------------------------------------------------------------------------
def _print(rows, fmt, resource, detail):
    if fmt != "table":
        _dump(rows, fmt)
        return
    columns = list(rows[0].keys()) if detail and rows else TABLE_COLUMNS[resource]
    table = []
    for r in rows:
        table.append([(str(r.get(c) or "")[:12] if c in SHORT_ID_COLUMNS else _cell(r.get(c)))
                      for c in columns])
    _table([c.upper() for c in columns], table)


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def _table(header, table):
    widths = [max([len(h)] + [len(row[i]) for row in table]) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _dump(data, fmt):
    if fmt == "json":
        print(json.dumps(data, indent=2, default=str))
        return
    try:
        import yaml
    except ImportError:
        raise ValueError("--format yaml needs PyYAML (pip install pyyaml)") from None
    print(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False), end="")
