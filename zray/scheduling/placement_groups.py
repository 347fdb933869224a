"""Placement groups: bundles of resources reserved together. State machines with no sockets.

A reserved bundle turns its resources into renamed resources of the node that holds it, as in
Ray: bundle `i` of group `P` with {"CPU": 2} adds `CPU_group_P: 2` (the wildcard, summed over
the group's bundles on that node) and `CPU_group_i_P: 2` (that bundle), and the marker
resources `bundle_group_P` / `bundle_group_i_P` (1000 each). A task in the group asks for the
renamed resources instead of the plain ones (`rewrite_request`, done by the submitter), so the
ordinary placement (placement.py, LocalScheduler) sends it to a node holding the group's
bundles and it uses only what the group reserved. Every task in a group also asks 0.001 of a
marker, so a worker that runs one (or hosts an actor of the group) can be found when the group
is removed, whatever else it asked for.

Two machines:

`PlacementGroupManager` runs on the group's *owner* node (where it was created). It picks
nodes for the bundles by the strategy from a snapshot of every node's (total, room), and
reserves them with two phases: PREPARE to each chosen node (the node sets the plain resources
aside), and when every node said yes, COMMIT (the node adds the renamed resources). A no, or no
answer within PREPARE_TIMEOUT_S, rolls the round back (RELEASE to every node asked) and the
group is placed again RETRY_S later, for as long as it is pending: a group that fits no node
waits, and is created when a node that fits joins. Bundles on a node that dies are placed
again (the group is RESCHEDULING meanwhile). Actions returned (frozen dataclasses):

    Prepare(node_id, pg_id, round_id, [(index, units), ...])
    Commit(node_id, pg_id, round_id, [index, ...])
    Release(node_id, pg_id, [index, ...] | None)    None: every bundle of the group there
    Waited(token, ready)                            answer a wait() request
    Removed(group)                                  the group is gone (release its name)

`BundleReservations` runs on every node: what it set aside (prepared) and turned into renamed
resources (committed), per (group, index), and for which owner node.
"""
import collections
import itertools
from dataclasses import dataclass

from .resources import UNIT, add, fits

PACK = "PACK"
SPREAD = "SPREAD"
STRICT_PACK = "STRICT_PACK"
STRICT_SPREAD = "STRICT_SPREAD"
STRATEGIES = (PACK, SPREAD, STRICT_PACK, STRICT_SPREAD)

PENDING = "PENDING"
CREATED = "CREATED"
RESCHEDULING = "RESCHEDULING"
REMOVED = "REMOVED"

MARKER = "bundle"                # Ray's name for the marker resource
MARKER_UNITS = 1000 * UNIT       # what a reserved bundle adds of each marker
MARKER_REQUEST = 10              # 0.001: what each task or actor of the group asks of it

PREPARE_TIMEOUT_S = 10.0         # a round with a node silent that long is rolled back
RETRY_S = 0.5                    # a pending group is tried again this often
KEEP_REMOVED = 1000              # removed groups kept for placement_group_table()


# -- actions of the manager -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Prepare:
    node_id: str
    pg_id: str
    round_id: int
    items: list          # [(index, units)]


@dataclass(frozen=True, slots=True)
class Commit:
    node_id: str
    pg_id: str
    round_id: int
    indices: list


@dataclass(frozen=True, slots=True)
class Release:
    node_id: str
    pg_id: str
    indices: object      # [index] | None: every bundle of the group on that node


@dataclass(frozen=True, slots=True)
class Waited:
    token: object
    ready: bool


@dataclass(frozen=True, slots=True)
class Removed:
    group: "Group"


# -- resource names -------------------------------------------------------------------------------
def group_resource(name, pg_id, index=-1):
    return f"{name}_group_{pg_id}" if index < 0 else f"{name}_group_{index}_{pg_id}"


def bundle_resources(pg_id, index, units):
    """The renamed resources that committing bundle `index` adds to its node."""
    out = {}
    for name, n in units.items():
        out[group_resource(name, pg_id)] = n
        out[group_resource(name, pg_id, index)] = n
    out[group_resource(MARKER, pg_id)] = MARKER_UNITS
    out[group_resource(MARKER, pg_id, index)] = MARKER_UNITS
    return out


