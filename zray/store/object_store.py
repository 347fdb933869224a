"""The daemon's index of the objects in its region, with spilling. No sockets here.

Objects are created (space allocated), written by the creating process straight into shared
memory, then sealed. Readers pin an object while they hold views into it; a pinned object is
never moved. When an allocation does not fit, sealed unpinned objects make room, least recently
used first: a primary copy is spilled to a file in the session directory and restored on the next
pin; a secondary copy (pulled from another node, `copy_from` set) is simply dropped, since it can
be pulled again.

With a `spiller` (spill.py's SpillWorker, the daemon's case) the writes happen on its thread:
an allocation that does not fit starts the spills that make room and raises SpillPending when
its caller can wait (a client's create: the service answers it when the spills are done); a
caller that cannot wait, or an allocation for which nothing can be spilled (every object
pinned), gets a file-backed object in the spill directory (spill.FallbackFile) instead of an
error. Without a spiller (unit tests) spills are written synchronously, as they come.
"""
import collections
import logging
import os

from ..exceptions import (ObjectAlreadyStoredError, ObjectLostError, ObjectStoreFullError,
                          ObjectStorePinnedFullError, OutOfDiskError)
from .spill import (SEGMENT_MASK, SPILL_CLIENT, FallbackFile, fallback_path, segment_of,
                    write_file)

log = logging.getLogger("zray.store")


class SpillPending(Exception):
    """No room yet, but spills under way will make some: ask again when they are done."""


class _Object:
    __slots__ = ("offset", "size", "sealed", "pins", "spill_path", "owner", "free_requested",
                 "copy_from")

    def __init__(self, offset, size, owner, copy_from=None):
        self.offset = offset
        self.size = size
        self.sealed = False
        self.pins = {}
        self.spill_path = None
        self.owner = owner
        self.free_requested = False
        self.copy_from = copy_from      # node_id of the primary, for a secondary copy


