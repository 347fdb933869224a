"""Prometheus text exposition (format 0.0.4) of a node: its own gauges and its processes' metrics.

I/O-free: `render(node_series, user_metrics, node_id)` returns the text a scrape of the node's
`/metrics` gets. node_series: [(name, kind, help, {labels}, value)] of the node's own figures
(zray_*); user_metrics: NodeMetrics.collect() (zray.util.metrics, exported as `ray_<name>` as
Ray exports them). Every sample carries the label NodeId.
"""
import math
import re

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BAD = re.compile(r"[^a-zA-Z0-9_:]")


def metric_name(name):
    name = _BAD.sub("_", name)
    return name if not name[:1].isdigit() else "_" + name


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels):
    if not labels:
        return ""
    return "{" + ",".join(f'{metric_name(k)}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value):
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render(node_series, user_metrics, node_id):
    lines = []
    node = {"NodeId": node_id}
    seen = set()
    for name, kind, help_text, labels, value in node_series:
        name = metric_name(name)
        if name not in seen:
            seen.add(name)
            lines.append(f"# HELP {name} {_escape(help_text)}")
            lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name}{_labels(dict(labels, **node))} {_number(value)}")
    for raw_name, (kind, description, tag_keys, boundaries, values) in sorted(user_metrics.items()):
        name = metric_name("ray_" + raw_name)
        if name in seen:
            continue
        seen.add(name)
        lines.append(f"# HELP {name} {_escape(description or raw_name)}")
        lines.append(f"# TYPE {name} {kind}")
        for tags, value in values.items():
            labels = dict(zip(tag_keys, tags), **node)
            if kind == "counter":
                lines.append(f"{name}{_labels(labels)} {_number(value)}")
            elif kind == "gauge":
                lines.append(f"{name}{_labels(labels)} {_number(value[0])}")
            else:
                buckets, total, count = value
                cumulative = 0
                for bound, n in zip(list(boundaries) + [math.inf], buckets):
                    cumulative += n
                    le = "+Inf" if math.isinf(bound) else _number(bound)
                    lines.append(f"{name}_bucket{_labels(dict(labels, le=le))} {cumulative}")
                lines.append(f"{name}_sum{_labels(labels)} {_number(total)}")
                lines.append(f"{name}_count{_labels(labels)} {count}")
    return "\n".join(lines) + "\n"


def parse(text):
    """{(name, frozenset(labels.items())): value} of an exposition (for tests and tools)."""
    out = {}
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = sample.match(line)
        if m is None:
            raise ValueError(f"not a Prometheus sample line: {line!r}")
        labels = frozenset((k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                           for k, v in label.findall(m.group(3) or ""))
        value = m.group(4)
        out[(m.group(1), labels)] = float(value.replace("+Inf", "inf").replace("-Inf", "-inf"))
    return out
