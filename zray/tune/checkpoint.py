"""`tune.Checkpoint` is `zray.train.Checkpoint`, as in Ray (one class: a directory of files
with JSON metadata, local filesystem)."""
from ..train.checkpoint import Checkpoint

__all__ = ["Checkpoint"]
