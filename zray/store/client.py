"""A process's access to its node's store: write a value in, read one out without copying.

Reading pins the object at the daemon; the pin lasts exactly as long as some Python object
still looks at the store's memory (a weakref finalizer on each buffer handed to pickle), so a
numpy array from `get` stays valid however long the user keeps it, and the space comes back
as soon as it is gone.
"""
import os
import threading
import weakref

from ..objects import serialization
from ..transport import wire
from .region import Region

try:
    from .._native import parallel_copy as _parallel_copy
except ImportError:   # the extension is built by pip install; plain slices work meanwhile
    _parallel_copy = None

PARALLEL_COPY_MIN = 8 << 20
# Copy threads: the CPUs this process may run on (affinity), not the machine's count.
COPY_THREADS = max(1, min(4, len(os.sched_getaffinity(0))))


def _copy(dst, src):
    if _parallel_copy is not None and src.nbytes >= PARALLEL_COPY_MIN:
        _parallel_copy(dst, src, COPY_THREADS)
    else:
        dst[:] = src.cast("B") if src.format != "B" or src.ndim != 1 else src


class StoreClient:
    def __init__(self, core, node_info):
        self.core = core
        self.daemon = node_info["address"]
        self.region = Region.attach(node_info["pid"], node_info["store_fd"], node_info["store_size"])
        self._lock = threading.Lock()

    def put(self, object_id, sobj, owner):
        """Create, fill and seal an object; raises ObjectStoreFullError when it cannot fit."""
        size = sobj.total_size
        offset = self.core.rpc(self.daemon, wire.OBJ_CREATE, (object_id, size, owner))
        sobj.write_to(self.region.view[offset:offset + size], copy=_copy)
        self.core.transport.send(self.daemon, wire.OBJ_SEAL, (object_id,))

    def read(self, object_id):
        """(flags, value) of a sealed object, zero-copy for out-of-band buffers."""
        offset, size = self.core.rpc(self.daemon, wire.OBJ_PIN, (object_id,))
        flags, data, buffers = serialization.parse(self.region.view[offset:offset + size])
        if not buffers:
            try:
                return flags, serialization.deserialize(flags, data, ())
            finally:
                self._unpin(object_id)
        import numpy
        # Each buffer is handed to pickle as a read-only uint8 array: whatever pickle builds
        # from it (numpy arrays, bytearrays) keeps that array alive as its base, so a finalizer
        # on it tells when the store memory is no longer looked at. This read holds one pin at
        # the daemon, released when the last of its buffers is collected.
        views = []
        for b in buffers:
            holder = numpy.frombuffer(b, dtype=numpy.uint8)
            holder.flags.writeable = False
            views.append(holder)
        remaining = [len(views)]
        for v in views:
            weakref.finalize(v, self._buffer_released, object_id, remaining)
        try:
            value = serialization.deserialize(flags, data, views)
        finally:
            del views, buffers
        return flags, value

    def _buffer_released(self, object_id, remaining):
        # A weakref finalizer: it may run inside any lock of this thread, so it takes none and
        # hands the work to the I/O thread.
        self.core.post(self._release_buffer, object_id, remaining)

    def _release_buffer(self, object_id, remaining):
        with self._lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        self._unpin(object_id)

    def _unpin(self, object_id):
        try:
            self.core.transport.send(self.daemon, wire.OBJ_UNPIN, ([object_id],))
        except Exception:
            pass   # shutting down: the daemon drops our pins when we go

    def close(self):
        self.region.close()