def rewrite_request(units, pg_id, index=-1):
    """A task's request (units) as it asks inside the group: the wildcard resources of the
    group (any bundle), plus bundle `index`'s own when it names one, plus a little marker."""
    out = {}
    for name, n in units.items():
        out[group_resource(name, pg_id)] = n
        if index >= 0:
            out[group_resource(name, pg_id, index)] = n
    out[group_resource(MARKER, pg_id, index)] = MARKER_REQUEST
    return out


def in_a_group(units):
    """Whether a request names renamed resources (it waits for its group, not for a node)."""
    return any("_group_" in name for name in units)


# -- choosing nodes -------------------------------------------------------------------------------
def plan_bundles(bundles, strategy, nodes, local_id, placed=None):
    """{index: node_id} for the bundles {index: units}, or None when they do not all fit now.

    `nodes`: {node_id: room} (what each node can set aside now); `placed`: {index: node_id} of
    the group's bundles already reserved (rescheduling after a node died). Nodes are tried
    the local node first, then by id, so plans are deterministic."""
    placed = dict(placed or {})
    order = sorted(nodes, key=lambda n: (n != local_id, n))
    room = {n: dict(nodes[n]) for n in order}
    used = collections.Counter(placed.values())
    plan = {}
    indices = sorted(bundles, key=lambda i: (-sum(bundles[i].values()), i))   # big ones first

    def take(i, node):
        plan[i] = node
        used[node] += 1
        for name, n in bundles[i].items():
            room[node][name] = room[node].get(name, 0) - n

    if strategy in (PACK, STRICT_PACK):
        need = {}
        for units in bundles.values():
            add(need, units)
        candidates = order
        if placed:   # the node(s) already holding bundles come first
            candidates = sorted(order, key=lambda n: -used[n])
        if strategy == STRICT_PACK and placed:
            candidates = [n for n in candidates if used[n]][:1]
        for node in candidates:
            if fits(need, room[node]):
                for i in indices:
                    take(i, node)
                return plan
        if strategy == STRICT_PACK:
            return None
        for i in indices:     # PACK is soft: as few nodes as it can
            node = next((n for n in sorted(order, key=lambda n: -used[n])
                         if fits(bundles[i], room[n])), None)
            if node is None:
                return None
            take(i, node)
        return plan
    for i in indices:         # SPREAD, STRICT_SPREAD: the least used node that fits
        fitting = [n for n in order if fits(bundles[i], room[n])]
        if strategy == STRICT_SPREAD:
            fitting = [n for n in fitting if not used[n]]
        if not fitting:
            return None
        take(i, min(fitting, key=lambda n: used[n]))
    return plan


# -- the owner's side -----------------------------------------------------------------------------
class Group:
    __slots__ = ("pg_id", "bundles", "strategy", "name", "namespace", "detached", "job_id",
                 "creator", "state", "nodes", "round", "retry_at", "waiters", "home")

    def __init__(self, pg_id, bundles, strategy, name="", namespace=None, detached=False,
                 job_id=None, creator=None, home=None):
        self.pg_id = pg_id
        self.bundles = [dict(b) for b in bundles]     # units
        self.strategy = strategy
        self.name = name
        self.namespace = namespace
        self.detached = detached
        self.job_id = job_id
        self.creator = creator
        self.home = home                  # where clients reach the owner node
        self.state = PENDING
        self.nodes = [None] * len(bundles)   # node holding each bundle, once committed
        self.round = None
        self.retry_at = 0.0
        self.waiters = {}                 # token -> deadline

    def unplaced(self):
        return {i: self.bundles[i] for i, n in enumerate(self.nodes) if n is None}

    def info(self):
        from .resources import from_units
        return {
            "placement_group_id": self.pg_id, "name": self.name, "strategy": self.strategy,
            "state": self.state, "namespace": self.namespace, "job_id": self.job_id,
            "is_detached": self.detached,
            "bundles": {i: from_units(b) for i, b in enumerate(self.bundles)},
            "bundles_to_node_id": {i: n for i, n in enumerate(self.nodes) if n is not None},
            "stats": {"scheduling_state": "FINISHED" if self.state == CREATED else
                      ("REMOVED" if self.state == REMOVED else "PENDING")},
        }


