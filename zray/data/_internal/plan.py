"""The logical plan (what the user asked for) and the optimizer that makes the physical plan
(what runs). Both are plain immutable objects; the optimizer is pure and unit-tested.

Rules, applied bottom-up:
- Limit pushdown: Limit(n) over a row-preserving map moves below it (the map sees n rows).
- Fusion: a map joins the task stage below it (a read, or earlier maps) when both run as tasks
  with the same resources; a task map also joins an actor stage below it when it asks for no
  special resources (it runs in the actor). Stage names join with "->", as in Ray.
- count() drops the row-preserving maps at the top of the plan, and needs no execution when the
  source knows its row count.
"""
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Tuple


# ---------------------------------------------------------------------------------- logical

@dataclass(frozen=True, eq=False)
class LogicalOp:
    inputs: Tuple["LogicalOp", ...] = ()

    @property
    def name(self):
        return type(self).__name__


@dataclass(frozen=True, eq=False)
class Read(LogicalOp):
    datasource: Any = None
    read_tasks: tuple = ()          # ReadTask objects, made when the Dataset is created
    remote_args: dict = field(default_factory=dict)

    @property
    def name(self):
        return "Read" + self.datasource.get_name()

    def known_rows(self):
        rows = [t.metadata.num_rows for t in self.read_tasks]
        return None if any(r is None for r in rows) else sum(rows)


@dataclass(frozen=True, eq=False)
class InputData(LogicalOp):
    bundles: tuple = ()             # RefBundle

    def known_rows(self):
        return sum(b.meta.num_rows for b in self.bundles)


@dataclass(frozen=True)
class Compute:
    """How a map runs: as tasks, or on an actor pool of min..max actors."""
    kind: str = "tasks"             # "tasks" | "actors"
    min_size: int = 1
    max_size: Optional[int] = None
    max_tasks_in_flight_per_actor: Optional[int] = None
    max_concurrency: Optional[int] = None   # tasks: at most this many at once


@dataclass(frozen=True, eq=False)
class MapOp(LogicalOp):
    transform: Any = None           # a transforms.Transform
    compute: Compute = Compute()
    remote_args: dict = field(default_factory=dict)

    @property
    def name(self):
        return self.transform.name

    @property
    def row_preserving(self):
        return self.transform.row_preserving


@dataclass(frozen=True, eq=False)
class Limit(LogicalOp):
    n: int = 0

    @property
    def name(self):
        return f"Limit[limit={self.n}]"


@dataclass(frozen=True, eq=False)
class AllToAll(LogicalOp):
    """repartition, random_shuffle, randomize_block_order, sort, aggregate, map_groups."""
    kind: str = ""
    params: dict = field(default_factory=dict)

    @property
    def name(self):
        return self.params.get("display") or self.kind


@dataclass(frozen=True, eq=False)
class Union(LogicalOp):
    pass


@dataclass(frozen=True, eq=False)
class Zip(LogicalOp):
    pass


@dataclass(frozen=True, eq=False)
class Join(LogicalOp):
    params: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------- physical

@dataclass(frozen=True, eq=False)
class InputStage:
    bundles: tuple
    name: str = "Input"


@dataclass(frozen=True, eq=False)
class MapStage:
    """Fused transforms run by one task (or actor call) per input."""
    name: str
    transforms: tuple
    compute: Compute = Compute()
    remote_args: dict = field(default_factory=dict)
    upstream: Any = None            # a physical stage, or None when reading
    read_tasks: tuple = ()          # the inputs when this stage reads


@dataclass(frozen=True, eq=False)
class LimitStage:
    n: int
    upstream: Any
    name: str = "Limit"


@dataclass(frozen=True, eq=False)
class AllToAllStage:
    kind: str
    params: dict
    upstream: Any
    name: str = ""


@dataclass(frozen=True, eq=False)
class UnionStage:
    upstreams: tuple
    name: str = "Union"


@dataclass(frozen=True, eq=False)
class ZipStage:
    upstreams: tuple
    name: str = "Zip"


@dataclass(frozen=True, eq=False)
class JoinStage:
    upstreams: tuple
    params: dict
    name: str = "Join"


