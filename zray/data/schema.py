"""Schema: a Dataset's column names and types, printed as Ray prints it."""
import pyarrow as pa


def type_name(t, f=None):
    if isinstance(t, pa.FixedShapeTensorType):
        dtype = t.value_type.to_pandas_dtype().__name__ if hasattr(
            t.value_type.to_pandas_dtype(), "__name__") else str(t.value_type)
        dtype = {"float64": "double", "float32": "float"}.get(dtype, dtype)
        return f"numpy.ndarray(shape={tuple(t.shape)}, dtype={dtype})"
    if f is not None and f.metadata and f.metadata.get(b"zray") == b"pickled":
        return "object"
    return str(t)


class Schema:
    def __init__(self, base_schema):
        self.base_schema = base_schema

    @property
    def names(self):
        return list(self.base_schema.names)

    @property
    def types(self):
        return list(self.base_schema.types)

    def __eq__(self, other):
        return isinstance(other, Schema) and self.base_schema == other.base_schema

    def __len__(self):
        return len(self.base_schema)

    def __repr__(self):
        names = self.names
        types = [type_name(f.type, f) for f in self.base_schema]
        w = max([len("Column")] + [len(n) for n in names])
        lines = [f"{'Column':<{w}}  Type", f"{'------':<{w}}  ----"]
        lines += [f"{n:<{w}}  {t}" for n, t in zip(names, types)]
        return "\n".join(lines)

    def short(self):
        return "{" + ", ".join(f"{f.name}: {type_name(f.type, f)}" for f in self.base_schema) + "}"
