"""Checkpoint: a directory of files plus a little JSON metadata, as Ray Train's.

A checkpoint made in a worker is persisted by report(): copied into the run's storage when the
worker sees it (same node or shared filesystem), else packed (`pack_directory`) and carried to
the driver through the object store, which unpacks it there.
"""
import contextlib
import io
import json
import os
import shutil
import tarfile
import tempfile

METADATA_FILE = ".metadata.json"


class Checkpoint:
    """A checkpoint directory at `path` (local or on a shared filesystem)."""

    def __init__(self, path, filesystem=None):
        if filesystem is not None:
            raise NotImplementedError("zray.train.Checkpoint: only local paths are supported")
        self.path = os.fspath(path)
        self.filesystem = None

    @classmethod
    def from_directory(cls, path):
        return cls(os.path.abspath(os.fspath(path)))

    def to_directory(self, path=None):
        """Copies the checkpoint's files to `path` (a new temporary directory if None) and
        returns it."""
        if path is None:
            path = tempfile.mkdtemp(prefix="zray_checkpoint_")
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        if os.path.abspath(path) != os.path.abspath(self.path):
            shutil.copytree(self.path, path, dirs_exist_ok=True)
        return path

    @contextlib.contextmanager
    def as_directory(self):
        """The checkpoint as a local directory, for reading: its own path (never copied, so do
        not write into it)."""
        if not os.path.isdir(self.path):
            raise FileNotFoundError(f"checkpoint directory {self.path} does not exist")
        yield self.path

    def get_metadata(self):
        try:
            with open(os.path.join(self.path, METADATA_FILE)) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def set_metadata(self, metadata):
        text = json.dumps(metadata)        # fail before touching the file
        with open(os.path.join(self.path, METADATA_FILE), "w") as f:
            f.write(text)

    def update_metadata(self, metadata):
        merged = self.get_metadata()
        merged.update(metadata)
        self.set_metadata(merged)

    def __fspath__(self):
        return self.path

    def __eq__(self, other):
        return isinstance(other, Checkpoint) and other.path == self.path

    def __hash__(self):
        return hash(self.path)

    def __repr__(self):
        return f"Checkpoint(filesystem=local, path={self.path})"


def pack_directory(path):
    """A directory's files as tar bytes (uncompressed: checkpoints are mostly tensors)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(path, arcname=".")
    return buf.getvalue()


def unpack_directory(data, path):
    os.makedirs(path, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(path, filter="data")
    return path


def copy_directory(src, dst):
    """Copies src's files into dst (merging with what another rank put there)."""
    os.makedirs(dst, exist_ok=True)
    shutil.copytree(src, dst, dirs_exist_ok=True)
