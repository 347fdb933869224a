"""zray.util: ActorPool, Queue, a multiprocessing.Pool on top of actors, and placement groups."""
from .actor_pool import ActorPool
from .placement_group import (PlacementGroup, get_current_placement_group, get_placement_group,
                              placement_group, placement_group_table, remove_placement_group)

__all__ = ["ActorPool", "PlacementGroup", "get_current_placement_group", "get_placement_group",
           "placement_group", "placement_group_table", "remove_placement_group"]
