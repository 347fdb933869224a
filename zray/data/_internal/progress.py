"""Per-operator progress on stderr for long runs (rows done, rate), off through DataContext.

Nothing is shown for runs shorter than DataContext.progress_bar_min_seconds; on a terminal a line
per operator is redrawn at most 5 times a second, elsewhere one line per operator every 10 s and
at its end.
"""
import sys
import time


class _Bar:
    def __init__(self, progress, name):
        self.progress = progress
        self.name = name
        self.rows = 0
        self.start = time.perf_counter()
        self.last = 0.0
        self.shown = False

    def update(self, rows):
        self.rows += rows
        self.progress.maybe_draw(self)

    def line(self):
        elapsed = time.perf_counter() - self.start
        rate = self.rows / elapsed if elapsed > 0 else 0
        return f"- {self.name}: {self.rows} rows done, {rate:,.0f} rows/s, {elapsed:.1f}s"

    def close(self):
        if self.shown:
            self.progress.write(self.line(), final=True)


class _NoBar:
    def update(self, rows):
        pass

    def close(self):
        pass


class Progress:
    def __init__(self, ctx):
        self.enabled = ctx.enable_progress_bars and ctx.enable_operator_progress_bars
        self.min_s = ctx.progress_bar_min_seconds
        self.start = time.perf_counter()
        self.tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()

    def bar(self, name):
        return _Bar(self, name) if self.enabled else _NoBar()

    def maybe_draw(self, bar):
        now = time.perf_counter()
        if now - self.start < self.min_s:
            return
        period = 0.2 if self.tty else 10.0
        if now - bar.last < period:
            return
        bar.last = now
        bar.shown = True
        self.write(bar.line())

    def write(self, text, final=False):
        if self.tty:
            sys.stderr.write("\r\x1b[K" + text + ("\n" if final else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def close(self):
        pass