class ObjectStore:
    def __init__(self, region_view, capacity, allocator, spill_dir, spiller=None,
                 fallback=True):
        self.view = region_view
        self.capacity = capacity
        self.allocator = allocator
        self.spill_dir = spill_dir
        self.spiller = spiller
        self.fallback_enabled = fallback
        self.fallback = {}                      # segment -> FallbackFile
        self._next_segment = 1
        self.fallback_allocations = 0
        self.spilling = {}                      # object_id -> size: written by the spiller now
        self.spill_failures = 0
        self.last_spill_error = None            # OutOfDiskError of the last failed spill
        self.objects = {}
        self._lru = collections.OrderedDict()   # sealed, unpinned, in memory: spill candidates
        self.spilled_bytes = 0
        self.spill_count = 0
        self.restore_count = 0
        self.evicted_copies = 0

    # -- the life of an object ---------------------------------------------------------------
    def buffer(self, offset, length):
        """The bytes at a (virtual) offset: the region's, or a file-backed object's."""
        segment = segment_of(offset)
        if segment == 0:
            return self.view[offset:offset + length]
        start = offset & SEGMENT_MASK
        return self.fallback[segment].view[start:start + length]

    def create(self, object_id, size, owner, client, copy_from=None, can_wait=False):
        """The offset of a new object's space. With can_wait, SpillPending when spills under
        way will make room (ask again once they are done)."""
        existing = self.objects.get(object_id)
        if existing is not None:
            if existing.sealed and not existing.free_requested:
                raise ObjectAlreadyStoredError(f"object {object_id.hex()} is already stored")
            raise ValueError(f"object {object_id.hex()} is being written or freed")
        if size > self.capacity:
            raise ObjectStoreFullError(
                f"Object of {size} bytes is larger than the object store "
                f"({self.capacity} bytes, object_store_memory); it cannot be stored")
        offset = self._allocate(size, can_wait)
        obj = self.objects[object_id] = _Object(offset, size, owner, copy_from)
        obj.pins[client] = 1    # the creator writes through it until it seals
        return offset

    def seal(self, object_id, client):
        obj = self.objects.get(object_id)
        if obj is None:
            return
        obj.sealed = True
        self._unpin(object_id, obj, client)

    def abort(self, object_id, client):
        """Drop an object `client` created and never sealed (a pull that failed)."""
        obj = self.objects.get(object_id)
        if obj is not None and not obj.sealed and client in obj.pins:
            self._delete(object_id, obj)

    def contains(self, object_id):
        """True if the object is here (in memory or spilled) or being written here."""
        return object_id in self.objects

    def pin(self, object_id, client):
        """(offset, size) of a sealed object, restoring it from disk if it was spilled."""
        obj = self.objects.get(object_id)
        if obj is None or not obj.sealed or obj.free_requested:
            raise ObjectLostError(object_id.hex(), f"Object {object_id.hex()} is not in the object store")
        if obj.offset is None:
            self._restore(object_id, obj)
        obj.pins[client] = obj.pins.get(client, 0) + 1
        self._lru.pop(object_id, None)
        return obj.offset, obj.size

    def unpin(self, object_id, client):
        obj = self.objects.get(object_id)
        if obj is not None:
            self._unpin(object_id, obj, client)

    def free(self, object_id):
        """The owner says no reference remains; the space goes back once no reader pins it."""
        obj = self.objects.get(object_id)
        if obj is None:
            return
        obj.free_requested = True
        if not obj.pins:
            self._delete(object_id, obj)

    def client_gone(self, client):
        """A process exited: drop its pins, and what it created but never sealed."""
        for oid, obj in list(self.objects.items()):
            if client in obj.pins:
                del obj.pins[client]
                if not obj.sealed:
                    self._delete(oid, obj)
                elif not obj.pins:
                    self._after_unpinned(oid, obj)

    def list_objects(self):
        return [{"object_id": oid.hex(), "size": obj.size, "owner": obj.owner,
                 "state": "SPILLED" if obj.offset is None else ("SEALED" if obj.sealed else "CREATING"),
                 "pinned_by": len(obj.pins), "copy_from": obj.copy_from}
                for oid, obj in self.objects.items()]

    def stats(self):
        in_memory = sum(1 for o in self.objects.values() if o.offset is not None)
        return {
            "capacity": self.capacity,
            "used": self.allocator.used,
            "num_objects": len(self.objects),
            "num_in_memory": in_memory,
            "num_spilled": len(self.objects) - in_memory,
            "spilled_bytes_total": self.spilled_bytes,
            "spill_count": self.spill_count,
            "restore_count": self.restore_count,
            "num_copies": sum(1 for o in self.objects.values() if o.copy_from is not None),
            "evicted_copies": self.evicted_copies,
            "num_fallback": len(self.fallback),
            "fallback_bytes": sum(f.size for f in self.fallback.values()),
            "fallback_allocations": self.fallback_allocations,
            "spills_in_progress": len(self.spilling),
            "spill_failures": self.spill_failures,
        }

    def close(self):
        if self.spiller is not None:
            self.spiller.close()
        for oid, obj in list(self.objects.items()):
            if obj.spill_path:
                _unlink(obj.spill_path)
        for segment in list(self.fallback):
            self.fallback.pop(segment).close()
        for object_id in self.spilling:
            _unlink(os.path.join(self.spill_dir, object_id.hex()))
        self.objects.clear()
        self._lru.clear()

    # -- spills written by the spiller's thread ----------------------------------------------------
    def handle_spilled(self, object_id, path, error):
        """The spiller finished writing `object_id` (error: its OSError, or None)."""
        if self.spilling.pop(object_id, None) is None:
            _unlink(path)
            return
        obj = self.objects.get(object_id)
        if obj is None:
            _unlink(path)
            return
        obj.pins.pop(SPILL_CLIENT, None)
        if error is not None:
            self.spill_failures += 1
            self.last_spill_error = OutOfDiskError(
                f"Cannot spill objects to {self.spill_dir}: writing {obj.size} bytes failed "
                f"({error.strerror or error}); nothing was lost, and spilling is tried again "
                "on the next allocation")
            log.warning("%s", self.last_spill_error)
            if not obj.pins:
                if obj.free_requested:
                    self._delete(object_id, obj)
                else:      # still first to spill
                    self._lru[object_id] = None
                    self._lru.move_to_end(object_id, last=False)
            return
        if obj.pins or obj.free_requested:
            # Read meanwhile (it stays in memory: it returns to the candidates when unpinned)
            # or freed meanwhile: the file is not needed.
            _unlink(path)
            if not obj.pins:
                self._delete(object_id, obj)
            return
        self.allocator.free(obj.offset)
        obj.offset = None
        obj.spill_path = path
        self.spilled_bytes += obj.size
        self.spill_count += 1

    # -- internals -----------------------------------------------------------------------------
    def _unpin(self, object_id, obj, client):
        n = obj.pins.get(client, 0) - 1
        if n > 0:
            obj.pins[client] = n
            return
        obj.pins.pop(client, None)
        if not obj.pins:
            self._after_unpinned(object_id, obj)

    def _after_unpinned(self, object_id, obj):
        if obj.free_requested:
            self._delete(object_id, obj)
        elif obj.sealed and obj.offset is not None and segment_of(obj.offset) == 0:
            self._lru[object_id] = None
            self._lru.move_to_end(object_id)

    def _delete(self, object_id, obj):
        self.objects.pop(object_id, None)
        self._lru.pop(object_id, None)
        if obj.offset is not None:
            segment = segment_of(obj.offset)
            if segment == 0:
                self.allocator.free(obj.offset)
            else:
                self.fallback.pop(segment).close()
        if obj.spill_path:
            _unlink(obj.spill_path)

    def _allocate(self, size, can_wait=False):
        offset = self.allocator.alloc(size)
        if offset < 0 and can_wait and self.last_spill_error is not None and not self.spilling:
            # The spill made for this (waiting) create failed: it gets the error; the next
            # allocation tries spilling again.
            error, self.last_spill_error = self.last_spill_error, None
            raise error
        starting = 0           # bytes of spills started for this allocation
        while offset < 0:
            if not self._lru:
                break
            victim_id = next(iter(self._lru))
            victim = self.objects[victim_id]
            if victim.copy_from is not None:
                del self._lru[victim_id]
                self._delete(victim_id, victim)     # a secondary copy: pulled again if needed
                self.evicted_copies += 1
            elif self.spiller is None:
                self._spill(victim_id, victim, size)
                del self._lru[victim_id]
            else:
                if starting >= size:
                    break      # enough is being written for this one
                del self._lru[victim_id]
                self._start_spill(victim_id, victim)
                starting += victim.size
                continue
            offset = self.allocator.alloc(size)
        if offset >= 0:
            return offset
        in_flight = sum(self.spilling.values())
        if can_wait and in_flight and self.capacity - self.allocator.used + in_flight >= size:
            raise SpillPending()
        return self._fallback_allocate(size)

    def _fallback_allocate(self, size):
        """Nothing more can be spilled: the object goes to a file of its own."""
        if not self.fallback_enabled:
            raise ObjectStorePinnedFullError(
                f"Object store is full: {size} bytes requested, {self.allocator.used} of "
                f"{self.capacity} bytes in use by objects that are being read or written "
                f"(pinned) and cannot be spilled")
        segment = self._next_segment
        self._next_segment += 1
        path = fallback_path(self.spill_dir, segment)
        try:
            self.fallback[segment] = FallbackFile(path, size)
        except OSError as exc:
            raise OutOfDiskError(
                f"Object store is full ({self.allocator.used} of {self.capacity} bytes pinned) "
                f"and a file-backed allocation of {size} bytes in {self.spill_dir} failed: "
                f"{exc.strerror or exc}") from None
        self.fallback_allocations += 1
        log.info("object store full of pinned objects: %d bytes allocated in the file %s",
                 size, path)
        return segment << 40

    def _start_spill(self, object_id, obj):
        obj.pins[SPILL_CLIENT] = 1           # neither moved nor freed until it is written
        self.spilling[object_id] = obj.size
        self.spiller.submit(object_id, self.view[obj.offset:obj.offset + obj.size],
                            os.path.join(self.spill_dir, object_id.hex()))

    def _spill(self, object_id, obj, needed):
        """Write a primary copy to disk and free its memory. A failed write (a full disk)
        leaves no partial file and the object in memory, still first to spill, so a later
        allocation tries again once there is room; the caller gets OutOfDiskError."""
        path = os.path.join(self.spill_dir, object_id.hex())
        exc = write_file(path, self.view[obj.offset:obj.offset + obj.size])
        if exc is not None:
            raise OutOfDiskError(
                f"Cannot spill objects to {self.spill_dir} to make room for {needed} bytes: "
                f"writing {obj.size} bytes failed ({exc.strerror or exc}); nothing was lost, "
                "and spilling is tried again on the next allocation") from None
        self.allocator.free(obj.offset)
        obj.offset = None
        obj.spill_path = path
        self.spilled_bytes += obj.size
        self.spill_count += 1

    def _restore(self, object_id, obj):
        offset = self._allocate(obj.size)
        try:
            with open(obj.spill_path, "rb") as f:
                f.readinto(self.buffer(offset, obj.size))
        except OSError as exc:
            if segment_of(offset) == 0:
                self.allocator.free(offset)
            else:
                self.fallback.pop(segment_of(offset)).close()
            raise ObjectLostError(object_id.hex(), f"Object {object_id.hex()} could not be "
                                  f"restored from {obj.spill_path}: {exc}") from None
        _unlink(obj.spill_path)
        obj.spill_path = None
        obj.offset = offset
        self.restore_count += 1


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
