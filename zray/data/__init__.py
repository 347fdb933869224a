"""zray.data: Ray Data's API (2.x names and signatures) on zray.

Datasets are lazy plans over Arrow blocks kept in zray's shared-memory object store; consuming a
Dataset streams it through fused tasks and actor pools under a memory budget. Needs pyarrow and
numpy (pandas for pandas batches; Pillow for read_images; torch for iter_torch_batches).

Names load on first use (PEP 562), so a worker that only runs zray.data's tasks imports the
few modules those need, not the whole API.
"""
import importlib

_NAMES = {
    "aggregate": ("AbsMax", "AggregateFn", "Count", "Max", "Mean", "Min", "Std", "Sum"),
    "compute": ("ActorPoolStrategy", "TaskPoolStrategy"),
    "context": ("DataContext", "DatasetContext", "ExecutionOptions", "ExecutionResources"),
    "dataset": ("Dataset", "MaterializedDataset"),
    "datasource": ("Datasink", "Datasource", "ReadTask", "WriteResult"),
    "grouped_data": ("GroupedData",),
    "iterator": ("DataIterator",),
    "read_api": ("from_arrow", "from_arrow_refs", "from_items", "from_numpy", "from_numpy_refs",
                 "from_pandas", "from_pandas_refs", "from_torch", "range", "range_tensor",
                 "read_binary_files", "read_csv", "read_datasource", "read_images", "read_json",
                 "read_numpy", "read_parquet", "read_text"),
    "schema": ("Schema",),
    "_internal.block": ("BlockMetadata",),
    "_internal.errors": ("UserCodeException",),
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}

__all__ = sorted(_WHERE) + ["preprocessors"]


def __getattr__(name):
    if name == "preprocessors":
        return importlib.import_module(f"{__name__}.preprocessors")
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
