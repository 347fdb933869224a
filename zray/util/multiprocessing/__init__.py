"""A drop-in for multiprocessing.Pool whose processes are zray actors."""
from .pool import AsyncResult, Pool, TimeoutError

__all__ = ["AsyncResult", "Pool", "TimeoutError"]
