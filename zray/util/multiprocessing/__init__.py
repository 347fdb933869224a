"""A drop-in for multiprocessing.Pool whose processes are zray actors."""
from .pool import AsyncResult, IMapIterator, IMapUnorderedIterator, Pool, TimeoutError

__all__ = ["AsyncResult", "IMapIterator", "IMapUnorderedIterator", "Pool", "TimeoutError"]
