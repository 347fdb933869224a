"""`tune.Checkpoint`: a directory of files (Ray's `ray.train.Checkpoint`, local filesystem)."""
import contextlib
import json
import os
import shutil
import tempfile

_METADATA_FILE = ".metadata.json"


class Checkpoint:
    def __init__(self, path, filesystem=None):
        self.path = os.fspath(path)
        self.filesystem = filesystem

    @classmethod
    def from_directory(cls, path):
        return cls(os.path.abspath(os.fspath(path)))

    def to_directory(self, path=None):
        path = os.fspath(path) if path is not None else tempfile.mkdtemp(prefix="checkpoint_")
        os.makedirs(path, exist_ok=True)
        if os.path.abspath(path) != os.path.abspath(self.path):
            shutil.copytree(self.path, path, dirs_exist_ok=True)
        return path

    @contextlib.contextmanager
    def as_directory(self):
        """The checkpoint's own directory (local storage: no copy); do not modify it."""
        yield self.path

    def get_metadata(self):
        try:
            with open(os.path.join(self.path, _METADATA_FILE)) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def set_metadata(self, metadata):
        with open(os.path.join(self.path, _METADATA_FILE), "w") as f:
            json.dump(metadata, f)

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