def _resources(remote_args):
    return (remote_args.get("num_cpus", 1), remote_args.get("num_gpus", 0),
            tuple(sorted((remote_args.get("resources") or {}).items())),
            remote_args.get("memory"))


_DEFAULT_RESOURCES = _resources({})


def _fusable(below, op):
    if not isinstance(below, MapStage):
        return False
    if op.compute.kind == "tasks":
        if below.compute.kind == "tasks":
            return (_resources(below.remote_args) == _resources(op.remote_args)
                    and below.compute.max_concurrency == op.compute.max_concurrency)
        return _resources(op.remote_args) == _DEFAULT_RESOURCES
    return False


def push_down_limits(op):
    """Move each Limit below the row-preserving maps under it."""
    inputs = tuple(push_down_limits(i) for i in op.inputs)
    op = replace(op, inputs=inputs) if inputs != op.inputs else op
    if isinstance(op, Limit):
        child = op.inputs[0]
        if isinstance(child, MapOp) and child.row_preserving:
            pushed = push_down_limits(Limit(inputs=child.inputs, n=op.n))
            return replace(child, inputs=(pushed,))
        if isinstance(child, Limit):
            return Limit(inputs=child.inputs, n=min(op.n, child.n))
    return op


def plan(op):
    """The physical plan of a logical plan."""
    return _physical(push_down_limits(op))


def _physical(op):
    if isinstance(op, Read):
        return MapStage(op.name, (), Compute(), dict(op.remote_args), None, tuple(op.read_tasks))
    if isinstance(op, InputData):
        return InputStage(tuple(op.bundles))
    below = [_physical(i) for i in op.inputs]
    if isinstance(op, MapOp):
        b = below[0]
        if _fusable(b, op):
            return replace(b, name=f"{b.name}->{op.name}", transforms=b.transforms + (op.transform,))
        if (isinstance(b, MapStage) and not b.transforms and b.read_tasks
                and op.compute.kind == "tasks"):
            # a read under a map with other resources: the map's resources win for the read
            return replace(b, name=f"{b.name}->{op.name}", transforms=(op.transform,),
                           remote_args=dict(op.remote_args), compute=op.compute)
        return MapStage(op.name, (op.transform,), op.compute, dict(op.remote_args), b)
    if isinstance(op, Limit):
        return LimitStage(op.n, below[0], op.name)
    if isinstance(op, AllToAll):
        return AllToAllStage(op.kind, dict(op.params), below[0], op.name)
    if isinstance(op, Union):
        return UnionStage(tuple(below))
    if isinstance(op, Zip):
        return ZipStage(tuple(below))
    if isinstance(op, Join):
        return JoinStage(tuple(below), dict(op.params))
    raise TypeError(f"no physical plan for {type(op).__name__}")


def count_plan(op):
    """(rows known without running, or None; the plan to run to count rows)."""
    while isinstance(op, MapOp) and op.row_preserving:
        op = op.inputs[0]
    if isinstance(op, (Read, InputData)):
        known = op.known_rows()
        if known is not None:
            return known, op
    if isinstance(op, Limit):
        inner, _ = count_plan(op.inputs[0])
        if inner is not None:
            return min(inner, op.n), op
    if isinstance(op, AllToAll) and op.kind in ("repartition", "random_shuffle",
                                                 "randomize_block_order", "sort"):
        inner, _ = count_plan(op.inputs[0])
        if inner is not None:
            return inner, op
    if isinstance(op, Union):
        counts = [count_plan(i)[0] for i in op.inputs]
        if all(c is not None for c in counts):
            return sum(counts), op
    return None, op


def stage_names(stage):
    """The names of a physical plan's stages, upstream first (for logs and stats)."""
    ups = []
    if getattr(stage, "upstream", None) is not None:
        ups = stage_names(stage.upstream)
    for u in getattr(stage, "upstreams", ()):
        ups += stage_names(u)
    return ups + [stage.name]


def source_of(op):
    """The Read or InputData at the bottom of a linear logical plan (None if it branches)."""
    while op.inputs:
        if len(op.inputs) != 1:
            return None
        op = op.inputs[0]
    return op
