"""Where a task goes in the mesh: here, or which peer. A state machine with no sockets.

Bottom-up: a task is submitted to its owner's node, which keeps it when it fits now. Otherwise
the node looks at its gossiped view of the peers (each one's total and available resources) and
forwards the task to a peer that has room, picked as the better of two random candidates (the
"power of two choices": nearly the balance of asking everyone, at the cost of asking two). The
view is up to a gossip period old, so what this node forwarded since a peer's last update is
subtracted from that peer's availability, and every forwarded task is checked again where it
lands, which may forward it once more, up to MAX_HOPS. A task that no node could ever fit is
infeasible: it waits where it is and is placed again when the membership or a view changes.

Strategies (spec.extra["strategy"]):
    None                      the default above
    "SPREAD"                  round-robin over the nodes whose totals fit, preferring ones with room
    ("node", node_id, soft)   that node; if it is gone, anywhere when soft, else unschedulable

`choose` returns one of (frozen dataclasses)
    LOCAL                     queue it here
    Forward(node_id)          send it to that peer
    INFEASIBLE                no live node's totals fit it
    Unschedulable(text)       it can never run (hard affinity to a node that is not alive)
"""
from dataclasses import dataclass

from .resources import add, fits, subtract

MAX_HOPS = 2           # forwards for room; a task that fits nowhere's available then queues
MAX_HOPS_FEASIBLE = 4  # forwards to reach a node whose totals fit at all


@dataclass(frozen=True, slots=True)
class Local:
    pass


@dataclass(frozen=True, slots=True)
class Forward:
    node_id: str


@dataclass(frozen=True, slots=True)
class Infeasible:
    pass


@dataclass(frozen=True, slots=True)
class Unschedulable:
    text: str


LOCAL = Local()
INFEASIBLE = Infeasible()


class PeerView:
    __slots__ = ("total", "available", "inflight")

    def __init__(self, total, available):
        self.total = total
        self.available = available
        self.inflight = {}      # what we forwarded there since its last update

    def room(self):
        room = dict(self.available)
        subtract(room, self.inflight)
        return room


class Placement:
    def __init__(self, node_id, rng):
        self.node_id = node_id
        self.rng = rng
        self.peers = {}          # node_id -> PeerView, live peers only
        self._spread_next = 0

    # -- the view --------------------------------------------------------------------------------
    def update_peer(self, node_id, total, available):
        view = self.peers.get(node_id)
        if view is None:
            self.peers[node_id] = PeerView(dict(total), dict(available))
            return
        view.total = dict(total)
        view.available = dict(available)
        view.inflight = {}       # the new view already counts what we sent before it

    def remove_peer(self, node_id):
        self.peers.pop(node_id, None)

    def forwarded(self, node_id, resources):
        view = self.peers.get(node_id)
        if view is not None:
            add(view.inflight, resources)

    def add_to_peer(self, node_id, units):
        """A peer gained resources before its gossip says so (committed bundles); returns
        whether the peer is known."""
        view = self.peers.get(node_id)
        if view is None:
            return False
        add(view.total, units)
        add(view.available, units)
        return True

    def returned(self, node_id, resources):
        """A task we forwarded there finished before the peer's next update."""
        view = self.peers.get(node_id)
        if view is not None:
            subtract(view.inflight, resources)
            for k in [k for k, v in view.inflight.items() if v <= 0]:
                del view.inflight[k]

    # -- decisions -------------------------------------------------------------------------------
    def choose(self, resources, strategy, hops, local_total, local_available):
        if isinstance(strategy, (tuple, list)) and strategy and strategy[0] == "node":
            _, node_id, soft = strategy
            if node_id == self.node_id:
                if fits(resources, local_total) or not soft:
                    return LOCAL
            elif node_id in self.peers:
                if fits(resources, self.peers[node_id].total) or not soft:
                    return Forward(node_id)
            elif not soft:
                return Unschedulable(
                        f"NodeAffinitySchedulingStrategy(soft=False) names node {node_id}, "
                        "which is not alive in this cluster")
            return self._default(resources, hops, local_total, local_available)
        if strategy == "SPREAD":
            if hops > 0 and fits(resources, local_total):
                return LOCAL    # it was spread here
            return self._spread(resources, hops, local_total, local_available)
        return self._default(resources, hops, local_total, local_available)

    def _default(self, resources, hops, local_total, local_available):
        if fits(resources, local_available):
            return LOCAL
        if hops < MAX_HOPS:
            with_room = [n for n, v in self.peers.items() if fits(resources, v.room())]
            if with_room:
                return Forward(self._better_of_two(with_room))
        if fits(resources, local_total):
            return LOCAL
        if hops < MAX_HOPS_FEASIBLE:
            feasible = [n for n, v in self.peers.items() if fits(resources, v.total)]
            if feasible:
                return Forward(self._better_of_two(feasible))
        return INFEASIBLE

    def _spread(self, resources, hops, local_total, local_available):
        candidates = []
        if fits(resources, local_total):
            candidates.append((self.node_id, fits(resources, local_available)))
        for node_id, view in self.peers.items():
            if fits(resources, view.total):
                candidates.append((node_id, fits(resources, view.room())))
        if not candidates:
            return INFEASIBLE
        candidates.sort()
        roomy = [n for n, room in candidates if room] or [n for n, _ in candidates]
        chosen = roomy[self._spread_next % len(roomy)]
        self._spread_next += 1
        return LOCAL if chosen == self.node_id else Forward(chosen)

    def _better_of_two(self, node_ids):
        if len(node_ids) == 1:
            return node_ids[0]
        a, b = self.rng.sample(node_ids, 2)
        return a if self._free_cpu(a) >= self._free_cpu(b) else b

    def _free_cpu(self, node_id):
        return self.peers[node_id].room().get("CPU", 0)

    def peer_with_room(self, resources):
        """A peer that has room for this now, or None (for moving queued tasks out)."""
        with_room = [n for n, v in self.peers.items() if fits(resources, v.room())]
        return self._better_of_two(with_room) if with_room else None
