"""Files: listing paths, the read tasks of each format, and the file datasink of write_*."""
import os

import numpy as np

from .. import datasource as D
from . import block as B

_EXTENSIONS = {"parquet": ["parquet"], "csv": ["csv"], "json": ["json", "jsonl"],
               "npy": ["npy"], "text": None, "binary": None,
               "images": ["png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif"]}


def expand_paths(paths, file_extensions=None, ignore_missing_paths=False):
    """Files under `paths` (files or directories, recursively), sorted, hidden files skipped."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for p in paths:
        p = os.fspath(p)
        if p.startswith("local://"):
            p = p[len("local://"):]
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
                out.extend(os.path.join(root, f) for f in sorted(files)
                           if not f.startswith((".", "_")))
        elif os.path.exists(p):
            out.append(p)
        elif not ignore_missing_paths:
            raise FileNotFoundError(f"No such file or directory: {p!r}")
    if file_extensions:
        exts = tuple("." + e.lower().lstrip(".") for e in file_extensions)
        out = [f for f in out if f.lower().endswith(exts)]
    if not out and not ignore_missing_paths:
        raise ValueError(f"No input files found under {paths!r}")
    return out


def _group(files, n):
    n = max(1, min(n, len(files)))
    return [files[i::n] for i in range(n)] if n < len(files) else [[f] for f in files]


def _with_path(table, path, include_paths):
    if include_paths:
        import pyarrow as pa
        table = table.append_column("path", pa.array([path] * table.num_rows, type=pa.string()))
    return table


def _read_one(fmt, path, opts, include_paths):
    import pyarrow as pa
    if fmt == "parquet":
        import pyarrow.parquet as pq
        table = pq.read_table(path, columns=opts.get("columns"),
                              **{k: v for k, v in opts.items() if k != "columns"})
    elif fmt == "csv":
        import pyarrow.csv as pcsv
        table = pcsv.read_csv(path, **opts)
    elif fmt == "json":
        table = _read_json(path, opts)
    elif fmt == "text":
        with open(path, "rb") as f:
            text = f.read().decode(opts.get("encoding", "utf-8"))
        lines = text.splitlines()
        if opts.get("drop_empty_lines", True):
            lines = [ln for ln in lines if ln.strip()]
        table = pa.table({"text": pa.array(lines, type=pa.string())})
    elif fmt == "npy":
        arr = np.load(path, allow_pickle=False)
        table = B.table_from_columns({"data": arr})
    elif fmt == "binary":
        with open(path, "rb") as f:
            data = f.read()
        table = pa.table({"bytes": pa.array([data], type=pa.binary())})
    elif fmt == "images":
        table = _read_image(path, opts)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return _with_path(table.replace_schema_metadata(None), path, include_paths)


def _read_json(path, opts):
    import pyarrow.json as pj
    try:
        return pj.read_json(path, **opts)
    except Exception:                      # a JSON array (not JSON lines): read it whole
        import json
        with open(path) as f:
            data = json.load(f)
        if isinstance(data, dict):
            data = [data]
        return B.block_from_rows(data)


def _read_image(path, opts):
    from PIL import Image
    img = Image.open(path)
    if opts.get("mode"):
        img = img.convert(opts["mode"])
    if opts.get("size"):
        h, w = opts["size"]
        img = img.resize((w, h))
    arr = np.asarray(img)
    return B.table_from_columns({"image": arr[None, ...]})


class _FileReader:
    """A ReadTask's function: read some files of one format."""

    def __init__(self, fmt, files, opts, include_paths):
        self.fmt, self.files, self.opts, self.include_paths = fmt, files, opts, include_paths

    def __call__(self):
        from .errors import UserCodeException
        for path in self.files:
            try:
                yield _read_one(self.fmt, path, self.opts, self.include_paths)
            except (OSError, ValueError) as exc:
                raise UserCodeException(f"Reading {path!r} ({self.fmt}) failed: "
                                        f"{type(exc).__name__}: {exc}") from exc
            except Exception as exc:
                if type(exc).__module__.startswith("pyarrow"):
                    raise UserCodeException(f"Reading {path!r} ({self.fmt}) failed: "
                                            f"{type(exc).__name__}: {exc}") from exc
                raise


