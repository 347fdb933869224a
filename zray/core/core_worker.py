"""CoreWorker: the zray runtime inside one process, a driver or a worker.

It owns the objects the process creates (their values or locations, and their reference
counts), submits tasks to the node daemon and turns their results into values, and answers
other processes that borrow its objects. One thread at a time reads the inbox and runs the
message handlers: the I/O thread, or a thread that blocks in get/rpc and reads its own reply
(inbox.py). Every thread sends directly (the transport is thread-safe). The owner's side of
tasks is task_owner.py, of actor calls actor_caller.py; both are mixed in here.
"""
import collections
import itertools
import os
import sys
import threading
import time

from .. import exceptions
from ..objects import serialization
from ..objects.ids import TaskIdFactory, put_object_id, task_of
from ..objects.object_ref import ObjectRef, set_runtime
from ..objects.reference_table import ReferenceTable
from ..store.client import StoreClient
from ..transport import wire
from ..transport.zmq_transport import Transport
from .actor_caller import ActorCaller
from .inbox import Inbox
from .task_owner import INLINE_MAX, TaskOwner
from .object_entries import PENDING, READY, VALUE_INLINE, VALUE_STORED, ObjectEntry, Waiter



class CoreWorker(Inbox, TaskOwner, ActorCaller):
    def __init__(self, kind, session_dir, daemon_address, job_id, worker_id=None,
                 namespace=None, driver_address=None, mesh=None):
        self.kind = kind                    # "driver" or "worker"
        self.session_dir = session_dir
        self.daemon = daemon_address
        self.job_id = job_id
        self.worker_id = worker_id or os.urandom(8).hex()
        self.namespace = namespace
        self.address = f"ipc://{session_dir}/sock/{kind[0]}{self.worker_id[:12]}"
        self.transport = Transport(self.address)
        if mesh is not None:
            # On a node in a mesh, peers on other hosts must reach us too (transport/address.py).
            self.address = self.transport.become_mesh_process(
                mesh["ip"], _curve_keys(mesh["secret_file"]), mesh["node_id"])
        self.refs = ReferenceTable(self.address, self._send_borrow, self._send_unborrow, self._free_owned,
                                   wake=self._wake_for_drops)
        self.task_ids = TaskIdFactory()
        self.entries = {}
        self.pending_tasks = {}
        self.lineage = {}       # task_id -> finished _PendingTask whose results live on other nodes
        self.generators = {}
        self.lock = threading.Lock()
        self._rpc_ids = itertools.count(1)
        self._rpcs = {}
        self._posted = collections.deque()   # finalizers' work; popped one by one (any thread)
        self._put_counter = itertools.count(1)
        self._exported = set()
        self.current_task_id = self.task_ids.next()   # the driver's own "task", for put ids
        self.current_task_name = None
        self.handlers = self._base_handlers()
        self._init_actor_caller()
        self.dead_reason = None
        self._running = True
        self.store = None
        self.node_info = None
        self.driver_address = driver_address
        self.printed_warnings = set()
        self._init_inbox()
        self.io_thread = threading.Thread(target=self._io_loop, name="zray-io", daemon=True)
        self.io_thread.start()
        set_runtime(self)

    def connect(self, pid):
        self.node_info = self.rpc(self.daemon, wire.REGISTER_CLIENT, (
            self.kind, self.address, pid, self.job_id, self.worker_id, self.driver_address))
        self.store = StoreClient(self, self.node_info)
        return self.node_info

    def _base_handlers(self):
        return {
            wire.REGISTERED: self._on_reply,
            wire.OBJ_CREATED: self._on_reply,
            wire.OBJ_PINNED: self._on_reply,
            wire.FUNCTION: self._on_reply,
            wire.CLUSTER_INFO_REPLY: self._on_reply,
            wire.STORE_STATS_REPLY: self._on_reply,
            wire.TASK_RESULT: self._on_task_result,
            wire.TASK_FAILED: self._on_task_failed,
            wire.GENERATOR_ITEM: self._on_generator_item,
            wire.OBJ_STATUS_REQUEST: self._on_status_request,
            wire.OBJ_STATUS: self._on_status,
            wire.ADD_BORROWER: lambda s, p, f: self.refs.add_borrower(*p),
            wire.REMOVE_BORROWER: lambda s, p, f: self.refs.remove_borrower(*p),
            wire.LOG_LINES: self._on_log_lines,
            wire.WARNING: self._on_warning,
            wire.CLIENT_DIED: self._on_client_died,
            wire.NODE_DIED: self._on_node_died,
        }

    # -- reference counting callbacks ----------------------------------------------------------
    def _send_borrow(self, owner, object_id, n):
        self._safe_send(owner, wire.ADD_BORROWER, (object_id, self.address, n))

    def _send_unborrow(self, owner, object_id, n):
        with self.lock:
            self.entries.pop(object_id, None)
        self._safe_send(owner, wire.REMOVE_BORROWER, (object_id, self.address, n))

    def _free_owned(self, object_id):
        if object_id in self.owned_actors:
            self._actor_out_of_scope(object_id)
        with self.lock:
            entry = self.entries.pop(object_id, None)
        if entry is not None and entry.kind == VALUE_STORED:
            self._safe_send(self.daemon, wire.OBJ_FREE, ([object_id], [entry.node]))
        if self.lineage:
            self._drop_lineage(object_id)

    def _safe_send(self, address, msg_type, payload, frames=()):
        try:
            self.transport.send(address, msg_type, payload, frames)
        except Exception:
            pass   # shutting down

    # -- objects: put ----------------------------------------------------------------------------
    def put(self, value, _owner_hint=None):
        if isinstance(value, ObjectRef):
            raise TypeError("Calling put on an ObjectRef is not allowed; pass the ref itself instead")
        sobj = serialization.serialize(value)
        object_id = put_object_id(self.current_task_id, next(self._put_counter))
        self._store_owned(object_id, sobj)
        return ObjectRef(object_id, self.address)

    def _store_owned(self, object_id, sobj):
        """Record an owned object with its value: inline if small, else in the node store."""
        contained = [(r._id, r._owner) for r in sobj.contained_refs]
        entry = ObjectEntry(owned=True)
        if sobj.total_size <= INLINE_MAX:
            entry.kind = VALUE_INLINE
            entry.inline = bytes(sobj.to_bytes())
        else:
            self.store.put(object_id, sobj, self.address)
            entry.kind = VALUE_STORED
            entry.node = self.node_info["node_id"]
        entry.state = READY
        with self.lock:
            self.entries[object_id] = entry
        self.refs.add_owned(object_id, contained)
        return entry

    # -- objects: waiting and reading ------------------------------------------------------------
    def _entry_for(self, ref, request=True):
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
        if ask:
            self._safe_send(ref._owner, wire.OBJ_STATUS_REQUEST, (object_id,))
        return entry

    def _on_ready(self, entry, callback):
        """Call callback() once entry is ready (now, if it already is)."""
        with self.lock:
            if entry.state != READY:
                if entry.callbacks is None:
                    entry.callbacks = []
                entry.callbacks.append(callback)
                return
        callback()

    def _set_ready(self, object_id, kind, inline=None, frame=None, node=None):
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
            except Exception as exc:   # one bad callback must not starve the others' waiters
                print(f"zray: error in a callback for object {object_id.hex()}: {exc!r}",
                      file=sys.stderr)
        return True

    def wait_ready(self, refs, num_returns, timeout):
        """Indices of refs that are ready, once num_returns are or the timeout passes."""
        entries = [self._entry_for(r) for r in refs]
        self._wait_for(entries, num_returns, timeout)
        return [i for i, e in enumerate(entries) if e.state == READY]

    def _wait_for(self, entries, needed, timeout):
        """Block until `needed` of the entries are ready or the timeout passes; True if they are.

        Counting and registering happen under the lock that _set_ready takes, so no readiness
        is missed; the waiter's callbacks are removed again when it returns, so polling with a
        short timeout leaves nothing behind."""
        if all(e.state == READY for e in entries):
            return True        # READY is final: no lock needed to see it
        if timeout == 0 and needed >= len(entries):
            return False
        event = self._thread_event()
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
        self.notify_blocked(True)
        try:
            return self._block_until(done, event, deadline, on_event_wait)
        finally:
            self.notify_blocked(False)
            if registered:
                with self.lock:
                    for e in registered:
                        if e.state != READY and e.callbacks:
                            try:
                                e.callbacks.remove(callback)
                            except ValueError:
                                pass

    def notify_blocked(self, blocked):
        """Workers tell the daemon they wait, so their CPU can run other tasks (no deadlock)."""

    def get(self, refs, timeout=None):
        entries = [self._entry_for(r) for r in refs]
        if not self._wait_for(entries, len(entries), timeout):
            n = sum(1 for e in entries if e.state != READY)
            if n:
                raise exceptions.GetTimeoutError(
                    f"Get timed out: {n} of {len(refs)} objects not ready after {timeout}s")
        return [self._value_of(r._id, e) for r, e in zip(refs, entries)]

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
                self._wait_for([entry], 1, None)
                return self._value_of(object_id, entry)
        if flags & serialization.FLAG_ERROR:
            if isinstance(value, exceptions.RayTaskError):
                raise value.as_instanceof_cause()
            raise value
        return value

    def _value_after_loss(self, object_id, entry, lost_node):
        """A borrowed object's copy was lost with its node: the owner rebuilds it from lineage
        (or says it cannot), and we read it where it is now."""
        owner = self._owner_of_pending(object_id)
        if owner is None:
            raise exceptions.ObjectLostError(object_id.hex(), (
                f"Object {object_id.hex()} was lost with node {lost_node}"))
        with self.lock:
            if entry.state == READY and entry.node == lost_node:
                entry.state, entry.kind, entry.node = PENDING, None, None
        self._safe_send(owner, wire.OBJ_STATUS_REQUEST, (object_id, lost_node))
        self._wait_for([entry], 1, None)      # the owner's death ends this too (OwnerDiedError)
        if entry.kind == VALUE_STORED and entry.node == lost_node:
            raise exceptions.ObjectLostError(object_id.hex(), (
                f"Object {object_id.hex()} was lost with node {lost_node}"))
        return self._value_of(object_id, entry)

    def as_future(self, ref):
        import concurrent.futures
        fut = concurrent.futures.Future()
        entry = self._entry_for(ref)

        def done():
            try:
                fut.set_result(self._value_of(ref._id, entry))
            except BaseException as exc:
                fut.set_exception(exc)
        self._on_ready(entry, lambda: threading.Thread(target=done, daemon=True).start())
        return fut

    # -- owner side: answering borrowers ---------------------------------------------------------
    def _on_status_request(self, sender, payload, frames):
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
            self._safe_send(sender, wire.OBJ_STATUS, (object_id, VALUE_INLINE, None), [layout])
            return

        def reply():
            if entry.kind == VALUE_INLINE:
                self._safe_send(sender, wire.OBJ_STATUS, (object_id, VALUE_INLINE, None), [entry.inline])
            else:
                self._safe_send(sender, wire.OBJ_STATUS, (object_id, VALUE_STORED, entry.node))
        self._on_ready(entry, reply)

    def _on_status(self, sender, payload, frames):
        object_id, kind, node = payload
        if kind == VALUE_INLINE:
            self._set_ready(object_id, kind, inline=frames[0].buffer, frame=frames[0])
        else:
            self._set_ready(object_id, kind, node=node)

    # -- messages for the driver ---------------------------------------------------------------
    def _on_log_lines(self, sender, payload, frames):
        stream, text = payload
        out = sys.stderr if stream == 2 else sys.stdout
        try:
            out.write(text)
            out.flush()
        except Exception:
            pass

    def _on_warning(self, sender, payload, frames):
        (text,) = payload
        if text not in self.printed_warnings:
            self.printed_warnings.add(text)
            print(f"zray: warning: {text}", file=sys.stderr, flush=True)

    def _on_client_died(self, sender, payload, frames):
        (address,) = payload
        if address == self.driver_address:
            self.driver_address = None
        self.transport.forget(address)
        self.refs.drop_borrower_everywhere(address)
        # Borrowed objects whose owner died can never be resolved.
        with self.lock:
            orphans = [oid for oid, e in self.entries.items() if not e.owned and e.state == PENDING
                       and self._owner_of_pending(oid) == address]
        for oid in orphans:
            err = exceptions.OwnerDiedError(oid.hex(), f"The owner of object {oid.hex()} ({address}) died")
            self._set_ready(oid, VALUE_INLINE, inline=serialization.serialize_error(err).to_bytes())

    def _on_node_died(self, sender, payload, frames):
        """A node of the mesh is gone, with every process on it."""
        node_id, mesh_address = payload[:2]
        from ..transport.address import node_of
        if self.lineage:
            self._rebuild_lost(node_id)
        for address in self.refs.known_addresses():
            if node_of(address) == node_id:
                self._on_client_died(sender, (address,), ())
        # Actors whose record lived there: the ring may keep a copy (a detached actor's); ask
        # where it is now. The answer is its state from the new home, or DEAD.
        for state in list(self.actor_states.values()):
            home = (state.meta or {}).get("home")
            if home and node_of(home) == node_id:
                self._safe_send(self.daemon, wire.ACTOR_FIND, (state.actor_id, self.address))

    def _owner_of_pending(self, object_id):
        counts = self.refs._entries.get(object_id)
        return counts.owner if counts is not None else None

    # -- cluster information -----------------------------------------------------------------------
    def cluster_info(self):
        return self.rpc(self.daemon, wire.CLUSTER_INFO, ())

    def store_stats(self):
        return self.rpc(self.daemon, wire.STORE_STATS, ())

    # -- shutdown --------------------------------------------------------------------------------
    def shutdown(self):
        if not self._running:
            return
        try:
            self.transport.send(self.daemon, wire.CLIENT_EXIT, (self.address,))
        except Exception:
            pass
        self._running = False
        self.transport.wake()
        self.io_thread.join(timeout=5)
        set_runtime(None)
        self.transport.close()
        if self.store is not None:
            self.store.close()


def _curve_keys(secret_file):
    from ..mesh.security import CurveKeys, load_secret
    return CurveKeys(load_secret(secret_file))
