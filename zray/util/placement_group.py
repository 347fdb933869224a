"""Placement groups, as `ray.util.placement_group`: reserve bundles of resources together and
run tasks and actors in them.

A group is created by the node of the process that creates it (its *home*), which places the
bundles on nodes by the strategy and reserves them (zray/node/pg_service.py). A task or actor
in a group asks for the group's renamed resources instead of plain ones (`apply_group`, called
by .remote()), so it runs where a bundle of the group is and uses only what the group reserved.
"""
import os

from ..core import runtime as _runtime
from ..scheduling.placement_groups import (MARKER, STRATEGIES, rewrite_request)
from ..scheduling.resources import UNIT, from_units
from ..transport import wire

WAIT_MARGIN_S = 5.0      # on top of wait()'s timeout, for the home's answer to arrive


class PlacementGroupID:
    """The id of a placement group (18 random bytes, as Ray's)."""

    __slots__ = ("_hex",)

    def __init__(self, hex_id):
        self._hex = hex_id

    def hex(self):
        return self._hex

    def binary(self):
        return bytes.fromhex(self._hex)

    def is_nil(self):
        return not self._hex

    def __eq__(self, other):
        return isinstance(other, PlacementGroupID) and other._hex == self._hex

    def __hash__(self):
        return hash(self._hex)

    def __repr__(self):
        return f"PlacementGroupID({self._hex})"


class PlacementGroup:
    """A handle to a placement group: picklable, so tasks and actors can be given it."""

    def __init__(self, id, bundle_cache=None, _home=None, _strategy=None):
        self.id = id
        self.bundle_cache = bundle_cache
        self._home = _home
        self._strategy = _strategy

    @staticmethod
    def empty():
        return PlacementGroup(PlacementGroupID(""))

    @property
    def is_empty(self):
        return self.id.is_nil()

    def ready(self):
        """An ObjectRef that resolves (to this group) once every bundle is reserved: a task of
        no CPU that runs in the group, as Ray's first versions did."""
        rt = _rt()
        if self.is_empty:
            return rt.put(self)
        (resources,), context = apply_group((self, -1, False), [{}], "the group's ready() check")
        return rt.submit(_bundle_reservation_check, (self,), name="bundle_reservation_check",
                         resources=resources, placement_group=context)[0]

    def wait(self, timeout_seconds=30):
        """True when the group is created within timeout_seconds, else False."""
        if self.is_empty:
            return True
        rt = _rt()
        return bool(rt.request(wire.PG_WAIT, (self.id.hex(), float(timeout_seconds)),
                               address=self._home_address(rt),
                               timeout=float(timeout_seconds) + WAIT_MARGIN_S))

    @property
    def bundle_specs(self):
        """The bundles, as dicts of resource amounts."""
        return [dict(b) for b in (self.bundle_cache or [])]

    @property
    def bundle_count(self):
        return len(self.bundle_cache or [])

    def _home_address(self, rt):
        return self._home or rt.daemon

    def __eq__(self, other):
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __reduce__(self):
        return (PlacementGroup, (self.id, self.bundle_cache, self._home, self._strategy))

    def __repr__(self):
        return f"PlacementGroup({self.id.hex()}, {self.bundle_cache}, {self._strategy})"


def _bundle_reservation_check(placement_group):
    """The task of ready(): runs (with no CPU) once a bundle of the group is reserved."""
    return placement_group


def _rt():
    """The runtime facade (zray.init() first if needed), answering PG_* requests."""
    rt = _runtime.current(autostart=True)
    rt.register_replies(_PG_RANGE, [wire.PG_REPLY])     # idempotent
    return rt


_PG_RANGE = range(140, 160)     # wire.py's placement-group messages


# -- validation -----------------------------------------------------------------------------------
def bundle_units(bundles):
    """Bundles as fixed-point units; ValueError for what Ray rejects (and negative amounts)."""
    if not isinstance(bundles, list):
        raise ValueError(f"Placement group bundles must be a list, got {type(bundles)}.")
    if not bundles:
        raise ValueError('Bundles must be a non-empty list of resource dictionaries. For '
                         'example: `[{"CPU": 1.0}, {"GPU": 1.0}]`. Got empty list instead.')
    out = []
    for bundle in bundles:
        if (not isinstance(bundle, dict) or not all(isinstance(k, str) and k for k in bundle)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           for v in bundle.values())):
            raise ValueError('Bundles must be a non-empty list of resource dictionaries. For '
                             'example: `[{"CPU": 1.0}, {"GPU": 1.0}]`.')
        negative = {k: v for k, v in bundle.items() if v < 0}
        if negative:
            raise ValueError(f"Bundle resource amounts must be >= 0, got {negative} in "
                             f"bundles {bundles}")
        if not bundle or all(v == 0 for v in bundle.values()):
            raise ValueError("Bundles cannot be an empty dictionary or resources with only 0 "
                             f"values. Bundles: {bundles}")
        out.append({k: round(v * UNIT) for k, v in bundle.items() if round(v * UNIT)})
    return out


def validate_placement_group(bundles, strategy, lifetime):
    if strategy not in STRATEGIES:
        raise ValueError(f"Invalid placement group strategy {strategy}. Supported strategies "
                         f"are: {set(STRATEGIES)}.")
    if lifetime not in (None, "detached"):
        raise ValueError("Placement group `lifetime` argument must be either `None` or "
                         f"'detached'. Got {lifetime}.")
    return bundle_units(bundles)


