"""Types of zray.util.collective: ReduceOp, Backend, per-call options and CollectiveConfig.

Options are frozen dataclasses built per call (never a class mutated process-wide). Every
option carries `timeout_ms`; None means the group's default (CollectiveConfig.timeout_ms).

CollectiveConfig defaults (override with `ZRAY_COLLECTIVE_<FIELD>` in the environment):
    timeout_ms            = 300_000   per call; a dead member is found much sooner (below)
    liveness_interval_ms  = 50        how often a waiting call checks its peers and the abort
                                      word: a dead member fails a pending call after at most
                                      ~liveness_interval_ms (same node: process check) or
                                      heartbeat_timeout_ms (other nodes: ZeroMQ heartbeats)
    heartbeat_ivl_ms      = 1_000     ZMTP heartbeat period between members' sockets
    heartbeat_timeout_ms  = 5_000     a silent connection is dropped after this
    chunk_bytes           = 4 MiB     largest message between nodes (pyzmq copies beyond)
    zero_copy_min_bytes   = 256 KiB   a collective's messages between nodes of at least this
                                      size go out of the tensor itself, not a copy (the
                                      call returns once ZeroMQ let go of them); send()
                                      always copies (it returns at once)
    shm_slot_bytes        = 4 MiB     per member and buffer; a node's segment holds
                                      2 * world_size * shm_slot_bytes (double buffering)
    tree_threshold_bytes  = 256 KiB   below: tree (latency, log2 n steps); above: ring
                                      (bandwidth, 2 (n-1)/n of the data per member)
    spin_us               = 100       an shm barrier polls a late peer's flag up to this
                                      long before it sleeps (back to back for 20 us, then
                                      yielding between polls); never for a peer on its own
                                      CPU
    spin_iterations       = 10        then polls of a flag (~4 us each) before sleeping
    futex                 = True      shm barriers sleep in a futex wait on a late peer's
                                      counter (False: sched_yield, then 50 us sleeps)
    cma                   = True      shm allreduces of >= cma_min_bytes read the peers'
                                      tensors in place (process_vm_readv) instead of
                                      copying through the segment, where the kernel allows
                                      it (probed at formation; else the segment)
    cma_min_bytes         = 256 KiB   below: the segment (fewer syscalls for small ones)
    cma_chunk_bytes       = 256 KiB   peer data read per step of the reduction (fits L2)
    rendezvous_timeout_ms = 60_000    forming a group
    verify_calls          = True      mpi: one 10-int MIN-allreduce before each collective
                                      turns mismatched shapes into an argument error
"""
import dataclasses
import enum
import os
from dataclasses import dataclass
from typing import Optional

from .errors import CollectiveArgumentError


class ReduceOp(enum.Enum):
    SUM = 0
    PRODUCT = 1
    MIN = 2
    MAX = 3
    AVG = 4

    # Members are singletons compared by identity: hash them so too, in C. Enum's own
    # __hash__ is Python code (0.25 us), and every collective call looks an op up.
    __hash__ = object.__hash__


class Backend:
    """Backend names. `Backend("gloo")` is the cpu backend, so Ray programs run unchanged."""
    CPU = "cpu"
    MPI = "mpi"
    NCCL = "nccl"
    GLOO = "cpu"
    _ALIASES = {"cpu": "cpu", "gloo": "cpu", "torch_gloo": "cpu", "mpi": "mpi", "nccl": "nccl"}

    def __new__(cls, name):
        return normalize_backend(name)


def normalize_backend(name):
    if isinstance(name, str) and name.lower() in Backend._ALIASES:
        return Backend._ALIASES[name.lower()]
    raise CollectiveArgumentError(
        f"unknown backend {name!r}; choose one of 'cpu' (alias 'gloo'), 'mpi', 'nccl'")


def _check_timeout(timeout_ms):
    if timeout_ms is None:
        return
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)) \
            or not timeout_ms > 0:
        raise CollectiveArgumentError(f"timeout_ms must be a positive number, got {timeout_ms!r}")


def _check_op(op):
    if not isinstance(op, ReduceOp):
        raise CollectiveArgumentError(f"op must be a ReduceOp, got {op!r}")


@dataclass(frozen=True)
class _Options:
    timeout_ms: Optional[float] = None

    def __post_init__(self):
        _check_timeout(self.timeout_ms)


