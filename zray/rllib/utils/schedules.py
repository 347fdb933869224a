"""Piecewise-linear schedules over env steps, e.g. DQN's epsilon: [(0, 1.0), (10000, 0.05)]."""
import bisect


class PiecewiseSchedule:
    def __init__(self, points):
        if isinstance(points, (int, float)):
            points = [(0, float(points))]
        pts = [(int(t), float(v)) for t, v in points]
        if not pts:
            raise ValueError("a schedule needs at least one (timestep, value) point")
        if any(b[0] <= a[0] for a, b in zip(pts, pts[1:])):
            raise ValueError(f"schedule timesteps must increase, got {points!r}")
        self.points = pts
        self._ts = [t for t, _ in pts]

    def value(self, t):
        i = bisect.bisect_right(self._ts, t)
        if i == 0:
            return self.points[0][1]
        if i == len(self.points):
            return self.points[-1][1]
        (t0, v0), (t1, v1) = self.points[i - 1], self.points[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
