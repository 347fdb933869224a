"""Owner-side reference counting, as a plain object with no sockets.

Each process keeps one table. For every object it knows it counts
  local   ObjectRef instances alive in this process,
  holds   other reasons to keep it: arguments of tasks this process submitted that have not
          finished, and values this process owns that contain it,
and, for objects it owns, a signed count per borrower process. A process that gets a ref it
does not own registers as a borrower with the owner (ADD_BORROWER) and deregisters once its
own local + holds reach zero (REMOVE_BORROWER, with the number of registrations it made or
that were made for it). The owner frees an object when its own counts are zero and every
borrower's count is zero. Counts are signed because a removal can overtake an addition that
came from a different process; a free needs every count at zero, so that cannot free early.

Messages leave through three callbacks given by the process: borrow(owner, id, n),
unborrow(owner, id, n), free(id). They are called outside the lock.

ObjectRef.__del__ only queues (drop_local_later): the garbage collector runs finalizers in
whatever thread allocates at that moment, possibly one that holds this table's lock or the
runtime's, so a finalizer that took a lock could deadlock its own thread. The process's I/O
thread calls drain_dropped() after `wake` tells it there is something to do.
"""
import collections
import os
import sys
import threading


def record_sites_from_env():
    """ZRAY_RECORD_REF_CREATION_SITES=1 (or Ray's RAY_record_ref_creation_sites=1)."""
    for name in ("ZRAY_RECORD_REF_CREATION_SITES", "RAY_record_ref_creation_sites"):
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes"):
            return True
    return False


