"""Progress output: a live table in a terminal, plain lines otherwise (Ray's CLIReporter names).

This is output for the user, not logging: it goes to `sys.stdout` unless told otherwise and
`verbose=0` silences it. In a terminal the table is redrawn in place at most twice a second
(`_TTY_INTERVAL`); piped, a status line
goes out every `max_report_frequency` seconds and a summary at the end.
"""
import collections
import sys
import time

_TTY_INTERVAL = 0.5


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


class ProgressReporter:
    def should_report(self, trials, done=False):
        return True

    def report(self, trials, done, *sys_info):
        pass


class CLIReporter(ProgressReporter):
    def __init__(self, metric_columns=None, parameter_columns=None, total_samples=None,
                 max_progress_rows=20, max_error_rows=20, max_column_length=20,
                 max_report_frequency=5, infer_limit=3, print_intermediate_tables=None,
                 metric=None, mode=None, sort_by_metric=False, stream=None):
        self.metric_columns = metric_columns
        self.parameter_columns = parameter_columns
        self.max_progress_rows = max_progress_rows
        self.max_error_rows = max_error_rows
        self.max_column_length = max_column_length
        self.max_report_frequency = max_report_frequency
        self.metric = metric
        self.mode = mode
        self.sort_by_metric = sort_by_metric
        self._stream = stream
        self._last = 0.0
        self._drawn_lines = 0

    @property
    def stream(self):
        return self._stream or sys.stdout

    def _is_tty(self):
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def set_search_properties(self, metric, mode):
        self.metric = self.metric or metric
        self.mode = self.mode or mode
        return True

    def should_report(self, trials, done=False):
        if done:
            return True
        interval = _TTY_INTERVAL if self._is_tty() else self.max_report_frequency
        return time.monotonic() - self._last >= interval

    def _columns(self, trials):
        params = self.parameter_columns
        if params is None:
            keys = []
            for t in trials[:50]:
                for k in t.evaluated_params:
                    if k not in keys:
                        keys.append(k)
            params = keys[:6]
        metrics = self.metric_columns
        if metrics is None:
            metrics = [self.metric] if self.metric else []
            for t in trials:
                for k, v in t.last_result.items():
                    if len(metrics) >= 3:
                        break
                    if k not in metrics and isinstance(v, (int, float)) and \
                            not isinstance(v, bool) and k not in _AUTO:
                        metrics.append(k)
                if len(metrics) >= 3:
                    break
            metrics += ["training_iteration"]
        return list(params), list(metrics)

    def table(self, trials):
        counts = collections.Counter(t.status for t in trials)
        head = "Trial status: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        params, metrics = self._columns(trials)
        cols = ["Trial name", "status"] + params + metrics
        rows = []
        shown = trials
        if len(trials) > self.max_progress_rows:
            running = [t for t in trials if t.status == "RUNNING"]
            others = [t for t in trials if t.status != "RUNNING"]
            shown = (running + others[-(self.max_progress_rows - len(running)):]) \
                if len(running) < self.max_progress_rows else running[:self.max_progress_rows]
        for t in shown:
            flat = {}
            for k, v in t.config.items():
                flat[k] = v
            row = [str(t), t.status]
            row += [_fmt(t.evaluated_params.get(p, flat.get(p, ""))) for p in params]
            row += [_fmt(t.last_result.get(m, "")) for m in metrics]
            rows.append(row[:1] + [c[:self.max_column_length] for c in row[1:]])
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
                  for i, c in enumerate(cols)]
        lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        if len(trials) > len(shown):
            lines.append(f"... {len(trials) - len(shown)} more trials not shown")
        errors = [t for t in trials if t.status == "ERROR"][:self.max_error_rows]
        if errors:
            n_errors = sum(1 for t in trials if t.status == "ERROR")
            lines.append(f"Number of errored trials: {n_errors}")
            lines += [f"  {t}: {t.error_file}" for t in errors]
        return lines

    def report(self, trials, done, *sys_info):
        self._last = time.monotonic()
        if self._is_tty():
            lines = self.table(trials)
            out = []
            if self._drawn_lines:
                out.append(f"\x1b[{self._drawn_lines}F\x1b[J")
            out.append("\n".join(lines) + "\n")
            self.stream.write("".join(out))
            self._drawn_lines = 0 if done else len(lines)
        else:
            counts = collections.Counter(t.status for t in trials)
            status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            if done:
                self.stream.write("\n".join(self.table(trials)) + "\n")
            else:
                self.stream.write(f"Trial status: {status}\n")
        self.stream.flush()


class JupyterNotebookReporter(CLIReporter):
    pass


_AUTO = {"time_this_iter_s", "time_total_s", "timestamp", "pid", "time_since_restore",
         "iterations_since_restore", "training_iteration", "done"}
