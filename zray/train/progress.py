"""The driver's progress output: one line per completed report, user output (not a log), off
with RunConfig(verbose=0) or ZRAY_TRAIN_VERBOSE=0."""
import sys
import time


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


class ProgressPrinter:
    def __init__(self, name, verbose, stream=None):
        self.name = name
        self.verbose = verbose
        self.stream = stream
        self.started = time.monotonic()

    def line(self, iteration, metrics, checkpoint_name):
        parts = [f"{k}={_fmt(v)}" for k, v in metrics.items() if not isinstance(v, dict)]
        if checkpoint_name:
            parts.append(f"checkpoint={checkpoint_name}")
        return (f"(zray.train {self.name}) report {iteration} "
                f"[{time.monotonic() - self.started:.1f}s] " + " ".join(parts))

    def report(self, iteration, metrics, checkpoint_name):
        if self.verbose <= 0:
            return
        stream = self.stream or sys.stdout
        stream.write(self.line(iteration, metrics, checkpoint_name) + "\n")
        stream.flush()

    def message(self, text):
        if self.verbose <= 0:
            return
        stream = self.stream or sys.stdout
        stream.write(f"(zray.train {self.name}) {text}\n")
        stream.flush()
