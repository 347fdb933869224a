"""`zray.services`, as amplab Ray 0.x's `ray.services` (see zray/legacy)."""
from .legacy import start_ray_local

__all__ = ["start_ray_local"]