class FileDatasource(D.Datasource):
    def __init__(self, fmt, paths, opts=None, include_paths=False, file_extensions=None,
                 ignore_missing_paths=False):
        self.fmt = fmt
        self.opts = dict(opts or {})
        self.include_paths = include_paths
        exts = file_extensions if file_extensions is not None else None
        self.files = expand_paths(paths, exts, ignore_missing_paths)

    def get_name(self):
        return {"parquet": "Parquet", "csv": "CSV", "json": "JSON", "text": "Text",
                "npy": "Numpy", "binary": "BinaryFiles", "images": "Images"}[self.fmt]

    def estimate_inmemory_data_size(self):
        return sum(os.path.getsize(f) for f in self.files)

    def _rows_and_schema(self, files):
        if self.fmt == "parquet":
            import pyarrow.parquet as pq
            rows, schema = 0, None
            for f in files:
                md = pq.ParquetFile(f)
                rows += md.metadata.num_rows
                if schema is None:
                    schema = md.schema_arrow
                    cols = self.opts.get("columns")
                    if cols:
                        import pyarrow as pa
                        schema = pa.schema([schema.field(c) for c in cols])
                    if self.include_paths:
                        import pyarrow as pa
                        schema = schema.append(pa.field("path", pa.string()))
            return rows, schema.remove_metadata() if schema is not None else None
        if self.fmt in ("binary", "images"):
            return len(files), None
        return None, None

    def get_read_tasks(self, parallelism, per_task_row_limit=None):
        tasks = []
        for group in _group(self.files, parallelism):
            rows, schema = self._rows_and_schema(group)
            size = sum(os.path.getsize(f) for f in group)
            meta = B.BlockMetadata(rows, size, schema, input_files=tuple(group))
            tasks.append(D.ReadTask(_FileReader(self.fmt, group, self.opts, self.include_paths),
                                    meta, schema))
        return tasks


class FileDatasink(D.Datasink):
    """write_parquet/csv/json/numpy: one file per non-empty write task, named like Ray's."""

    def __init__(self, path, fmt, dataset_uuid, opts, filename_provider=None):
        self.path = os.fspath(path)
        if self.path.startswith("local://"):
            self.path = self.path[len("local://"):]
        self.fmt = fmt
        self.uuid = dataset_uuid
        self.opts = dict(opts)
        self.filename_provider = filename_provider

    def get_name(self):
        return {"parquet": "Parquet", "csv": "CSV", "json": "JSON", "npy": "Numpy"}[self.fmt]

    def on_write_start(self):
        os.makedirs(self.path, exist_ok=True)

    def write(self, blocks, ctx):
        table = B.concat(list(blocks))
        if table.num_rows == 0:
            return None
        if self.filename_provider is not None:
            name = self.filename_provider.get_filename_for_block(table, ctx.task_idx, 0)
        else:
            name = f"{self.uuid}_{ctx.task_idx:06d}-0.{self.fmt}"
        target = os.path.join(self.path, name)
        tmp = target + ".tmp"
        if self.fmt == "parquet":
            import pyarrow.parquet as pq
            pq.write_table(table, tmp, **self.opts)
        elif self.fmt == "csv":
            import pyarrow.csv as pcsv
            pcsv.write_csv(table, tmp, **self.opts)
        elif self.fmt == "json":
            opts = {"orient": "records", "lines": True, **self.opts}
            B.to_pandas(table).to_json(tmp, **opts)
        elif self.fmt == "npy":
            arr = B.to_numpy_dict(table)[self.opts["column"]]
            with open(tmp, "wb") as f:
                np.save(f, arr)
        os.replace(tmp, target)
        return target