class Round:
    __slots__ = ("round_id", "plan", "asked", "answered", "deadline")

    def __init__(self, round_id, plan, deadline):
        self.round_id = round_id
        self.plan = plan                  # index -> node_id
        self.asked = collections.defaultdict(list)   # node_id -> [index]
        for i, node in sorted(plan.items()):
            self.asked[node].append(i)
        self.answered = set()
        self.deadline = deadline


class PlacementGroupManager:
    def __init__(self, node_id):
        self.node_id = node_id
        self.groups = {}                 # pg_id -> Group
        self.live = set()                # ids of the groups not removed
        self.removed = collections.deque()
        self._round_ids = itertools.count(1)

    # -- events ----------------------------------------------------------------------------------
    def handle_create(self, group):
        self.groups[group.pg_id] = group
        self.live.add(group.pg_id)
        return []

    def handle_place(self, nodes, now):
        """Try every pending group that is due: `nodes` is {node_id: room} and is reduced by
        what each round asks for, so one call never promises the same room twice."""
        actions = []
        for group in self.live_groups():
            if group.state not in (PENDING, RESCHEDULING) or group.round is not None:
                continue
            if group.retry_at > now:
                continue
            placed = {i: n for i, n in enumerate(group.nodes) if n is not None}
            plan = plan_bundles(group.unplaced(), group.strategy, nodes, self.node_id, placed)
            if plan is None:
                group.retry_at = now + RETRY_S
                continue
            round_ = group.round = Round(next(self._round_ids), plan, now + PREPARE_TIMEOUT_S)
            for node, indices in round_.asked.items():
                for i in indices:
                    for name, n in group.bundles[i].items():
                        nodes[node][name] = nodes[node].get(name, 0) - n
                actions.append(Prepare(node, group.pg_id, round_.round_id,
                                       [(i, group.bundles[i]) for i in indices]))
        return actions

    def handle_prepared(self, pg_id, round_id, node_id, ok, now):
        group = self.groups.get(pg_id)
        if group is None or group.round is None or group.round.round_id != round_id:
            return []             # a round already rolled back (its RELEASE undoes this)
        round_ = group.round
        if not ok:
            return self._roll_back(group, now)
        round_.answered.add(node_id)
        if len(round_.answered) < len(round_.asked):
            return []
        group.round = None
        actions = []
        for node, indices in round_.asked.items():
            for i in indices:
                group.nodes[i] = node
            actions.append(Commit(node, pg_id, round_id, list(indices)))
        if all(n is not None for n in group.nodes):
            group.state = CREATED
            actions.extend(Waited(token, True) for token in group.waiters)
            group.waiters.clear()
        return actions

    def handle_wait(self, pg_id, token, deadline):
        group = self.groups.get(pg_id)
        if group is None or group.state == REMOVED:
            return [Waited(token, False)]
        if group.state == CREATED:
            return [Waited(token, True)]
        group.waiters[token] = deadline
        return []

    def handle_remove(self, pg_id):
        group = self.groups.get(pg_id)
        if group is None or group.state == REMOVED:
            return []
        actions = []
        nodes = {n for n in group.nodes if n is not None}
        if group.round is not None:
            nodes.update(group.round.asked)
        for node in sorted(nodes):
            actions.append(Release(node, pg_id, None))
        group.state = REMOVED
        self.live.discard(pg_id)
        group.round = None
        group.nodes = [None] * len(group.bundles)
        actions.extend(Waited(token, False) for token in group.waiters)
        group.waiters.clear()
        actions.append(Removed(group))
        self.removed.append(pg_id)
        while len(self.removed) > KEEP_REMOVED:
            self.groups.pop(self.removed.popleft(), None)
        return actions

    def handle_job_finished(self, job_id):
        """A job's driver ended: its groups go with it, unless detached."""
        actions = []
        for group in self.live_groups():
            if group.job_id == job_id and not group.detached:
                actions.extend(self.handle_remove(group.pg_id))
        return actions

    def handle_live_nodes(self, live, now):
        """The membership changed: bundles on nodes that are gone are placed again, and a
        round waiting on such a node is rolled back."""
        actions = []
        for group in self.live_groups():
            if group.round is not None and not set(group.round.asked) <= live:
                actions.extend(self._roll_back(group, now, retry_now=True))
            lost = [i for i, n in enumerate(group.nodes) if n is not None and n not in live]
            if lost:
                for i in lost:
                    group.nodes[i] = None
                if group.state == CREATED:
                    group.state = RESCHEDULING
                group.retry_at = now
        return actions

    def tick(self, now):
        actions = []
        for group in self.live_groups():
            if group.round is not None and group.round.deadline <= now:
                actions.extend(self._roll_back(group, now))
            if group.waiters:
                late = [t for t, d in group.waiters.items() if d <= now]
                for token in late:
                    del group.waiters[token]
                    actions.append(Waited(token, False))
        return actions

    # -- queries ---------------------------------------------------------------------------------
    def due(self, now):
        """Whether some group waits to be placed now."""
        return any(g.state in (PENDING, RESCHEDULING) and g.round is None and g.retry_at <= now
                   for g in self.live_groups())

    def removed_ids(self):
        """Ids of the groups removed here (the latest KEEP_REMOVED)."""
        return set(self.removed)

    def active(self):
        """Whether anything here needs ticks: a live group."""
        return bool(self.live)

    def live_jobs(self):
        """Jobs of the live groups that die with their job (not detached)."""
        return {g.job_id for g in self.live_groups() if not g.detached}

    def live_groups(self):
        """In creation order: the oldest pending group gets the room first."""
        return [g for pg_id, g in self.groups.items() if pg_id in self.live]

    # -- internals -------------------------------------------------------------------------------
    def _roll_back(self, group, now, retry_now=False):
        round_ = group.round
        group.round = None
        group.retry_at = now if retry_now else now + RETRY_S
        return [Release(node, group.pg_id, list(indices))
                for node, indices in sorted(round_.asked.items())]


