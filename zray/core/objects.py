"""The process's objects: the values it owns or has asked about, and waiting for them.

A part of the runtime (core_worker.py). Its collaborators come in through the constructor:
the process's address, its reference table, `send(address, type, payload, frames)`, the inbox
(to block while reading it), `blocked(bool)` (a worker tells its node it waits) and
`rebuild_lost(node_id, task_id)` (the task owner runs a lost result's task again). The node's
store is attached once the process is connected (`attach_store`).

Every entry is in `entries` (object id -> ObjectEntry) under `lock`; READY is final.
"""
import concurrent.futures
import logging
import threading
import time

from .. import exceptions
from ..objects import serialization
from ..objects.ids import put_object_id, task_of
from ..objects.object_ref import ObjectRef
from ..transport import wire
from .object_entries import PENDING, READY, VALUE_INLINE, VALUE_STORED, ObjectEntry, Waiter

INLINE_MAX = 100 * 1024       # values up to this size travel inside messages
MAX_REMEMBERED_OWNERS = 100_000   # dead / checked owner addresses kept (then forgotten at once)
log = logging.getLogger("zray.core")


class Objects:
    def __init__(self, address, refs, send, inbox, blocked, rebuild_lost):
        self.address = address
        self.refs = refs
        self.send = send
        self.inbox = inbox
        self._blocked = blocked
        self.blocked = blocked     # blocked(bool): a wait elsewhere lends this worker's CPU too
        self._rebuild_lost = rebuild_lost
        self.entries = {}
        self.lock = threading.Lock()
        self.store = None
        self.node_id = None
        self._futures = None      # the pool that reads stored values for futures (as_future)
        self.daemon = None
        self._dead_owners = set()     # owners known dead (CLIENT_DIED)
        self._checked_owners = set()  # owners whose node was asked whether they live
        # A debugger's `get` step (zray.util.debug): owned results it marked, whose mark every
        # borrower hears with the value (OBJ_STATUS), and the ids whose get pauses this
        # process (the context's set, shared: core_worker.py hands it over).
        self.debugger_marked = set()
        self.debug_get_objects = set()

    def attach_store(self, store, node_id, daemon=None):
        self.store = store
        self.node_id = node_id
        self.daemon = daemon

    # -- owners that died ------------------------------------------------------------------------
    # A borrower must never wait on a dead owner. Deaths are told to every client of every node
    # (CLIENT_DIED); each is remembered here, so a get after the death fails at once, as one in
    # progress does. An owner this process first hears of may have died before it could hear
    # that (or never existed: a fabricated ref): its node is asked once (CHECK_OWNER), and
    # answers only if so.
    def owner_died(self, owner, owner_of):
        """`owner` is dead: its objects we wait for fail with OwnerDiedError, now and later."""
        dead = self._dead_owners
        if len(dead) >= MAX_REMEMBERED_OWNERS:
            dead.clear()
        dead.add(owner)
        for oid in self.orphans_of(owner, owner_of):
            self.set_error(oid, _owner_died(oid, owner))

    def owner_refused(self, owner, error, owner_of):
        """`owner` speaks another protocol version: what we wait for from it fails with that."""
        for oid in self.orphans_of(owner, owner_of):
            self.set_error(oid, error)

    def _check_owner(self, owner):
        checked = self._checked_owners
        if owner in checked or self.daemon is None:
            return
        if len(checked) >= MAX_REMEMBERED_OWNERS:
            checked.clear()
        checked.add(owner)
        try:
            self.send(self.daemon, wire.CHECK_OWNER, (owner, self.address))
        except Exception:     # logged by send(); the owner's own answer may still come
            pass

    # -- owned values ----------------------------------------------------------------------------
    def put(self, value, task_id, index):
        if isinstance(value, ObjectRef):
            raise TypeError("Calling put on an ObjectRef is not allowed; pass the ref itself instead")
        sobj = serialization.serialize(value)
        object_id = put_object_id(task_id, index)
        self.store_owned(object_id, sobj)
        return ObjectRef(object_id, self.address)

    def store_owned(self, object_id, sobj):
        """Record an owned object with its value: inline if small, else in the node store."""
        contained = [(r._id, r._owner) for r in sobj.contained_refs]
        entry = ObjectEntry(owned=True)
        if sobj.total_size <= INLINE_MAX:
            entry.kind = VALUE_INLINE
            entry.inline = bytes(sobj.to_bytes())
        else:
            self.store.put(object_id, sobj, self.address)
            entry.kind = VALUE_STORED
            entry.node = self.node_id
        entry.state = READY
        with self.lock:
            self.entries[object_id] = entry
        self.refs.add_owned(object_id, contained)
        return entry

    def add_pending(self, object_ids):
        """Entries for results this process owns and will receive."""
        with self.lock:
            for oid in object_ids:
                self.entries[oid] = ObjectEntry(owned=True)
        for oid in object_ids:
            self.refs.add_owned(oid)

    def add_ready_inline(self, object_id, layout):
        entry = ObjectEntry(owned=True)
        entry.kind = VALUE_INLINE
        entry.inline = layout
        entry.state = READY
        with self.lock:
            self.entries[object_id] = entry
        self.refs.add_owned(object_id)

    def forget(self, object_id):
        if self.debugger_marked:
            self.debugger_marked.discard(object_id)
        with self.lock:
            return self.entries.pop(object_id, None)

    def stored_elsewhere(self, object_ids):
        """Whether one of these (owned, finished) results lives in another node's store."""
        here = self.node_id
        entries = self.entries
        for oid in object_ids:
            entry = entries.get(oid)
            if entry is not None and entry.kind == VALUE_STORED and entry.node not in (None, here):
                return True
        return False

    def any_referenced(self, object_ids):
        return any(oid in self.entries for oid in object_ids)

    def lost_on(self, node_id):
        """Task ids of owned results stored on node_id."""
        with self.lock:
            return {task_of(oid) for oid, e in self.entries.items()
                    if e.owned and e.state == READY and e.kind == VALUE_STORED and e.node == node_id}

    def reset_lost(self, object_ids, node_id):
        """Results lost with node_id become pending again (their task runs again)."""
        with self.lock:
            for oid in object_ids:
                entry = self.entries.get(oid)
                if entry is not None and entry.node == node_id:
                    entry.state, entry.kind, entry.node = PENDING, None, None

    def orphans_of(self, owner, owner_of):
        """Borrowed objects still pending whose owner is `owner` (it died)."""
        with self.lock:
            return [oid for oid, e in self.entries.items()
                    if not e.owned and e.state == PENDING
                    and (e.owner == owner or owner_of(oid) == owner)]

    # -- readiness -------------------------------------------------------------------------------
    def entry_for(self, ref, request=True):
        """The entry of a ref, creating (and asking the owner for) borrowed ones."""
        object_id = ref._id
        with self.lock:
            entry = self.entries.get(object_id)
            if entry is None:
                entry = self.entries[object_id] = ObjectEntry(owned=ref._owner == self.address)
                if entry.owned:
                    # An owned object with no entry was freed: a ref to it should not exist.
                    entry.state = READY
                    entry.kind = VALUE_INLINE
                    entry.inline = bytes(serialization.serialize_error(exceptions.ReferenceCountingAssertionError(
                        object_id.hex(), f"Object {object_id.hex()} was already freed")).to_bytes())
            ask = request and not entry.owned and not entry.requested and entry.state == PENDING
            if ask:
                entry.requested = True
                entry.owner = ref._owner
        if ask:
            owner = ref._owner
            if owner in self._dead_owners:
                self.set_error(object_id, _owner_died(object_id, owner))
                return entry
            self._check_owner(owner)
            try:
                self.send(owner, wire.OBJ_STATUS_REQUEST, (object_id,))
            except Exception as exc:    # logged by send(): an owner we cannot reach
                self.set_error(object_id, exceptions.OwnerDiedError(
                    object_id.hex(), f"The owner of object {object_id.hex()} ({owner}) cannot "
                    f"be reached: {exc!r}"))
        return entry

    def on_ready(self, entry, callback):
        """Call callback() once entry is ready (now, if it already is)."""
        with self.lock:
            if entry.state != READY:
                if entry.callbacks is None:
                    entry.callbacks = []
                entry.callbacks.append(callback)
                return
        callback()

    def set_ready(self, object_id, kind, inline=None, frame=None, node=None):
        with self.lock:
            entry = self.entries.get(object_id)
            if entry is None or entry.state == READY:
                return entry is not None
            entry.kind = kind
            entry.inline = inline
            entry.frame = frame
            entry.node = node
            entry.state = READY
            callbacks, entry.callbacks = entry.callbacks, None
        for cb in callbacks or ():
            try:
                cb()
            except Exception:   # one bad callback must not starve the others' waiters
                log.exception("error in a callback for object %s", object_id.hex())
        return True

    def set_error(self, object_id, error):
        self.set_ready(object_id, VALUE_INLINE, inline=serialization.serialize_error(error).to_bytes())

    def wait_ready(self, refs, num_returns, timeout):
        """Indices of refs that are ready, once num_returns are or the timeout passes."""
        entries = [self.entry_for(r) for r in refs]
        self.wait_for(entries, num_returns, timeout)
        return [i for i, e in enumerate(entries) if e.state == READY]

    def wait_for(self, entries, needed, timeout):
        """Block until `needed` of the entries are ready or the timeout passes; True if they are.

        Counting and registering happen under the lock that set_ready takes, so no readiness
        is missed; the waiter's callbacks are removed again when it returns, so polling with a
        short timeout leaves nothing behind."""
        if all(e.state == READY for e in entries):
            return True        # READY is final: no lock needed to see it
        if timeout == 0 and needed >= len(entries):
            return False
        inbox = self.inbox
        event = inbox.thread_event()
        registered = []
        if needed == 1 and len(entries) == 1:
            # One ref (a synchronous call): a thread reading the inbox itself only has to look
            # at the entry; a callback to set its event is needed only if another one reads.
            entry = entries[0]
            callback = event.set

            def done():
                return entry.state == READY

            def on_event_wait():
                with self.lock:
                    if entry.state != READY:
                        if entry.callbacks is None:
                            entry.callbacks = []
                        entry.callbacks.append(callback)
                        registered.append(entry)
        else:
            waiter = Waiter(0, event)
            callback = waiter.one_ready
            with self.lock:
                missing = needed - sum(1 for e in entries if e.state == READY)
                if missing <= 0:
                    return True
                if timeout == 0:
                    return False
                waiter.remaining = missing
                for e in entries:
                    if e.state != READY:
                        if e.callbacks is None:
                            e.callbacks = []
                        e.callbacks.append(callback)
                        registered.append(e)
            done = waiter.done
            on_event_wait = None
        deadline = None if timeout is None else time.monotonic() + timeout
        self._blocked(True)
        try:
            return inbox.block_until(done, event, deadline, on_event_wait)
        finally:
            self._blocked(False)
            if registered:
                with self.lock:
                    for e in registered:
                        if e.state != READY and e.callbacks:
                            try:
                                e.callbacks.remove(callback)
                            except ValueError:
                                pass

    # -- values ----------------------------------------------------------------------------------
    def get(self, refs, timeout=None):
        entries = [self.entry_for(r) for r in refs]
        if not self.wait_for(entries, len(entries), timeout):
            n = sum(1 for e in entries if e.state != READY)
            if n:
                raise exceptions.GetTimeoutError(
                    f"Get timed out: {n} of {len(refs)} objects not ready after {timeout}s")
        return [self.value_of(r._id, e) for r, e in zip(refs, entries)]

    def value_of(self, object_id, entry):
        # Refs inside a borrowed value register through its owner (ReferenceTable.on_deserialized).
        reading = self.refs.reading
        outer, reading.owner = reading.owner, (None if entry.owned
                                               else self.refs.owner_of(object_id))
        try:
            return self._value_of(object_id, entry)
        finally:
            reading.owner = outer

    def _value_of(self, object_id, entry):
        if entry.kind == VALUE_INLINE:
            flags, data, buffers = serialization.parse(entry.inline)
            value = serialization.deserialize(flags, data, buffers)
        else:
            node = entry.node
            try:
                flags, value = self.store.read(object_id, node)
            except exceptions.ObjectLostError:
                # Its node died (maybe not yet declared dead): run the task again if we can,
                # unless that is already under way; a borrower asks the owner to.
                if not entry.owned:
                    return self._value_after_loss(object_id, entry, node)
                rebuilding = entry.state != READY or entry.node != node
                if not (rebuilding or self._rebuild_lost(node, task_of(object_id))):
                    raise
                self.wait_for([entry], 1, None)
                return self.value_of(object_id, entry)
        if flags & serialization.FLAG_ERROR:
            if isinstance(value, exceptions.RayTaskError):
                raise value.as_instanceof_cause()
            raise value
        return value

    def _value_after_loss(self, object_id, entry, lost_node):
        """A borrowed object's copy was lost with its node: the owner rebuilds it from lineage
        (or says it cannot), and we read it where it is now."""
        owner = self.refs.owner_of(object_id)
        if owner is None:
            raise exceptions.ObjectLostError(object_id.hex(), (
                f"Object {object_id.hex()} was lost with node {lost_node}"))
        with self.lock:
            if entry.state == READY and entry.node == lost_node:
                entry.state, entry.kind, entry.node = PENDING, None, None
        self.send(owner, wire.OBJ_STATUS_REQUEST, (object_id, lost_node))
        self.wait_for([entry], 1, None)      # the owner's death ends this too (OwnerDiedError)
        if entry.kind == VALUE_STORED and entry.node == lost_node:
            raise exceptions.ObjectLostError(object_id.hex(), (
                f"Object {object_id.hex()} was lost with node {lost_node}"))
        return self.value_of(object_id, entry)

    def as_future(self, ref):
        """A concurrent Future of the ref's value (ObjectRef.future(), `await ref`). It is
        completed by the readiness callback, on whichever thread reads the inbox: an inline
        value is decoded there at once; a stored one needs a pin, a request to the node that
        the reading thread cannot wait for itself, so it is read on the one small pool."""
        fut = concurrent.futures.Future()
        entry = self.entry_for(ref)

        def complete():    # holds `ref`: the value must outlive a temporary ref.future()
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(self.value_of(ref._id, entry))
            except BaseException as exc:
                fut.set_exception(exc)

        def ready():
            if entry.kind == VALUE_INLINE:
                complete()
            else:
                self._future_pool().submit(complete)
        self.on_ready(entry, ready)
        return fut

    def _future_pool(self):
        pool = self._futures
        if pool is None:
            with self.lock:
                if self._futures is None:
                    self._futures = concurrent.futures.ThreadPoolExecutor(
                        4, thread_name_prefix="zray-future")
                pool = self._futures
        return pool

    # -- owner side: answering borrowers ---------------------------------------------------------
    def on_status_request(self, sender, payload, frames):
        object_id = payload[0]
        lost_node = payload[1] if len(payload) > 1 else None    # a borrower lost its copy there
        with self.lock:
            entry = self.entries.get(object_id)
        if entry is not None and lost_node is not None and entry.state == READY \
                and entry.kind == VALUE_STORED and entry.node == lost_node:
            if not self._rebuild_lost(lost_node, task_of(object_id)):
                entry = None
                reason = f"it was lost with node {lost_node} and its task cannot run again"
        else:
            reason = "it was freed by its owner"
        if entry is None:
            err = exceptions.ObjectLostError(object_id.hex(), f"Object {object_id.hex()}: {reason}")
            layout = serialization.serialize_error(err).to_bytes()
            self.send(sender, wire.OBJ_STATUS, (object_id, VALUE_INLINE, None), [layout])
            return

        def reply():
            # Read when the value is ready: a `get` step marks its result just before that.
            marked = (True,) if object_id in self.debugger_marked else ()
            if entry.kind == VALUE_INLINE:
                self.send(sender, wire.OBJ_STATUS, (object_id, VALUE_INLINE, None, *marked),
                          [entry.inline])
            else:
                self.send(sender, wire.OBJ_STATUS, (object_id, VALUE_STORED, entry.node, *marked))
        self.on_ready(entry, reply)

    def on_status(self, sender, payload, frames):
        object_id, kind, node, *debugger_marked = payload
        if debugger_marked:     # the result of a debugger's `get` step: our get of it pauses
            self.debug_get_objects.add(object_id)
        if kind == VALUE_INLINE:
            self.set_ready(object_id, kind, inline=frames[0].buffer, frame=frames[0])
        else:
            self.set_ready(object_id, kind, node=node)


def _owner_died(object_id, owner):
    return exceptions.OwnerDiedError(object_id.hex(), (
        f"The owner of object {object_id.hex()} ({owner}) died, or never existed, so its value "
        "cannot be found"))
