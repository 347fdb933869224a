"""The metrics of a node's processes, as the node keeps them for its /metrics exposition.

I/O-free. Every process that records a metric (zray.util.metrics, in tasks, actors or the
driver) sends the node its whole current values now and then (WORKER_REPORT, at most every
0.5 s while something changed); the node keeps the latest snapshot per process. A process
that exits leaves its counters and histograms behind (folded into `retired`, so a counter never
goes down when a worker exits) and takes its gauges with it.

A snapshot is a list of metric entries, plain values only:
    (name, kind, description, tag_keys, boundaries, series)
    kind: "counter" | "gauge" | "histogram"; boundaries: histogram bucket bounds or None
    series: [(tag_values, value)] with value a float (counter: the total; gauge: the last set)
            or, for histograms, (bucket_counts, sum, count) with len(boundaries) + 1 buckets
Gauges from several processes with the same tags: the one set last wins (each process sends
(value, time set)).
"""
KINDS = ("counter", "gauge", "histogram")
MAX_SERIES_PER_PROCESS = 10_000


class NodeMetrics:
    def __init__(self):
        self.by_process = {}     # address -> {name: entry}
        self.retired = {}        # name -> (kind, description, tag_keys, boundaries, {tags: value})

    def update(self, process, snapshot):
        """Replace a process's snapshot; malformed entries are dropped (ValueError if none
        is usable and the snapshot was not empty)."""
        entries = {}
        for entry in snapshot[:MAX_SERIES_PER_PROCESS]:
            try:
                name, kind, description, tag_keys, boundaries, series = entry
            except (TypeError, ValueError):
                continue
            if kind not in KINDS or not isinstance(name, str):
                continue
            try:
                tag_keys = tuple(str(k) for k in tag_keys or ())
                bounds = tuple(float(b) for b in boundaries) if boundaries else None
                if kind == "histogram" and not bounds:
                    continue
                clean = []
                for tags, value in series:
                    tags = tuple(str(t) for t in tags)
                    if len(tags) == len(tag_keys):
                        clean.append((tags, _checked(kind, value, bounds)))
            except (TypeError, ValueError):
                continue          # a malformed entry never breaks the node's exposition
            entries[name] = (kind, str(description or ""), tag_keys, bounds, clean)
        self.by_process[process] = entries

    def process_gone(self, process):
        entries = self.by_process.pop(process, None)
        if not entries:
            return
        for name, (kind, description, tag_keys, boundaries, series) in entries.items():
            if kind == "gauge":
                continue
            kept = self.retired.setdefault(name, (kind, description, tag_keys, boundaries, {}))
            values = kept[4]
            for tags, value in series:
                values[tags] = _add(kind, values.get(tags), value)

    def collect(self):
        """{name: (kind, description, tag_keys, boundaries, {tags: value})} merged over the
        node's processes: counters and histograms add up, the latest gauge wins."""
        out = {}
        for name, (kind, description, tag_keys, boundaries, values) in self.retired.items():
            out[name] = (kind, description, tag_keys, boundaries, dict(values))
        for entries in self.by_process.values():
            for name, (kind, description, tag_keys, boundaries, series) in entries.items():
                mine = out.get(name)
                if mine is None:
                    mine = out[name] = (kind, description, tag_keys, boundaries, {})
                elif mine[0] != kind:
                    continue         # two processes disagree on a name's kind: first one wins
                values = mine[4]
                for tags, value in series:
                    values[tags] = _add(kind, values.get(tags), value)
        return out


def _checked(kind, value, bounds):
    """The value in its kind's shape, or TypeError/ValueError."""
    if kind == "counter":
        return float(value)
    if kind == "gauge":
        number, when = value
        return (float(number), float(when))
    buckets, total, count = value
    buckets = [int(b) for b in buckets]
    if len(buckets) != len(bounds) + 1:
        raise ValueError("bucket counts do not match the boundaries")
    return (buckets, float(total), int(count))


def _add(kind, old, new):
    if kind == "counter":
        return (old or 0.0) + float(new)
    if kind == "gauge":
        if old is None or new[1] >= old[1]:
            return (float(new[0]), float(new[1]))
        return old
    buckets, total, count = new
    if old is None:
        return (list(buckets), float(total), int(count))
    if len(old[0]) != len(buckets):
        return old
    return ([a + b for a, b in zip(old[0], buckets)], old[1] + float(total), old[2] + int(count))
