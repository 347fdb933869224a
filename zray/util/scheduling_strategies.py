"""Scheduling strategies a task or actor may name in `scheduling_strategy=`.

Besides these classes, the strings "DEFAULT" (bottom-up: here when it fits, else a peer with
room) and "SPREAD" (round-robin over the nodes that fit) are accepted. A task in a placement
group is routed by the group's renamed resources (zray/util/placement_group.py), so
PlacementGroupSchedulingStrategy adds no strategy to the task spec.
"""


class NodeAffinitySchedulingStrategy:
    """Run on the node with this id (zray.get_runtime_context().get_node_id(), or the NodeID of
    zray.nodes()). With soft=False a task whose node is not alive fails with
    TaskUnschedulableError (an actor with ActorUnschedulableError); with soft=True it then runs
    wherever the default strategy puts it."""

    def __init__(self, node_id, soft, _spill_on_unavailable=False, _fail_on_unavailable=False):
        if not isinstance(node_id, str) or not node_id:
            raise TypeError(f"node_id must be a node id string, got {node_id!r}")
        if not isinstance(soft, bool):
            raise TypeError(f"soft must be a bool, got {soft!r}")
        self.node_id = node_id
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self):
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    """Run in a placement group: in bundle `placement_group_bundle_index` (-1: any bundle of
    the group). With placement_group_capture_child_tasks=True, the tasks this task or actor
    submits without a strategy of their own run in the group too."""

    def __init__(self, placement_group, placement_group_bundle_index=-1,
                 placement_group_capture_child_tasks=None):
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self):
        return (f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
                f"placement_group_bundle_index={self.placement_group_bundle_index}, "
                f"placement_group_capture_child_tasks={self.placement_group_capture_child_tasks})")
