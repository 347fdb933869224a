"""zray.data: Ray Data's API (2.x names and signatures) on zray.

Datasets are lazy plans over Arrow blocks kept in zray's shared-memory object store; consuming a
Dataset streams it through fused tasks and actor pools under a memory budget. Needs pyarrow and
numpy (pandas for pandas batches; Pillow for read_images; torch for iter_torch_batches).
"""
from . import preprocessors
from .aggregate import AbsMax, AggregateFn, Count, Max, Mean, Min, Std, Sum
from .compute import ActorPoolStrategy, TaskPoolStrategy
from .context import DataContext, DatasetContext, ExecutionOptions, ExecutionResources
from .dataset import Dataset, MaterializedDataset
from .datasource import Datasink, Datasource, ReadTask, WriteResult
from .grouped_data import GroupedData
from .iterator import DataIterator
from .read_api import (from_arrow, from_arrow_refs, from_items, from_numpy, from_numpy_refs,
                       from_pandas, from_pandas_refs, from_torch, range, range_tensor,
                       read_binary_files, read_csv, read_datasource, read_images, read_json,
                       read_numpy, read_parquet, read_text)
from .schema import Schema
from ._internal.block import BlockMetadata
from ._internal.errors import UserCodeException

__all__ = [
    "AbsMax", "ActorPoolStrategy", "AggregateFn", "BlockMetadata", "Count", "DataContext",
    "DataIterator", "Dataset", "DatasetContext", "Datasink", "Datasource", "ExecutionOptions",
    "ExecutionResources", "GroupedData", "MaterializedDataset", "Max", "Mean", "Min", "ReadTask",
    "Schema", "Std", "Sum", "TaskPoolStrategy", "UserCodeException", "WriteResult", "from_arrow",
    "from_arrow_refs", "from_items", "from_numpy", "from_numpy_refs", "from_pandas",
    "from_pandas_refs", "from_torch", "preprocessors", "range", "range_tensor",
    "read_binary_files", "read_csv", "read_datasource", "read_images", "read_json",
    "read_numpy", "read_parquet", "read_text",
]
