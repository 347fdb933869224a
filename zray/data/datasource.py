"""Datasource and Datasink: the extension points for reading and writing, with Ray's names.

A Datasource returns ReadTasks; each ReadTask is a picklable callable that runs in a task and
returns an iterable of blocks (pyarrow Tables, pandas DataFrames or dicts of numpy arrays), with
BlockMetadata estimates the planner uses (row counts let `count()` skip the read).
A Datasink writes the blocks of each write task and hears about the run's start and end.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, List, Optional

from ._internal.block import BlockMetadata


class ReadTask:
    """A read function with the metadata known before it runs."""

    def __init__(self, read_fn: Callable[[], Iterable[Any]], metadata: BlockMetadata,
                 schema=None):
        self._read_fn = read_fn
        self._metadata = metadata
        self._schema = schema if schema is not None else getattr(metadata, "schema", None)

    @property
    def metadata(self):
        return self._metadata

    @property
    def schema(self):
        return self._schema

    @property
    def read_fn(self):
        return self._read_fn

    def __call__(self):
        return self._read_fn()


class Datasource:
    """Subclass and implement get_read_tasks (and optionally estimate_inmemory_data_size)."""

    def get_name(self) -> str:
        name = type(self).__name__
        return name[:-len("Datasource")] if name.endswith("Datasource") and name != "Datasource" else name

    def estimate_inmemory_data_size(self) -> Optional[int]:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: Optional[int] = None
                       ) -> List[ReadTask]:
        raise NotImplementedError

    @property
    def supports_distributed_reads(self) -> bool:
        return True


@dataclass
class WriteResult:
    """What on_write_complete receives: totals and each write task's return value."""
    num_rows: int = 0
    size_bytes: int = 0
    write_returns: List[Any] = field(default_factory=list)


class Datasink:
    """Subclass and implement write(blocks, ctx); the other hooks run on the driver."""

    def get_name(self) -> str:
        name = type(self).__name__
        return name[:-len("Datasink")] if name.endswith("Datasink") and name != "Datasink" else name

    def on_write_start(self) -> None:
        pass

    def write(self, blocks: Iterable[Any], ctx) -> Any:
        raise NotImplementedError

    def on_write_complete(self, write_result: WriteResult) -> None:
        pass

    def on_write_failed(self, error: Exception) -> None:
        pass

    @property
    def supports_distributed_writes(self) -> bool:
        return True

    @property
    def min_rows_per_write(self) -> Optional[int]:
        return None
