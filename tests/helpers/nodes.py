"""Asking a `zray start` node that lives under another ZRAY_TMPDIR (one per simulated host)."""
import contextlib
import os
import time

from zray.node import local_node


@contextlib.contextmanager
def zray_tmpdir(path):
    old = os.environ.get("ZRAY_TMPDIR")
    os.environ["ZRAY_TMPDIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ZRAY_TMPDIR", None)
        else:
            os.environ["ZRAY_TMPDIR"] = old


def status_of(path):
    """`zray status` data of the node under `path`, or None."""
    with zray_tmpdir(path):
        return local_node.status()


def node_file_of(path):
    with zray_tmpdir(path):
        return local_node.read_node_file()


def seconds_until(condition, timeout, interval=0.1):
    """Seconds it took until condition() held, or None after the timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(interval)
    return None