# -- the API --------------------------------------------------------------------------------------
def placement_group(bundles, strategy="PACK", name="", lifetime=None, _soft_target_node_id=None,
                    bundle_label_selector=None):
    """Reserve `bundles` (a list of resource dicts) placed by `strategy`: PACK (as few nodes as
    can be), SPREAD (distinct nodes where it can), STRICT_PACK (one node), STRICT_SPREAD (one
    node per bundle). Returns at once; `ready()` / `wait()` tell when it is created. A group
    that fits nowhere stays pending until a node that fits joins. `lifetime="detached"` keeps
    it after its job ends; otherwise it is removed with its job."""
    units = validate_placement_group(bundles, strategy, lifetime)
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
    rt = _rt()
    pg_id = os.urandom(18).hex()
    home = rt.request(wire.PG_CREATE, (
        pg_id, units, strategy, name, rt.namespace or "", lifetime == "detached",
        rt.job_id, rt.address))
    cache = [{k: float(v) for k, v in b.items()} for b in bundles]
    return PlacementGroup(PlacementGroupID(pg_id), cache, home, strategy)


def remove_placement_group(placement_group):
    """Remove the group: its bundles are given back, and the tasks and actors running in it are
    killed (tasks fail with TaskUnschedulableError, actors die)."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group needs a PlacementGroup, got {placement_group!r}")
    rt = _rt()
    rt.request(wire.PG_REMOVE, (placement_group.id.hex(),), address=placement_group._home_address(rt))


def get_placement_group(placement_group_name):
    """The group of this name in the current namespace; ValueError when there is none."""
    if not placement_group_name:
        raise ValueError("Please supply a non-empty value to get_placement_group")
    rt = _rt()
    pg_id, units, strategy, home = rt.request(wire.PG_GET, (placement_group_name, rt.namespace or ""))
    return PlacementGroup(PlacementGroupID(pg_id), [from_units(b) for b in units], home, strategy)


def placement_group_table(placement_group=None):
    """The state of one group (a dict), or of every group this node owns ({id hex: dict})."""
    rt = _rt()
    if placement_group is None:
        return rt.request(wire.PG_TABLE, (None,))
    return rt.request(wire.PG_TABLE, (placement_group.id.hex(),),
                      address=placement_group._home_address(rt))


def get_current_placement_group():
    """The group the calling task or actor runs in; None in the driver or outside groups."""
    if not _runtime.is_connected():
        return None
    context = current_group_context(_runtime.current())
    return None if context is None else group_from_context(context)


# -- tasks and actors in a group (used by remote_function.py and actor.py) -------------------------
def in_placement_group(options, rt):
    """(group, bundle_index, capture) when a task or actor runs in a placement group, else None.
    Cheap when no group is involved: that is every call outside groups."""
    if (options.get("scheduling_strategy") is None and options.get("placement_group") is None
            and options.get("placement_group_bundle_index", -1) == -1
            and rt.current_task() is None and rt.current_actor() is None):
        return None
    return chosen_group(options, rt)


def current_group_context(rt):
    """(pg_id, bundles, strategy, home, capture) of the task or actor running here, or None."""
    actor = rt.current_actor()
    if actor is not None:
        return actor.meta.get("placement_group")
    task = rt.current_task()
    return None if task is None else task.placement_group


def group_from_context(context):
    pg_id, bundles, strategy, home, _ = context
    return PlacementGroup(PlacementGroupID(pg_id), [dict(b) for b in bundles], home, strategy)


def chosen_group(options, rt):
    """(group, bundle_index, capture) the options put a task or actor in, or None.

    PlacementGroupSchedulingStrategy, or the legacy placement_group= options; without either
    (and without another strategy), a task whose parent runs in a group that captures child
    tasks goes into that group too, as in Ray."""
    from .scheduling_strategies import PlacementGroupSchedulingStrategy
    strategy = options.get("scheduling_strategy")
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        group = strategy.placement_group
        index = strategy.placement_group_bundle_index
        capture = strategy.placement_group_capture_child_tasks
    elif strategy is not None and strategy != "DEFAULT":
        return None
    else:
        group = options.get("placement_group", "default")
        index = options.get("placement_group_bundle_index", -1)
        capture = options.get("placement_group_capture_child_tasks")
        if group == "default" or group is None:
            context = current_group_context(rt) if group == "default" else None
            if context is None or not context[4]:
                if index not in (-1, None):
                    raise ValueError("If placement group is not set, the value of bundle index "
                                     "must be -1.")
                return None
            group = group_from_context(context)
            capture = True if capture is None else capture
    if group is None or (isinstance(group, PlacementGroup) and group.is_empty):
        return None
    if not isinstance(group, PlacementGroup):
        raise TypeError(f"placement_group must be a PlacementGroup, got {group!r}")
    index = -1 if index is None else index
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"placement_group_bundle_index must be an int, got {index!r}")
    if index < -1 or index >= group.bundle_count:
        raise ValueError(f"placement group bundle index {index} is invalid. Valid placement "
                         f"group indexes: 0-{group.bundle_count}")
    return group, index, bool(capture)


def apply_group(chosen, requests, what):
    """Rewrite resource requests (units) to ask for the group's; ValueError when the first
    request (what placing it takes) fits none of the group's bundles, as Ray checks."""
    group, index, capture = chosen
    bundles = group.bundle_cache or []
    candidates = [bundles[index]] if index >= 0 else bundles
    first = from_units({k: v for k, v in requests[0].items() if k != MARKER})
    if not any(all(b.get(k, 0) >= v for k, v in first.items()) for b in candidates):
        raise ValueError(f"Cannot schedule {what} with the placement group because the resource "
                         f"request {first} cannot fit into any bundles for the placement group, "
                         f"{bundles}.")
    pg_id = group.id.hex()
    context = (pg_id, [dict(b) for b in bundles], group._strategy, group._home, capture)
    return [rewrite_request(r, pg_id, index) for r in requests], context