@dataclass(frozen=True)
class AllReduceOptions(_Options):
    reduce_op: ReduceOp = ReduceOp.SUM

    def __post_init__(self):
        super().__post_init__()
        _check_op(self.reduce_op)


@dataclass(frozen=True)
class ReduceOptions(AllReduceOptions):
    root_rank: int = 0


@dataclass(frozen=True)
class ReduceScatterOptions(AllReduceOptions):
    pass


@dataclass(frozen=True)
class BarrierOptions(_Options):
    pass


@dataclass(frozen=True)
class BroadcastOptions(_Options):
    root_rank: int = 0


@dataclass(frozen=True)
class AllGatherOptions(_Options):
    pass


@dataclass(frozen=True)
class GatherOptions(_Options):
    root_rank: int = 0


@dataclass(frozen=True)
class ScatterOptions(_Options):
    root_rank: int = 0


@dataclass(frozen=True)
class AllToAllOptions(_Options):
    pass


@dataclass(frozen=True)
class SendOptions(_Options):
    dst_rank: int = 0


@dataclass(frozen=True)
class RecvOptions(_Options):
    src_rank: int = 0


@dataclass(frozen=True)
class CollectiveConfig:
    """Tunables of the collective groups; see the module docstring for each default."""
    timeout_ms: float = 300_000
    liveness_interval_ms: float = 50
    heartbeat_ivl_ms: int = 1_000
    heartbeat_timeout_ms: int = 5_000
    chunk_bytes: int = 4 << 20
    zero_copy_min_bytes: int = 256 << 10
    shm_slot_bytes: int = 4 << 20
    tree_threshold_bytes: int = 256 << 10
    spin_us: float = 100
    spin_iterations: int = 10
    futex: bool = True
    cma: bool = True
    cma_min_bytes: int = 256 << 10
    cma_chunk_bytes: int = 256 << 10
    rendezvous_timeout_ms: float = 60_000
    force_network: bool = False      # tests: use the ZeroMQ path even inside one node
    verify_calls: bool = True        # mpi: compare sizes/dtypes/roots before each collective

    def __post_init__(self):
        for name in ("timeout_ms", "liveness_interval_ms", "rendezvous_timeout_ms"):
            _check_timeout(getattr(self, name))
        if not 1 <= self.heartbeat_ivl_ms < self.heartbeat_timeout_ms:
            raise CollectiveArgumentError(
                "need 1 <= heartbeat_ivl_ms < heartbeat_timeout_ms, got "
                f"{self.heartbeat_ivl_ms} and {self.heartbeat_timeout_ms}")
        for name in ("chunk_bytes", "shm_slot_bytes", "cma_chunk_bytes"):
            value = getattr(self, name)
            if not 4096 <= value <= 1 << 30 or value % 64:
                raise CollectiveArgumentError(
                    f"{name} must be a multiple of 64 in [4 KiB, 1 GiB], got {value}")
        if self.tree_threshold_bytes < 0 or self.spin_iterations < 0 or \
                self.cma_min_bytes < 0 or self.zero_copy_min_bytes < 0 or \
                not 0 <= self.spin_us <= 10_000:
            raise CollectiveArgumentError(
                "tree_threshold_bytes, spin_iterations, cma_min_bytes and zero_copy_min_bytes "
                "must be >= 0, "
                f"spin_us in [0, 10000] (got {self.spin_us})")
        if self.liveness_interval_ms >= self.timeout_ms:
            raise CollectiveArgumentError("liveness_interval_ms must be below timeout_ms")

    @classmethod
    def from_env(cls, environ=None):
        environ = os.environ if environ is None else environ
        values = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(f"ZRAY_COLLECTIVE_{field.name.upper()}")
            if raw is None:
                continue
            if field.type in (bool, "bool"):
                values[field.name] = raw.lower() in ("1", "true", "yes")
            elif field.type in (int, "int"):
                values[field.name] = int(raw)
            else:
                values[field.name] = float(raw)
        return cls(**values)

    def peer_death_bound_ms(self, same_node):
        """Longest a pending call waits after a member died (before its own timeout)."""
        return self.liveness_interval_ms if same_node else \
            self.heartbeat_timeout_ms + self.liveness_interval_ms
