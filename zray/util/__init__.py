"""zray.util: ActorPool, Queue and a multiprocessing.Pool on top of actors."""
from .actor_pool import ActorPool

__all__ = ["ActorPool"]
