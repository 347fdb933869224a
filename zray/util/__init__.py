"""zray.util: ActorPool, Queue, a multiprocessing.Pool on top of actors, placement groups and
collectives (`zray.util.collective`, loaded on first use)."""
from .actor_pool import ActorPool
from .helpers import as_completed, get_node_ip_address, map_unordered
from .placement_group import (PlacementGroup, get_current_placement_group, get_placement_group,
                              placement_group, placement_group_table, remove_placement_group)

__all__ = ["ActorPool", "PlacementGroup", "as_completed", "get_current_placement_group",
           "get_node_ip_address", "get_placement_group", "map_unordered", "placement_group",
           "placement_group_table", "remove_placement_group"]


# Submodules reachable as attributes, loaded on first use (as Ray's are).
_LAZY = ("collective", "joblib", "multiprocessing", "queue", "scheduling_strategies", "state",
         "worker_preload")


def __getattr__(name):
    if name in _LAZY:
        import importlib
        module = importlib.import_module(f"zray.util.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'zray.util' has no attribute {name!r}")