# -- every node's side ----------------------------------------------------------------------------
class BundleReservations:
    """What this node holds for groups: (pg_id, index) -> [units, committed, owner node]."""

    def __init__(self):
        self.bundles = {}

    def prepare(self, pg_id, items, owner, available):
        """Set the bundles aside if they all fit in `available`; returns the units to take from
        it, or None. Preparing a bundle held already (a repeated message) takes nothing more."""
        need = {}
        new = []
        for index, units in items:
            if (pg_id, index) not in self.bundles:
                new.append((index, units))
                add(need, units)
        if not fits(need, available):
            return None
        for index, units in new:
            self.bundles[(pg_id, index)] = [dict(units), False, owner]
        return need

    def commit(self, pg_id, indices):
        """The renamed resources the committed bundles add to this node."""
        out = {}
        for index in indices:
            entry = self.bundles.get((pg_id, index))
            if entry is None or entry[1]:
                continue
            entry[1] = True
            add(out, bundle_resources(pg_id, index, entry[0]))
        return out

    def release(self, pg_id, indices=None):
        """(plain units to give back, renamed units to take away) for the released bundles."""
        if indices is None:
            keys = [k for k in self.bundles if k[0] == pg_id]
        else:
            keys = [(pg_id, i) for i in indices if (pg_id, i) in self.bundles]
        plain, renamed = {}, {}
        for key in keys:
            units, committed, _ = self.bundles.pop(key)
            add(plain, units)
            if committed:
                add(renamed, bundle_resources(pg_id, key[1], units))
        return plain, renamed

    def groups_of_owners_not_in(self, live):
        """Groups whose owner node is gone: nobody will ever release them but us."""
        return sorted({k[0] for k, v in self.bundles.items() if v[2] not in live})

    def list(self):
        return [{"placement_group_id": k[0], "index": k[1], "committed": v[1], "owner": v[2]}
                for k, v in self.bundles.items()]


def original_resources(units):
    """A request inside a group as the user asked it: {'CPU_group_<pg>': n, ...} -> {'CPU': n}."""
    out = {}
    for name, n in units.items():
        base, sep, rest = name.rpartition("_group_")
        if not sep:
            out[name] = n
        elif base != MARKER and "_" not in rest:      # the wildcard name, not an indexed one
            out[base] = n
    return out
