"""DataContext: the per-driver settings of zray.data, under Ray Data's names.

`DataContext.get_current()` returns the process's context; datasets read it when they execute,
so a change affects the next execution. The defaults and their reasons:

- `target_max_block_size` (128 MiB, as Ray): a read splits its input so that no block exceeds it.
- `read_op_min_num_blocks` (None → 2 × the cluster's CPUs): reads make at least this many blocks
  (never more than rows), so every CPU has work and a stream starts after one small task. Ray uses
  200, which costs ~200 task round trips on small data; zray's tasks are cheap but not free.
- `execution_options.resource_limits.object_store_memory` (None → 1/4 of the cluster's store):
  the streaming executor's memory budget — the bytes of blocks produced and not yet consumed,
  plus the estimated output of running tasks. One task always runs, so a block larger than the
  budget still makes progress.
- `execution_options.exclude_resources` (none): what other work holds (zray.train's workers, for
  their ingest); when it leaves no CPU, tasks run without a CPU reservation, with one warning.
- `max_errored_blocks` (0): blocks whose UDF raised that a run may skip; -1 skips any number.
- `enable_progress_bars` (True): per-operator progress lines on stderr for runs that last longer
  than `progress_bar_min_seconds`.
"""
import copy
import threading
from dataclasses import dataclass, field
from typing import Optional

_lock = threading.Lock()
_current = None


@dataclass
class ExecutionResources:
    """Limits of the streaming executor; None means "derive from the cluster"."""
    cpu: Optional[float] = None
    gpu: Optional[float] = None
    object_store_memory: Optional[float] = None

    def __post_init__(self):
        for name in ("cpu", "gpu", "object_store_memory"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"ExecutionResources.{name} must be >= 0, got {value}")


@dataclass
class ExecutionOptions:
    resource_limits: ExecutionResources = field(default_factory=ExecutionResources)
    # Resources held by other work on the cluster (zray.train sets its workers' here for the
    # ingest it feeds): the executor plans with the cluster's total less these.
    exclude_resources: ExecutionResources = field(default_factory=ExecutionResources)
    # zray yields blocks in their input order by default (Ray: False). Order costs little here
    # because tasks are dispatched in input order; set False to emit in completion order.
    preserve_order: bool = True
    locality_with_output: bool = False
    verbose_progress: bool = False
    actor_locality_enabled: bool = True


@dataclass
class DataContext:
    target_max_block_size: int = 128 * 1024 * 1024
    target_min_block_size: int = 1 * 1024 * 1024
    read_op_min_num_blocks: Optional[int] = None
    execution_options: ExecutionOptions = field(default_factory=ExecutionOptions)
    max_errored_blocks: int = 0
    enable_progress_bars: bool = True
    enable_operator_progress_bars: bool = True
    progress_bar_min_seconds: float = 2.0
    max_tasks_in_flight_per_actor: int = 2
    use_push_based_shuffle: bool = False       # accepted; zray's shuffles are sort/hash based
    enable_tensor_extension_casting: bool = True
    enable_auto_log_stats: bool = False
    verbose_stats_logs: bool = False
    log_internal_stack_trace: bool = False
    raise_original_map_exception: bool = False

    def __post_init__(self):
        if self.target_max_block_size <= 0:
            raise ValueError("target_max_block_size must be > 0")
        if self.max_errored_blocks < -1:
            raise ValueError("max_errored_blocks must be >= -1 (-1 skips any number)")

    @staticmethod
    def get_current():
        """The context of this process (created with the defaults on first use)."""
        global _current
        with _lock:
            if _current is None:
                _current = DataContext()
            return _current

    @staticmethod
    def _set_current(context):
        global _current
        with _lock:
            _current = context

    def copy(self):
        return copy.deepcopy(self)


DatasetContext = DataContext   # Ray's old name
