"""Disk work of the store, kept off the daemon's event loop: a spill thread, and file-backed
objects for when memory is full of pinned objects.

`SpillWorker` writes objects to the spill directory on its own thread. The handoff: the store
(on the loop) pins the object with SPILL_CLIENT, so its memory can neither move nor be freed,
and submits (object_id, a view of its bytes, path); the thread writes `path.part`, renames it to
`path` (a failed write leaves no file) and reports (object_id, path, error) through
`take_done()`, its eventfd `wake_fd` waking the loop. Only then does the store free the
memory: a reader that pinned the object meanwhile keeps it in memory, a free meanwhile
deletes it.

`FallbackFile`: when nothing can be spilled (every object in the region is pinned, or the
spills under way cannot make room), an object is created in a file of its own in the spill
directory instead of failing (Ray does the same: "fallback allocation"), mapped by the daemon
and by the processes that read or write it. Its place is a virtual offset, segment << 40: the
region is segment 0, so every message keeps carrying one int.
"""
import collections
import mmap
import os
import threading

from ..transport.completions import Completions

SPILL_CLIENT = "zray:spill"      # the pin a spill in progress holds on its object
SEGMENT_SHIFT = 40               # region offsets stay below 1 TiB
SEGMENT_MASK = (1 << SEGMENT_SHIFT) - 1


def segment_of(offset):
    return offset >> SEGMENT_SHIFT


def fallback_path(spill_dir, segment):
    return os.path.join(spill_dir, f"fallback-{segment}")


class FallbackFile:
    """One object's bytes in a file of the spill directory, mapped read-write."""

    def __init__(self, path, size):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            length = max(size, 1)
            # Reserve the blocks now: a full disk is an error here, not a SIGBUS on write.
            os.posix_fallocate(fd, 0, length)
            self.mmap = mmap.mmap(fd, length, flags=mmap.MAP_SHARED,
                                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            _unlink(path)
            raise
        os.close(fd)
        self.path = path
        self.size = size
        self.view = memoryview(self.mmap)

    def close(self):
        _unlink(self.path)
        try:
            self.view.release()
            self.mmap.close()
        except (BufferError, ValueError):
            pass      # a transfer still holds a view: the mapping goes when it is dropped


def map_fallback(spill_dir, offset, size):
    """A client's view of a file-backed object at virtual `offset` (read-write)."""
    path = fallback_path(spill_dir, segment_of(offset))
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        mm = mmap.mmap(fd, max(size, 1), flags=mmap.MAP_SHARED,
                       prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    start = offset & SEGMENT_MASK
    return memoryview(mm)[start:start + size]


class SpillWorker:
    """One thread that writes spills. submit() and take_done() are for the loop's thread."""

    def __init__(self):
        self._done = Completions()
        self.wake_fd = self._done.fd
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queue = collections.deque()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="zray-spill", daemon=True)
        self._thread.start()

    def submit(self, object_id, view, path):
        with self._lock:
            self._queue.append((object_id, view, path))
            self._work.notify()

    def take_done(self):
        return self._done.take_all()

    def close(self, timeout=10.0):
        """Stop after the write in progress; writes not started are dropped (the store is
        closing: its spill files are removed with it)."""
        with self._lock:
            self._closed = True
            self._queue.clear()
            self._work.notify_all()
        self._thread.join(timeout)
        self._done.close()

    def _run(self):
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._work.wait()
                if self._closed:
                    return
                object_id, view, path = self._queue.popleft()
            error = write_file(path, view)
            self._done.put((object_id, path, error))


def write_file(path, view):
    """Write `view` to `path` through `path.part`: None, or the OSError (no file is left)."""
    part = path + ".part"
    try:
        with open(part, "wb") as f:
            f.write(view)
        os.replace(part, path)
        return None
    except OSError as exc:
        _unlink(part)
        return exc


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
