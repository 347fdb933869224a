"""Per-operator statistics of an execution, printed by Dataset.stats() in Ray's shape."""
import time


def _fmt_s(s):
    if s >= 1:
        return f"{s:.2f}s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f}ms"
    return f"{s * 1e6:.2f}us"


class OpStats:
    def __init__(self, name):
        self.name = name
        self.tasks = 0
        self.blocks = 0
        self.rows = []
        self.bytes = []
        self.wall = []
        self.cpu = []
        self.start = time.perf_counter()
        self.elapsed = None

    def on_submitted(self):
        self.tasks += 1

    def on_finished(self, meta):
        self.blocks += 1
        self.rows.append(meta.num_rows or 0)
        self.bytes.append(meta.size_bytes or 0)
        if meta.exec_stats:
            self.wall.append(meta.exec_stats[0])
            self.cpu.append(meta.exec_stats[1])

    def on_done(self):
        if self.elapsed is None:
            self.elapsed = time.perf_counter() - self.start

    def summary(self, index):
        elapsed = self.elapsed if self.elapsed is not None else time.perf_counter() - self.start
        lines = [f"Operator {index} {self.name}: {self.tasks} tasks executed, "
                 f"{self.blocks} blocks produced in {_fmt_s(elapsed)}"]
        if self.wall:
            lines.append(f"* Remote wall time: {_fmt_s(min(self.wall))} min, "
                         f"{_fmt_s(max(self.wall))} max, {_fmt_s(sum(self.wall) / len(self.wall))} "
                         f"mean, {_fmt_s(sum(self.wall))} total")
            lines.append(f"* Remote cpu time: {_fmt_s(min(self.cpu))} min, "
                         f"{_fmt_s(max(self.cpu))} max, {_fmt_s(sum(self.cpu) / len(self.cpu))} "
                         f"mean, {_fmt_s(sum(self.cpu))} total")
        if self.rows:
            lines.append(f"* Output num rows per block: {min(self.rows)} min, {max(self.rows)} max, "
                         f"{sum(self.rows) // len(self.rows)} mean, {sum(self.rows)} total")
            lines.append(f"* Output size bytes per block: {min(self.bytes)} min, "
                         f"{max(self.bytes)} max, {sum(self.bytes) // len(self.bytes)} mean, "
                         f"{sum(self.bytes)} total")
            if elapsed > 0:
                lines.append(f"* Operator throughput: {sum(self.rows) / elapsed:.1f} rows/s")
        return "\n".join(lines)


class ExecutionStats:
    def __init__(self, name):
        self.name = name
        self.ops = []
        self.start = time.perf_counter()
        self.elapsed = None

    def op(self, name):
        stats = OpStats(name)
        self.ops.append(stats)
        return stats

    def finish(self):
        if self.elapsed is None:
            self.elapsed = time.perf_counter() - self.start

    def to_string(self):
        if not self.ops:
            return "No operators were executed (the dataset's data was already known)."
        parts = [op.summary(i + 1) for i, op in enumerate(self.ops)]
        total_rows = sum(self.ops[-1].rows)
        elapsed = self.elapsed if self.elapsed is not None else time.perf_counter() - self.start
        parts.append(f"Dataset throughput:\n\t* zray.data throughput: "
                     f"{total_rows / elapsed if elapsed > 0 else 0:.1f} rows/s "
                     f"({total_rows} rows in {_fmt_s(elapsed)})")
        return "\n".join(parts)
