"""Metrics over time without Prometheus: a fixed-size ring of samples kept by each node's
dashboard process (I/O-free; the sampler in server.py feeds it).

One sample every SAMPLE_INTERVAL_S = 2 s, CAPACITY = 1800 samples: the last hour, about 200 KB.
A sample is a flat dict of numbers (`time`, `cpu_percent`, `memory_bytes`, `store_used_bytes`,
`tasks_finished`, ...); rates such as tasks/s are derived from consecutive counters here, so the
node only keeps a counter.
"""
import collections
from dataclasses import dataclass

SAMPLE_INTERVAL_S = 2.0
CAPACITY = 1800


@dataclass(frozen=True)
class RingConfig:
    capacity: int = CAPACITY
    interval_s: float = SAMPLE_INTERVAL_S

    def __post_init__(self):
        if not isinstance(self.capacity, int) or self.capacity < 2:
            raise ValueError(f"capacity must be an int >= 2, got {self.capacity!r}")
        if not self.interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {self.interval_s!r}")

    def span_s(self):
        """How far back the ring reaches: capacity x interval."""
        return self.capacity * self.interval_s


class MetricsRing:
    def __init__(self, config=RingConfig()):
        self.config = config
        self._samples = collections.deque(maxlen=config.capacity)

    def add(self, sample):
        if "time" not in sample:
            raise ValueError("a sample needs its 'time'")
        previous = self._samples[-1] if self._samples else None
        sample = dict(sample)
        if previous is not None and "tasks_finished" in sample and "tasks_finished" in previous:
            dt = sample["time"] - previous["time"]
            done = sample["tasks_finished"] - previous["tasks_finished"]
            sample["tasks_per_s"] = round(done / dt, 3) if dt > 0 and done >= 0 else 0.0
        else:
            sample["tasks_per_s"] = 0.0
        self._samples.append(sample)
        return sample

    def latest(self):
        return self._samples[-1] if self._samples else None

    def since(self, t=0.0):
        return [s for s in self._samples if s["time"] > t]

    def __len__(self):
        return len(self._samples)
