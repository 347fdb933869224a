"""The autoscaling policy: an I/O-free machine fed with load samples and the clock.

Events in:
    record(now, total_ongoing)   the deployment's requests at a moment: running or queued in its
                                 replicas, plus those waiting in proxies and handles for one
    decide(now, current)         the controller's tick; `current` is the target it runs now
Out: a `ScalingDecision(target, reason)` record.

The rule (Ray's replica-queue-length policy):
    load     = mean (or max/min: aggregation_function) of the samples of the last
               look_back_period_s
    desired  = ceil(current + (load / target_ongoing_requests - current) * factor)
               factor = upscale or downscale smoothing; clamped to [min_replicas, max_replicas]
    desired > current for upscale_delay_s without a break   -> scale up to desired
    desired < current for downscale_delay_s without a break -> scale down to desired
    current == 0 and load > 0                                -> 1 at once (scale from zero)
A tick where desired == current resets both clocks.
"""
import collections
import dataclasses
import math

from .config import AutoscalingConfig


@dataclasses.dataclass(frozen=True)
class ScalingDecision:
    target: int
    reason: str


class AutoscalingPolicy:
    def __init__(self, config: AutoscalingConfig):
        self.config = config
        self._samples = collections.deque()     # (time, total ongoing)
        self._up_since = None
        self._down_since = None

    def record(self, now, total_ongoing):
        if total_ongoing < 0:
            raise ValueError(f"ongoing requests cannot be negative, got {total_ongoing}")
        self._samples.append((now, float(total_ongoing)))
        self._trim(now)

    def _trim(self, now):
        horizon = now - self.config.look_back_period_s
        while len(self._samples) > 1 and self._samples[0][0] < horizon:
            self._samples.popleft()

    def load(self, now):
        self._trim(now)
        values = [v for t, v in self._samples if t >= now - self.config.look_back_period_s]
        if not values:
            return None
        fn = self.config.aggregation_function
        if fn == "max":
            return max(values)
        if fn == "min":
            return min(values)
        return sum(values) / len(values)

    def desired(self, now, current):
        c = self.config
        load = self.load(now)
        if load is None:
            return max(c.min_replicas, min(current, c.max_replicas))
        raw = load / c.target_ongoing_requests
        if current == 0:
            desired = math.ceil(raw)
        else:
            factor = c.upscale_factor() if raw > current else c.downscale_factor()
            desired = math.ceil(current + (raw - current) * factor - 1e-9)
        return max(c.min_replicas, min(desired, c.max_replicas))

    def decide(self, now, current):
        c = self.config
        if current < c.min_replicas or current > c.max_replicas:
            self._up_since = self._down_since = None
            target = max(c.min_replicas, min(current, c.max_replicas))
            return ScalingDecision(target, "outside [min_replicas, max_replicas]")
        desired = self.desired(now, current)
        if desired > current:
            self._down_since = None
            if current == 0:
                self._up_since = None
                return ScalingDecision(max(1, desired), "scaling up from zero")
            if self._up_since is None:
                self._up_since = now
            if now - self._up_since >= c.upscale_delay_s:
                self._up_since = None
                return ScalingDecision(desired, f"load above target for {c.upscale_delay_s}s")
            return ScalingDecision(current, "waiting for upscale_delay_s")
        if desired < current:
            self._up_since = None
            if self._down_since is None:
                self._down_since = now
            if now - self._down_since >= c.downscale_delay_s:
                self._down_since = None
                return ScalingDecision(desired, f"load below target for {c.downscale_delay_s}s")
            return ScalingDecision(current, "waiting for downscale_delay_s")
        self._up_since = self._down_since = None
        return ScalingDecision(current, "steady")