_ZRAY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def user_call_site():
    """"file:line:function" of the innermost frame outside zray's own package."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_ZRAY_DIR):
        frame = frame.f_back
    if frame is None:
        return "(zray internal)"
    code = frame.f_code
    return f"{code.co_filename}:{frame.f_lineno}:{code.co_name}"


class _Entry:
    __slots__ = ("local", "holds", "owner", "owned", "borrowers", "registrations", "contained")

    def __init__(self, owner, owned):
        self.local = 0
        self.holds = 0
        self.owner = owner
        self.owned = owned
        self.borrowers = None       # owned: {address: signed count}
        self.registrations = 0      # borrowed: how many times the owner counted us
        self.contained = None       # ids of refs inside this object's value that it keeps alive


class _Reading(threading.local):
    owner = None     # the owner of the value this thread is deserializing (a borrowed one)


class ReferenceTable:
    def __init__(self, my_address, borrow, unborrow, free, wake=None, forward=None):
        self.my_address = my_address
        self._borrow = borrow
        self._forward = forward     # forward(owner, id, borrower, n): an ADD_BORROWER passed on
        self.reading = _Reading()   # set by the reader around deserializing a borrowed value
        self._unborrow = unborrow
        self._free = free
        self._entries = {}
        self._lock = threading.Lock()
        self._dropped = collections.deque()
        self._wake = wake or (lambda: None)
        # Where each owned ref was made (list_objects' call_site), only when asked for: the
        # walk up the stack costs about a microsecond per frame on every put and submit.
        self.sites = {}
        self._record_sites = record_sites_from_env()

    # -- creation --------------------------------------------------------------------------
    def add_owned(self, object_id, contained=None):
        """Register an object this process owns (a put, or a return of a task it submitted)."""
        with self._lock:
            entry = self._entries.get(object_id)
            if entry is None:
                entry = self._entries[object_id] = _Entry(self.my_address, True)
                if self._record_sites:
                    self.sites[object_id] = user_call_site()
            if contained:
                self._hold_locked(contained)
                entry.contained = (entry.contained or []) + [r for r, _ in contained]

    def set_contained(self, object_id, contained, registered_for_us, pre_held=False):
        """The value of our object `object_id` holds these refs [(id, owner)]; keep them alive.

        `registered_for_us` says the sender already counted us as a borrower of each one.
        `pre_held`: the value came from this very process (a task it ran for itself), which
        took a hold on each ref it owns when it sent the value (executor.py); those holds are
        taken over here instead of adding new ones.
        """
        with self._lock:
            entry = self._entries.get(object_id)
            mine_held = [oid for oid, owner in contained if pre_held and owner == self.my_address]
            if entry is None:
                # The object was freed before its value arrived: nothing will read those refs.
                if registered_for_us:
                    pending = [(oid, owner) for oid, owner in contained if owner != self.my_address]
                else:
                    pending = []
                dropped = True
            else:
                dropped = False
                for oid, owner in contained:
                    inner = self._entry_locked(oid, owner)
                    if not (pre_held and owner == self.my_address):
                        inner.holds += 1
                    if registered_for_us and not inner.owned:
                        inner.registrations += 1
                entry.contained = (entry.contained or []) + [oid for oid, _ in contained]
        if dropped:
            for oid, owner in pending:
                self._unborrow(owner, oid, 1)
            if mine_held:
                self.release(mine_held)

    # -- local refs ------------------------------------------------------------------------
    def add_local(self, object_id, owner):
        with self._lock:
            entry = self._entries.get(object_id)
            if entry is None:
                entry = self._entries[object_id] = _Entry(owner, owner == self.my_address)
            entry.local += 1

    def remove_local(self, object_id):
        with self._lock:
            entry = self._entries.get(object_id)
            if entry is None:
                return
            entry.local -= 1
            actions = self._maybe_release_locked(object_id, entry)
        if actions:
            self._run(actions)

    def drop_local_later(self, object_id):
        """An ObjectRef died (called from __del__): takes no lock, only queues."""
        was_empty = not self._dropped
        self._dropped.append(object_id)
        if was_empty:
            self._wake()       # one wake per batch: 10k refs dying at once cost one syscall

    def drain_dropped(self):
        """Apply the queued drops (from one thread that holds no lock)."""
        dropped = self._dropped
        while dropped:
            try:
                object_id = dropped.popleft()
            except IndexError:
                return
            self.remove_local(object_id)

    def has_dropped(self):
        return bool(self._dropped)

    def on_deserialized(self, object_id, owner, through_holder=False):
        """A ref arrived inside a value; borrow it from its owner unless we already do.

        `through_holder`: when the value is another process's object (`reading.owner`), the
        registration goes to that holder, which passes it on to the owner. The holder keeps the
        ref alive until we release its object, and our release reaches it after the
        registration (one channel), so the owner hears of us before the holder lets go. Sent
        straight to the owner, it could arrive after the holder's release and the owner would
        free the object under us."""
        with self._lock:
            entry = self._entries.get(object_id)
            if entry is None or entry.owned or entry.registrations:
                return
            entry.registrations = 1
        holder = self.reading.owner if through_holder else None
        if holder is not None and self._forward is not None and holder not in (
                owner, self.my_address):
            self._borrow(holder, object_id, 1)
        else:
            self._borrow(owner, object_id, 1)

    # -- holds -----------------------------------------------------------------------------
    def hold(self, refs):
        """Keep [(id, owner)] alive, e.g. while a task that takes them is pending."""
        with self._lock:
            self._hold_locked(refs)

    def release(self, object_ids):
        actions = []
        with self._lock:
            for oid in object_ids:
                entry = self._entries.get(oid)
                if entry is not None:
                    entry.holds -= 1
                    actions.extend(self._maybe_release_locked(oid, entry))
        if actions:
            self._run(actions)

    # -- borrowers (owner side) ------------------------------------------------------------
    def add_borrower(self, object_id, borrower, count):
        self._adjust_borrower(object_id, borrower, count)

    def remove_borrower(self, object_id, borrower, count):
        self._adjust_borrower(object_id, borrower, -count)

    def _adjust_borrower(self, object_id, borrower, delta):
        forward_to, actions = None, ()
        with self._lock:
            entry = self._entries.get(object_id)
            if entry is None:
                return
            if not entry.owned:
                # A registration sent through us (on_deserialized): pass it on to the owner.
                if delta > 0 and self._forward is not None:
                    forward_to = entry.owner
            else:
                if entry.borrowers is None:
                    entry.borrowers = {}
                n = entry.borrowers.get(borrower, 0) + delta
                if n:
                    entry.borrowers[borrower] = n
                else:
                    entry.borrowers.pop(borrower, None)
                actions = self._maybe_release_locked(object_id, entry)
        if forward_to is not None:
            self._forward(forward_to, object_id, borrower, delta)
        if actions:
            self._run(actions)

    def drop_borrower_everywhere(self, borrower):
        """A borrower process died: forget what it held."""
        actions = []
        with self._lock:
            for oid, entry in list(self._entries.items()):
                if entry.borrowers and borrower in entry.borrowers:
                    del entry.borrowers[borrower]
                    actions.extend(self._maybe_release_locked(oid, entry))
        if actions:
            self._run(actions)

    # -- queries ---------------------------------------------------------------------------
    def known_addresses(self):
        """Every owner and borrower address this table refers to."""
        with self._lock:
            out = {e.owner for e in self._entries.values() if e.owner}
            for e in self._entries.values():
                if e.borrowers:
                    out.update(e.borrowers)
        return out

    def owner_of(self, object_id):
        """The owner of a ref this process holds, or None when it holds none."""
        entry = self._entries.get(object_id)
        return entry.owner if entry is not None else None

    def __contains__(self, object_id):
        return object_id in self._entries

    def __len__(self):
        return len(self._entries)

    def counts(self, object_id):
        entry = self._entries.get(object_id)
        if entry is None:
            return None
        return {"local": entry.local, "holds": entry.holds, "owned": entry.owned,
                "borrowers": dict(entry.borrowers or {}), "registrations": entry.registrations}

    def snapshot(self):
        """[(object_id, owner, owned, local, holds, captured)] of every ref this table knows
        (the state API's list_objects); captured: a value this process knows contains it."""
        with self._lock:
            captured = set()
            for entry in self._entries.values():
                if entry.contained:
                    captured.update(entry.contained)
            return [(oid, e.owner, e.owned, e.local, e.holds, oid in captured)
                    for oid, e in self._entries.items()]

    def owned_ids(self):
        with self._lock:
            return [oid for oid, e in self._entries.items() if e.owned]

    # -- internals -------------------------------------------------------------------------
    def _entry_locked(self, object_id, owner):
        entry = self._entries.get(object_id)
        if entry is None:
            entry = self._entries[object_id] = _Entry(owner, owner == self.my_address)
        return entry

    def _hold_locked(self, refs):
        for oid, owner in refs:
            self._entry_locked(oid, owner).holds += 1

    def _maybe_release_locked(self, object_id, entry):
        if entry.local > 0 or entry.holds > 0 or entry.borrowers:
            return ()
        del self._entries[object_id]
        if self.sites:
            self.sites.pop(object_id, None)
        actions = []
        if entry.owned:
            actions.append(("free", object_id, None, 0))
        elif entry.registrations:
            actions.append(("unborrow", object_id, entry.owner, entry.registrations))
        for inner in entry.contained or ():
            inner_entry = self._entries.get(inner)
            if inner_entry is not None:
                inner_entry.holds -= 1
                actions.extend(self._maybe_release_locked(inner, inner_entry))
        return actions

    def _run(self, actions):
        for kind, oid, owner, n in actions:
            if kind == "free":
                self._free(oid)
            else:
                self._unborrow(owner, oid, n)
