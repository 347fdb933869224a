"""`/metrics` of a node's dashboard: Prometheus text exposition (format 0.0.4). The node's own
gauges come from the newest sample of the metrics ring; the user's `zray.util.metrics` come
from the state API's renderer when it is present."""

_NODE_GAUGES = [
    ("zray_node_cpu_percent", "cpu_percent", "CPU used by the node's daemon and workers, percent of one core"),
    ("zray_node_memory_bytes", "memory_bytes", "resident memory of the node's daemon and workers"),
    ("zray_object_store_used_bytes", "store_used_bytes", "bytes used in the node's object store"),
    ("zray_object_store_capacity_bytes", "store_capacity_bytes", "the object store's size"),
    ("zray_object_store_objects", "store_objects", "objects in the node's store"),
    ("zray_node_workers", "workers", "worker processes of the node"),
    ("zray_node_queued_tasks", "queued_tasks", "tasks waiting on the node"),
    ("zray_node_tasks_per_second", "tasks_per_s", "tasks finished per second (last interval)"),
]


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(dashboard):
    lines = []
    sample = dashboard.ring.latest() or {}
    node = _escape(dashboard.node.get("node_id", ""))
    for name, key, help_text in _NODE_GAUGES:
        if key in sample:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge",
                      f'{name}{{node_id="{node}"}} {float(sample[key])}']
    if "tasks_finished" in sample:
        lines += ["# HELP zray_node_tasks_finished_total tasks finished on the node",
                  "# TYPE zray_node_tasks_finished_total counter",
                  f'zray_node_tasks_finished_total{{node_id="{node}"}} {float(sample["tasks_finished"])}']
    text = "\n".join(lines) + "\n"
    try:
        from ..util import metrics as user_metrics
        renderer = getattr(user_metrics, "render_prometheus", None)
    except ImportError:
        renderer = None
    if renderer is not None:
        try:
            text += renderer(address=dashboard.node.get("node_file"))
        except TypeError:
            text += renderer()
    return text
