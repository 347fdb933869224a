"""Resource amounts in fixed point (1/10000 of a unit), so 0.1 CPU ten times is exactly 1 CPU."""
from ..exceptions import RayError

UNIT = 10_000
GPU = "GPU"
CPU = "CPU"


def to_units(resources):
    """{'CPU': 1.5} -> {'CPU': 15000}, dropping zeros. Raises ValueError on a bad amount."""
    out = {}
    for name, amount in resources.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"resource names must be non-empty strings, got {name!r}")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise ValueError(f"resource {name!r} must be a number, got {amount!r}")
        if amount != amount or amount in (float("inf"), float("-inf")):
            raise ValueError(f"resource {name!r} must be a finite number, got {amount}")
        if amount < 0:
            raise ValueError(f"resource {name!r} must be >= 0, got {amount}")
        units = round(amount * UNIT)
        if amount > 1 and amount != int(amount):
            raise ValueError(f"resource {name!r}: amounts above 1 must be whole numbers, got {amount}")
        if units:
            out[name] = units
    return out


def from_units(units):
    return {name: (n / UNIT if n % UNIT else n // UNIT) * 1.0 for name, n in units.items()}


def fits(request, available):
    return all(available.get(name, 0) >= n for name, n in request.items())


def subtract(available, request):
    for name, n in request.items():
        available[name] = available.get(name, 0) - n


def add(available, request):
    for name, n in request.items():
        available[name] = available.get(name, 0) + n


class GpuSlots:
    """Which GPU ids a task gets: whole GPUs for whole requests, a shared one for fractions."""

    def __init__(self, count):
        self.free = {i: UNIT for i in range(count)}

    def acquire(self, units):
        if units <= 0:
            return []
        if units >= UNIT:
            want = units // UNIT
            ids = [i for i, f in self.free.items() if f == UNIT][:want]
            if len(ids) < want:
                raise RayError("GPU accounting mismatch")
            for i in ids:
                self.free[i] = 0
            return [(i, UNIT) for i in ids]
        # A fraction: the fullest GPU that still has room, to keep whole ones free.
        candidates = [i for i, f in self.free.items() if f >= units]
        if not candidates:
            raise RayError("GPU accounting mismatch")
        i = min(candidates, key=lambda k: self.free[k])
        self.free[i] -= units
        return [(i, units)]

    def release(self, grants):
        for i, units in grants:
            self.free[i] += units
