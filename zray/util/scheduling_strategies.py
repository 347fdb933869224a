"""Scheduling strategies a task or actor may name in `scheduling_strategy=`.

Besides these classes, the strings "DEFAULT" (bottom-up: here when it fits, else a peer with
room) and "SPREAD" (round-robin over the nodes that fit) are accepted.
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
