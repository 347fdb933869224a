"""A process's access to its node's store: write a value in, read one out without copying.

Reading pins the object at the daemon; the pin lasts exactly as long as some Python object
still looks at the store's memory (a weakref finalizer on each buffer handed to pickle), so a
numpy array from `get` stays valid however long the user keeps it, and the space comes back
as soon as it is gone.
"""
import os
import threading
import time
import weakref

from ..exceptions import ObjectAlreadyStoredError, ObjectStorePinnedFullError
from ..objects import serialization
from ..transport import wire
from .region import Region
from .spill import SEGMENT_SHIFT, map_fallback

try:
    from .._native import parallel_copy as _parallel_copy
except ImportError:   # the extension is built by pip install; plain slices work meanwhile
    _parallel_copy = None

PARALLEL_COPY_MIN = 8 << 20
PIN_GRACE_S = 0.2     # how long an unused pin is kept in case the object is read again
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
        self.node_id = node_info.get("node_id")
        self.region = Region.attach(node_info["pid"], node_info["store_fd"], node_info["store_size"])
        self.spill_dir = os.path.join(node_info.get("session_dir") or "", "spill")
        self._pins = {}            # object_id -> [offset, size, uses, idle since | None]
        self.idle_pins = 0         # how many pins have no use now (read without the lock)
        self._lock = threading.Lock()

    def put(self, object_id, sobj, owner):
        """Create, fill and seal an object; raises ObjectStoreFullError when it cannot fit."""
        size = sobj.total_size
        try:
            offset = self._store_rpc(wire.OBJ_CREATE, (object_id, size, owner))
        except ObjectAlreadyStoredError:
            return      # a retry whose earlier attempt stored this result: keep that value
        sobj.write_to(self._view(offset, size), copy=_copy)
        self.core.transport.send(self.daemon, wire.OBJ_SEAL, (object_id,))

    def read(self, object_id, location=None, copy=False):
        """(flags, value) of a sealed object, zero-copy for out-of-band buffers. `location` is
        the node holding its primary copy (as its owner says); when that is another node, the
        daemon pulls a copy into this node's store first. `copy`: the buffers are copied into
        this process's memory and the pin is given back at once (a value kept for a long time
        then never pins the store)."""
        offset, size = self._acquire(object_id, location)
        flags, data, buffers = serialization.parse(self._view(offset, size))
        if copy and buffers:
            try:
                return flags, serialization.deserialize(flags, bytes(data),
                                                        [bytearray(b) for b in buffers])
            finally:
                del data, buffers
                self._release(object_id)
        if not buffers:
            try:
                return flags, serialization.deserialize(flags, data, ())
            finally:
                self._release(object_id)
        import numpy
        # Each buffer is handed to pickle as a read-only uint8 array: whatever pickle builds
        # from it (numpy arrays, bytearrays) keeps that array alive as its base, so a finalizer
        # on it tells when the store memory is no longer looked at. The read counts as one use
        # of the pin, given back when the last of its buffers is collected.
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

    def _view(self, offset, size):
        """An object's bytes: in the region, or (memory full of pinned objects) in a file of
        its own that the daemon made (store/spill.py); the mapping lives as long as the view."""
        if offset >> SEGMENT_SHIFT == 0:
            return self.region.view[offset:offset + size]
        return map_fallback(self.spill_dir, offset, size)

    # -- pins: one at the daemon per object, counted here -----------------------------------------
    def _acquire(self, object_id, location=None):
        """The object's place, pinned: asks the daemon only if this process holds no pin yet."""
        with self._lock:
            pin = self._pins.get(object_id)
            if pin is not None:
                if pin[3] is not None:
                    self.idle_pins -= 1
                pin[2] += 1
                pin[3] = None
                return pin[0], pin[1]
        if location is None or location == self.node_id:
            offset, size = self._store_rpc(wire.OBJ_PIN, (object_id,))
        else:
            # The daemon may pull the object from `location` first, however long that takes:
            # it answers with an error when the pull fails or makes no progress for its stall
            # timeout, and a dead daemon is seen by the core, so no deadline here.
            offset, size = self._store_rpc(wire.OBJ_PIN, (object_id, location), timeout=float("inf"))
        with self._lock:
            pin = self._pins.get(object_id)
            if pin is None:
                self._pins[object_id] = [offset, size, 1, None]
                return offset, size
            if pin[3] is not None:
                self.idle_pins -= 1
            pin[2] += 1          # another thread pinned it meanwhile: keep one daemon pin
            pin[3] = None
        self._send_unpin([object_id])
        return offset, size

    def _release(self, object_id):
        """One use less. The pin itself lingers for PIN_GRACE_S, so a value read again soon
        (the same array fetched in a loop) costs no round trip; sweep() gives it back."""
        with self._lock:
            pin = self._pins.get(object_id)
            if pin is None:
                return
            pin[2] -= 1
            if pin[2] <= 0 and pin[3] is None:
                pin[3] = time.monotonic()
                self.idle_pins += 1

    def _store_rpc(self, msg_type, payload, **rpc_options):
        """A create or pin; when the store is full of pinned objects, first give back our own
        idle pins, then retry for about a second while other processes give back theirs."""
        delay = 0.05
        for attempt in range(6):
            try:
                return self.core.rpc(self.daemon, msg_type, payload, **rpc_options)
            except ObjectStorePinnedFullError:
                if attempt == 5:
                    raise
                self.sweep(now=float("inf"))
                time.sleep(delay)
                delay *= 2

    def sweep(self, now=None):
        """Give back pins unused for PIN_GRACE_S (called by the I/O loop)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            stale = [oid for oid, pin in self._pins.items()
                     if pin[3] is not None and now - pin[3] >= PIN_GRACE_S]
            for oid in stale:
                del self._pins[oid]
            self.idle_pins -= len(stale)
        if stale:
            self._send_unpin(stale)

    def _buffer_released(self, object_id, remaining):
        # A weakref finalizer: it may run inside any lock of this thread, so it takes none and
        # hands the work to the I/O thread.
        self.core.post(self._release_buffer, object_id, remaining)

    def _release_buffer(self, object_id, remaining):
        with self._lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        self._release(object_id)

    def _send_unpin(self, object_ids):
        try:
            self.core.transport.send(self.daemon, wire.OBJ_UNPIN, (object_ids,))
        except Exception:
            pass   # shutting down: the daemon drops our pins when we go

    def close(self):
        self.region.close()
