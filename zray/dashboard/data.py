"""What the dashboard's pages show, read from the nodes: mesh-wide listings (every live member
answers for what it holds), filtered and paginated here so a page with 10k actors moves only
one page of rows to the browser.

Listings come from `zray.util.state` when it is present (Ray's field names, every node's rows),
else straight from the nodes' listing messages (node/local_node.py's query/query_mesh).
"""
import os
import time

from ..node import local_node
from ..transport import wire

DEFAULT_PAGE = 100
MAX_PAGE = 1000
LOG_TAIL_BYTES = 64 * 1024


def page(rows, offset=0, limit=DEFAULT_PAGE, filters=None, text=None, sort_key=None):
    """{"total", "offset", "rows", "counts"}: rows filtered by exact `filters` {field: value}
    and by `text` (a substring of any field), counted by state, then one page of them."""
    offset = max(0, int(offset or 0))
    limit = max(1, min(MAX_PAGE, int(limit or DEFAULT_PAGE)))
    filters = {k: v for k, v in (filters or {}).items() if v not in (None, "")}
    counts = {}
    kept = []
    needle = (text or "").lower()
    for row in rows:
        if any(str(row.get(k)) != str(v) for k, v in filters.items()):
            continue
        if needle and not any(needle in str(v).lower() for v in row.values()):
            continue
        counts[row.get("state")] = counts.get(row.get("state"), 0) + 1
        kept.append(row)
    if sort_key:
        kept.sort(key=sort_key)
    return {"total": len(kept), "offset": offset, "limit": limit,
            "rows": kept[offset:offset + limit], "counts": counts}


class ClusterData:
    def __init__(self, node_info):
        self.node = node_info        # the node file's dict (session, address, node_id, ...)

    # -- listings --------------------------------------------------------------------------------
    def _state_api(self):
        try:
            from ..util import state
        except ImportError:
            return None
        return state if hasattr(state, "list_actors") else None

    def _mesh(self, msg_type):
        rows, _silent = local_node.query_mesh(msg_type, self.node)
        return rows

    def cluster(self):
        info = local_node.query(wire.CLUSTER_INFO, self.node)
        store = local_node.query(wire.STORE_STATS, self.node)
        return {"nodes": info["nodes"], "total": info["total"], "available": info["available"],
                "queued": info["queued"], "workers": info["workers"], "store": store,
                "this_node": self.node["node_id"], "session": self.node["session"],
                "time": time.time()}

    def actors(self):
        state = self._state_api()
        if state is not None:
            return [_plain(a) for a in state.list_actors(limit=1_000_000, raise_on_missing_output=False,
                                                         address=self.node.get("node_file"))]
        rows = self._mesh(wire.LIST_ACTORS)
        for r in rows:       # Ray's names beside the node's own
            r.setdefault("ray_namespace", r.get("namespace"))
            r.setdefault("num_restarts", r.get("restarts"))
        return rows

    def tasks(self):
        state = self._state_api()
        if state is not None:
            return [_plain(t) for t in state.list_tasks(limit=1_000_000, raise_on_missing_output=False,
                                                        address=self.node.get("node_file"))]
        return self._mesh(wire.LIST_TASKS)

    def objects(self):
        state = self._state_api()
        if state is not None:
            return [_plain(o) for o in state.list_objects(limit=1_000_000,
                                                          raise_on_missing_output=False,
                                                          address=self.node.get("node_file"))]
        return self._mesh(wire.LIST_OBJECTS)

    def placement_groups(self):
        state = self._state_api()
        if state is not None and hasattr(state, "list_placement_groups"):
            return [_plain(p) for p in state.list_placement_groups(
                limit=1_000_000, raise_on_missing_output=False, address=self.node.get("node_file"))]
        try:
            table = local_node.query(wire.PG_TABLE, self.node)
        except Exception:     # an older node: no table
            return []
        if isinstance(table, dict):
            return [dict(v, placement_group_id=k) if isinstance(v, dict) else {"placement_group_id": k}
                    for k, v in table.items()]
        return list(table or [])

    # -- logs ------------------------------------------------------------------------------------
    def log_files(self):
        folder = os.path.join(self.node["session"], "logs")
        out = []
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return out
        for name in names:
            try:
                st = os.stat(os.path.join(folder, name))
            except OSError:
                continue
            out.append({"name": name, "size": st.st_size, "mtime": st.st_mtime,
                        "node_id": self.node["node_id"]})
        return out

    def log_tail(self, name, tail_bytes=LOG_TAIL_BYTES):
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"no such log file: {name!r}")
        path = os.path.join(self.node["session"], "logs", name)
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - tail_bytes))
                return f.read().decode(errors="replace"), size
        except FileNotFoundError:
            raise ValueError(f"no such log file: {name!r}") from None


def _plain(row):
    """A state API row (a dataclass or dict) as a JSON-ready dict."""
    if isinstance(row, dict):
        return row
    if hasattr(row, "__dataclass_fields__"):
        from dataclasses import asdict
        return asdict(row)
    return dict(row)
