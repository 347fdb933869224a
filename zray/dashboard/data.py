"""What the dashboard's pages show, read through the state API (`zray.util.state.query`, asked
of this node, which answers for the whole mesh) without a driver connection.

Paging: a listing asks the nodes for one page (`offset`, `limit`, the page's filters) and gets
it with the mesh-wide `total`, so a page of 10k actors moves one page of rows to the browser.
State counts (the filter chips) come from one summary query (actors, tasks), kept COUNTS_TTL_S,
and are fetched by the page after its rows, so rows never wait for them. A free-text search
(`q`) goes to the nodes as well (the query's args["text"]): they answer with its page only.
"""
import time

from ..state import query as state_query

DEFAULT_PAGE = 100
MAX_PAGE = 1000
SEARCH_LIMIT = 100_000
COUNTS_TTL_S = 2.0
LOG_TAIL_LINES = 1000
QUERY_TIMEOUT_S = 10.0
_STATES = {"actors": state_query.ACTOR_STATES, "tasks": state_query.TASK_STATES,
           "placement_groups": ("PENDING", "CREATED", "REMOVED", "RESCHEDULING")}


def _int(value, default, lo, hi, name):
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int, got {value!r}") from None
    return max(lo, min(hi, number))


class ClusterData:
    def __init__(self, node_info):
        self.node = node_info        # the node file's dict (session, address, node_id, ...)
        self._counts = {}            # (resource, filters) -> (time, counts)

    def _query(self, resource, **kwargs):
        from ..util.state import api
        kwargs.setdefault("timeout", QUERY_TIMEOUT_S)
        return api.query(resource, node=self.node, **kwargs)

    # -- listings --------------------------------------------------------------------------------
    def page(self, resource, filters=None, offset=0, limit=DEFAULT_PAGE, text=None,
             detail=False, counts=True):
        """{"total", "offset", "limit", "rows", "counts", "failed_nodes"} of one page."""
        offset = _int(offset, 0, 0, state_query.MAX_LIMIT, "offset")
        limit = _int(limit, DEFAULT_PAGE, 1, MAX_PAGE, "limit")
        filters = [(k, "=", v) for k, v in (filters or {}).items() if v not in (None, "")]
        answer = self._query(resource, filters=filters, limit=limit, offset=offset,
                             detail=detail, args={"text": text} if text else None)
        rows, total = answer["rows"], answer["total"]
        result = {"total": total, "offset": offset, "limit": limit, "rows": rows,
                  "failed_nodes": answer.get("failed_nodes") or {}}
        if counts:
            result["counts"] = self.state_counts(resource, [f for f in filters if f[0] != "state"])
        return result

    def state_counts(self, resource, filters=()):
        """{state: rows in that state} under `filters` (a list of (column, "=", value))."""
        key = (resource, tuple(sorted(filters)))
        cached = self._counts.get(key)
        if cached is not None and time.monotonic() - cached[0] < COUNTS_TTL_S:
            return cached[1]
        out = self._count(resource, list(filters))
        if len(self._counts) > 256:
            self._counts.clear()
        self._counts[key] = (time.monotonic(), out)
        return out

    def _count(self, resource, filters):
        out = {}
        if resource in ("actors", "tasks"):
            summary = self._query(f"summary_{resource}", filters=filters).get("summary") or {}
            for entry in summary.values():
                for state, n in entry.get("state_counts", {}).items():
                    out[state] = out.get(state, 0) + n
            return out
        for state in _STATES.get(resource, ()):
            answer = self._query(resource, filters=list(filters) + [("state", "=", state)],
                                 limit=1)
            if answer["total"]:
                out[state] = answer["total"]
        return out

    def rows(self, resource, limit=SEARCH_LIMIT, **kwargs):
        return self._query(resource, limit=limit, **kwargs)["rows"]

    def cluster(self):
        from ..node import local_node
        from ..transport import wire
        nodes = self.rows("nodes", detail=True)
        info = local_node.query(wire.CLUSTER_INFO, self.node)
        store = local_node.query(wire.STORE_STATS, self.node)
        return {"nodes": nodes, "total": info["total"], "available": info["available"],
                "queued": info["queued"], "workers": info["workers"], "store": store,
                "this_node": self.node["node_id"], "session": self.node["session"],
                "time": time.time()}

    def timeline(self, limit=20_000):
        from ..state.timeline import events
        rows = self._query("tasks", limit=limit, detail=True)["rows"]
        return events(rows, now_ms=int(time.time() * 1000))

    def summary(self, resource):
        summary = self._query(f"summary_{resource}").get("summary")
        if resource == "objects":
            from ..state.query import objects_summary_done
            summary = objects_summary_done(summary)
        return summary

    # -- logs ------------------------------------------------------------------------------------
    def log_files(self, node_id=None):
        """{node_id: [file names]} of one node (default: every live node)."""
        if node_id:
            answer = self._query("logs", targets=[node_id], args={"glob": None})
        else:
            answer = self._query("logs", args={"glob": None})
        return answer.get("files") or {}

    def log_tail(self, node_id, filename, lines=LOG_TAIL_LINES):
        answer = self._query("log", targets=[node_id or self.node["node_id"]],
                             args={"filename": filename, "tail": lines})
        files = answer.get("files") or {}
        if not files:
            raise ValueError(f"no log file {filename!r} on node {node_id}")
        return next(iter(files.values()))

    def metrics_text(self):
        from ..state.metrics_http import metrics_text
        return metrics_text(self.node)
