"""CoreWorker: the zray runtime inside one process, a driver or a worker.

It owns the objects the process creates (their values or locations, and their reference
counts), submits tasks to the node daemon and turns their results into values, and answers
other processes that borrow its objects. One thread at a time reads the inbox and runs the
message handlers: the I/O thread, or a thread that blocks in get/rpc and reads its own reply
(see "the inbox" below). Every thread sends directly (the transport is thread-safe).
"""
import collections
import itertools
import os
import pickle
import select
import sys
import threading
import time

import zmq

from .. import exceptions
from ..objects import serialization
from ..objects.ids import TaskIdFactory, put_object_id, return_object_id, task_of
from ..objects.object_ref import ObjectRef, set_runtime
from ..objects.reference_table import ReferenceTable
from ..scheduling.task_spec import ARG_STORED, ARG_VALUE, TaskSpec
from ..store.client import StoreClient
from ..transport import wire
from ..transport.zmq_transport import Transport
from .actor_caller import ActorCaller
from .object_entries import PENDING, READY, VALUE_INLINE, VALUE_STORED, ObjectEntry, Waiter

INLINE_MAX = 100 * 1024       # values up to this size travel inside messages
RPC_TIMEOUT_S = 120.0
FUNCTION_BLOB_VERSION = 1   # (version, submitter's sys.path, cloudpickled function)
INBOX_IDLE_S = 0.005   # an inbox its reader let go of is read by the I/O thread after this long
PARK_MAX_S = 0.1       # longest sleep of the parked I/O thread while another thread reads
DROP_DELAY_S = 0.05    # finalizers' work may wait this long for the I/O thread without a wake
IO_READER = "io"       # _inbox_owner while the I/O thread reads
_POLLIN, _NOBLOCK, _EVENTS = int(zmq.POLLIN), int(zmq.NOBLOCK), int(zmq.EVENTS)
_socket_get = zmq.backend.Socket.get


class _PendingTask:
    __slots__ = ("spec", "frames", "holds", "deps_left", "retries_left", "cancelled", "sent",
                 "generator", "parent", "actor", "ready", "return_ids")

    def __init__(self, spec, frames, holds, retries_left, parent, actor=None):
        self.spec = spec
        self.frames = frames
        self.holds = holds
        self.deps_left = 0
        self.retries_left = retries_left
        self.cancelled = False
        self.sent = False
        self.generator = None
        self.parent = parent
        self.actor = actor          # the callee's _ActorState, for an actor method call
        self.ready = False          # an actor call whose arguments are all resolved
        self.return_ids = spec.return_ids()


class _GeneratorState:
    __slots__ = ("items", "count", "cond", "seen")

    def __init__(self):
        self.items = {}       # index -> object id, held until the user takes a ref
        self.count = None     # total, once the generator finished
        self.seen = set()     # indices ever received (a retried attempt repeats them)
        self.cond = threading.Condition()


class CoreWorker(ActorCaller):
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

    # -- requests and replies ------------------------------------------------------------------
    def rpc(self, address, msg_type, payload, frames=(), timeout=RPC_TIMEOUT_S):
        """Send a request and wait for its reply; raises the error the peer sent back."""
        req_id = next(self._rpc_ids)
        waiter = [self._thread_event(), None, None, False]    # event, result, error, replied
        self._rpcs[req_id] = waiter
        try:
            self.transport.send(address, msg_type, (req_id, *payload), frames)
            if not self._block_until(lambda: waiter[3], waiter[0], time.monotonic() + timeout):
                raise exceptions.RaySystemError(
                    f"no reply to {wire.NAMES.get(msg_type)} from {address} in {timeout:.0f}s")
        finally:
            self._rpcs.pop(req_id, None)
        if waiter[2] is not None:
            raise waiter[2]
        return waiter[1]

    def _block_until(self, done, event, deadline, on_event_wait=None):
        """Wait until done() (True) or the deadline (False): reading the inbox on this thread
        when it can, else on `event`, which the thread that reads the inbox sets when done()
        may have become true (on_event_wait() first arranges that, if needed)."""
        ready = self._read_until(done, deadline)
        if ready is not None:
            return ready
        # Another user thread reads the inbox. When it lets go, _event_waiters has the I/O
        # thread take over at once, so whoever reads sets our event.
        if on_event_wait is not None:
            on_event_wait()
        with self._inbox_count_lock:
            self._event_waiters += 1
        try:
            while not done():
                remaining = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if remaining <= 0:
                    return False
                if self._inbox_owner is None:    # nobody reads right now: read ourselves
                    ready = self._read_until(done, deadline)
                    if ready is not None:
                        return ready
                if event.wait(remaining):
                    event.clear()
                elif self.dead_reason:
                    raise exceptions.LocalRayletDiedError(self.dead_reason)
            return True
        finally:
            with self._inbox_count_lock:
                self._event_waiters -= 1

    def _on_reply(self, sender, payload, frames):
        req_id, result, error = payload
        waiter = self._rpcs.get(req_id)
        if waiter is not None:
            waiter[1] = (result, frames) if frames else result
            waiter[2] = error
            waiter[3] = True
            waiter[0].set()

    # -- the inbox: one reader at a time ---------------------------------------------------------
    # Exactly one thread reads the inbox and runs the message handlers at any moment: the one
    # holding _inbox_lock. Usually that is the I/O thread; but a thread that blocks in get/rpc,
    # or a worker's main thread waiting for its next task, takes the inbox and reads it itself,
    # so the reply it waits for wakes it directly instead of waking the I/O thread, which then
    # wakes it (two thread hand-offs and a fight for the GIL per call on two cores). While some
    # other thread has the inbox, the I/O thread parks; it takes the inbox back once nobody has
    # read it for INBOX_IDLE_S (a worker running a long task must still see its cancel, say), at
    # once when a thread waits on an event that only a reader can set, and when asked to give it
    # up it does so after the message it is handling.
    def _init_inbox(self):
        self._inbox_lock = threading.Lock()
        self._inbox_owner = None        # ident of the reading thread (IO_READER: the I/O thread)
        self._inbox_polling = False     # the reader is blocked in poll (nothing half-handled)
        self._inbox_wanted = 0          # threads waiting for the I/O thread to give it up
        self._inbox_count_lock = threading.Lock()
        self._inbox_released_at = 0.0
        self._inbox_epoch = 0           # counts takings by other threads: is anyone reading?
        self._io_park_s = INBOX_IDLE_S  # how long the parked I/O thread sleeps between looks
        self._io_take_now = False       # a releaser asks the I/O thread to read at once
        self._io_sleeping_long = False  # the I/O thread sleeps long: dropped refs must wake it
        self._event_waiters = 0         # threads blocked on events set by the inbox's reader
        self._local = threading.local()

    def post(self, fn, *args):
        """Run fn(*args) soon on the I/O thread (safe from finalizers: takes no lock)."""
        self._posted.append((fn, args))
        self._wake_for_drops()

    def _wake_for_drops(self):
        # Work queued by finalizers (dropped refs, released buffers) is done by the I/O thread
        # within DROP_DELAY_S anyway, and by a thread before it blocks in get/rpc; only a long
        # sleep needs a wake (one eventfd write, from a finalizer: no lock taken).
        if self._io_sleeping_long:
            self.transport.wake()

    def _housekeeping(self):
        """Work finalizers queued (dropped refs, released buffers) and idle store pins."""
        if self.refs.has_dropped():
            self.refs.drain_dropped()
        store = self.store
        if store is not None and store.idle_pins:
            store.sweep()
        posted = self._posted
        while posted:
            try:
                fn, args = posted.popleft()   # atomic: two threads never run one item twice
            except IndexError:
                break
            try:
                fn(*args)
            except Exception as exc:
                print(f"zray: error in posted call {fn}: {exc!r}", file=sys.stderr)

    def _dispatch_waiting(self):
        """Handle every message waiting in the inbox (the caller holds the inbox)."""
        inbox = self.transport.inbox
        recv = self.transport.recv
        handlers = self.handlers
        # Read while the socket says a message is waiting: no exception per turn.
        budget = 1000
        events = _socket_get        # pyzmq's getsockopt wraps EVENTS in an enum: ~2 us more
        while budget and events(inbox, _EVENTS) & _POLLIN:
            budget -= 1
            try:
                sender, msg_type, payload, frames = recv(_NOBLOCK)
            except zmq.Again:
                break
            handler = handlers.get(msg_type)
            if handler is None:
                continue
            try:
                handler(sender, payload, frames)
            except Exception as exc:   # a bad message must not stop the process's I/O
                print(f"zray: error handling {wire.NAMES.get(msg_type)}: {exc!r}", file=sys.stderr)

    def _io_loop(self):
        park = select.poll()
        park.register(self.transport.wake_fd, select.POLLIN)
        last_epoch = -1
        try:
            while self._running:
                if self._io_should_read():
                    try:
                        self._io_read()
                    finally:
                        self._inbox_owner = None
                        self._inbox_lock.release()
                    self._io_park_s = INBOX_IDLE_S
                    last_epoch = self._inbox_epoch
                # Another thread reads the inbox (or just did): sleep, but wake for work that
                # finalizers queue, and look again now and then.
                timeout = self._io_park_s
                self._io_sleeping_long = timeout > DROP_DELAY_S
                if self.refs.has_dropped() or self._posted:
                    timeout = 0
                try:
                    if park.poll(timeout * 1000):
                        self.transport.drain_wake()
                finally:
                    self._io_sleeping_long = False
                self._housekeeping()
                epoch = self._inbox_epoch
                if self._inbox_owner is None:    # let go of: take it once it stays so a while
                    idle = time.monotonic() - self._inbox_released_at
                    self._io_park_s = max(0.0005, INBOX_IDLE_S - idle)
                elif epoch != last_epoch:        # someone reads, and often: look again soon
                    self._io_park_s = INBOX_IDLE_S
                else:                            # one reader, waiting a while: back off
                    self._io_park_s = min(self._io_park_s * 2, PARK_MAX_S)
                last_epoch = epoch
        except zmq.ZMQError:
            pass     # the transport was closed under us: shutting down

    def _io_should_read(self):
        """Take the inbox for the I/O thread if nobody else reads it (or was asked to)."""
        if self._inbox_wanted:
            return False
        take_now, self._io_take_now = self._io_take_now, False
        if not take_now and time.monotonic() - self._inbox_released_at < INBOX_IDLE_S:
            return False      # its reader released it a moment ago: probably coming back
        if not self._inbox_lock.acquire(False):
            return False
        self._inbox_owner = IO_READER
        return True

    def _io_read(self):
        """The I/O thread's reading loop, until another thread asks for the inbox."""
        poller = zmq.Poller()
        poller.register(self.transport.inbox, zmq.POLLIN)
        poller.register(self.transport.wake_fd, zmq.POLLIN)
        while self._running and not self._inbox_wanted:
            store = self.store
            # Wake often enough to give back idle store pins on time (store.sweep).
            timeout = 50 if store is not None and store.idle_pins else 1000
            self._io_sleeping_long = timeout > DROP_DELAY_S * 1000
            if self.refs.has_dropped() or self._posted:
                timeout = 0
            try:
                events = poller.poll(timeout)
            finally:
                self._io_sleeping_long = False
            if events:
                self._dispatch_waiting()
                self.transport.drain_wake()
            self._housekeeping()

    def _take_inbox(self):
        """Become the inbox's reader: True, or False when another user thread reads it (the
        caller then waits for that one to wake it). The I/O thread is asked to give it up."""
        lock = self._inbox_lock
        if not lock.acquire(False):
            if self._inbox_owner != IO_READER:
                return False
            with self._inbox_count_lock:
                self._inbox_wanted += 1
            try:
                self.transport.wake()
                if not lock.acquire(timeout=0.05):   # it is inside a slow handler
                    return False
            finally:
                with self._inbox_count_lock:
                    self._inbox_wanted -= 1
        self._inbox_owner = threading.get_ident()
        self._inbox_epoch += 1
        return True

    def _release_inbox(self):
        self._inbox_owner = None
        self._inbox_released_at = time.monotonic()
        self._inbox_lock.release()
        if self._event_waiters:
            self._io_take_now = True       # threads wait for replies that only a reader sees
            self.transport.wake()
        elif self._io_park_s > INBOX_IDLE_S:
            self._io_park_s = INBOX_IDLE_S
            self.transport.wake()          # the I/O thread backed off: have it look again soon

    def _read_until(self, done, deadline):
        """Read the inbox on this thread until done() or the deadline; done() as it stands
        then, or None when another user thread reads the inbox (nothing was waited)."""
        if not self._take_inbox():
            return None
        if self.refs.has_dropped() or self._posted:
            self._housekeeping()    # about to block anyway: free what finalizers let go of
        inbox = self.transport.inbox
        poll = zmq.zmq_poll
        items = [(inbox, _POLLIN)]
        try:
            while True:
                self._dispatch_waiting()
                if done():
                    return True
                if self.dead_reason:
                    raise exceptions.LocalRayletDiedError(self.dead_reason)
                if deadline is None:
                    timeout = 1000
                else:
                    timeout = int(min(1.0, deadline - time.monotonic()) * 1000)
                    if timeout <= 0:
                        return False
                # Only here may a worker's cancel (SIGINT) interrupt this thread: a handler
                # interrupted half-way would lose its message (see WorkerRuntime._sigint).
                self._inbox_polling = True
                try:
                    poll(items, timeout)
                finally:
                    self._inbox_polling = False
        finally:
            self._release_inbox()

    def in_inbox_code(self, frame):
        """Whether `frame` (a signal handler's) is inside the inbox machinery, where an
        exception would leave the inbox taken or a message half-handled. Blocked in the poll
        of _read_until it is not: nothing is taken from the socket there."""
        if self._inbox_polling and frame.f_code is _READ_UNTIL_CODE:
            return False
        while frame is not None:
            if frame.f_code in _INBOX_CODES:
                return True
            frame = frame.f_back
        return False

    def _thread_event(self):
        """This thread's reusable event, cleared (no Event/Condition allocated per wait)."""
        event = getattr(self._local, "event", None)
        if event is None:
            event = self._local.event = threading.Event()
        elif event.is_set():
            event.clear()      # set late by a callback of an earlier wait
        return event

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
                # unless that is already under way.
                rebuilding = entry.state != READY or entry.node != node
                if not (entry.owned and (rebuilding or self._rebuild_lost(node, task_of(object_id)))):
                    raise
                self._wait_for([entry], 1, None)
                return self._value_of(object_id, entry)
        if flags & serialization.FLAG_ERROR:
            if isinstance(value, exceptions.RayTaskError):
                raise value.as_instanceof_cause()
            raise value
        return value

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
        (object_id,) = payload
        with self.lock:
            entry = self.entries.get(object_id)
        if entry is None:
            err = exceptions.ObjectLostError(object_id.hex(), f"Object {object_id.hex()} was freed by its owner")
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

    # -- tasks: submission -----------------------------------------------------------------------
    def export_function(self, function_id, pickled):
        """Make a pickled function (or class) fetchable by workers under function_id.

        It travels with this process's sys.path: cloudpickle pickles functions of importable
        modules by reference, so workers must be able to import the modules the submitter can
        (a script's own folder, a test directory), as Ray's workers do.
        """
        if function_id not in self._exported:
            self._exported.add(function_id)
            paths = [os.path.abspath(p) if p == "" or not os.path.isabs(p) else p
                     for p in sys.path if isinstance(p, str)]
            blob = pickle.dumps((FUNCTION_BLOB_VERSION, paths, bytes(pickled)), protocol=5)
            self.transport.send(self.daemon, wire.EXPORT_FUNCTION, (function_id,), [blob])

    def load_function(self, blob):
        """The inverse of export_function's packing, run where the function is executed."""
        version, paths, pickled = pickle.loads(blob)
        if version != FUNCTION_BLOB_VERSION:
            raise exceptions.RaySystemError(f"unknown exported-function format {version!r}")
        known = set(sys.path)
        for p in paths:
            if p not in known:
                sys.path.append(p)    # after our own entries: never shadow what we import
                known.add(p)
        return pickle.loads(pickled)

    def submit_task(self, function_id, name, args, kwargs, num_returns, resources, max_retries,
                    retry_exceptions, extra=None, actor=None):
        task_id = self.task_ids.next()
        arg_descs, frames, holds, deps = [], [], [], []
        values = (*args, *kwargs.values())
        # Serialize every argument before storing any: an unpicklable one raises here, at the
        # call, without leaving stored copies of the others behind.
        serialized = [None if isinstance(v, ObjectRef) else _serialize_arg(v, i, len(args), kwargs)
                      for i, v in enumerate(values)]
        for value, sobj in zip(values, serialized):
            if isinstance(value, ObjectRef):
                deps.append((len(arg_descs), value))
                arg_descs.append(None)
                holds.append((value._id, value._owner))
                continue
            holds.extend((r._id, r._owner) for r in sobj.contained_refs)
            if sobj.total_size <= INLINE_MAX:
                frames.append(sobj.to_bytes())
                arg_descs.append((ARG_VALUE, len(frames) - 1))
            else:
                # A large argument goes to the store once, owned here and held by the task.
                object_id = put_object_id(task_id, next(self._put_counter))
                self._store_owned(object_id, sobj)
                holds.append((object_id, self.address))
                self.refs.hold([(object_id, self.address)])
                self.refs.release([])
                arg_descs.append((ARG_STORED, object_id, self.address, self.node_info["node_id"]))
        spec = TaskSpec(task_id, self.job_id, name, function_id, arg_descs, list(kwargs),
                        num_returns, resources, max_retries, retry_exceptions, self.address,
                        parent_task_id=self.current_task_id, extra=extra)
        pending = _PendingTask(spec, frames, holds, max_retries, self.current_task_id, actor)
        if actor is not None:
            with actor.lock:
                actor.queue.append(pending)    # its place in the caller's order, taken now
        return_ids = pending.return_ids
        with self.lock:
            for rid in return_ids:
                self.entries[rid] = ObjectEntry(owned=True)
            self.pending_tasks[task_id] = pending
            if spec.streaming:
                pending.generator = self.generators[task_id] = _GeneratorState()
        for rid in return_ids:
            self.refs.add_owned(rid)
        # Holds were taken per argument; the stored args above took theirs already.
        if holds:
            self.refs.hold([h for h in holds if not (h[1] == self.address and h[0][:12] == task_id)])
        refs = [ObjectRef(rid, self.address) for rid in return_ids]
        if deps:
            self._resolve_dependencies(pending, deps)
        else:
            self._send_task(pending)
        return task_id, refs

    def _resolve_dependencies(self, pending, deps):
        pending.deps_left = len(deps)
        for index, ref in deps:
            entry = self._entry_for(ref)

            def resolved(index=index, ref=ref, entry=entry):
                self._dependency_ready(pending, index, ref, entry)
            self._on_ready(entry, resolved)

    def _dependency_ready(self, pending, index, ref, entry):
        spec = pending.spec
        if pending.cancelled:
            return      # cancelled (or failed by another argument) while it waited
        if entry.kind == VALUE_INLINE:
            if serialization.parse(entry.inline)[0] & serialization.FLAG_ERROR:
                # A failed argument fails the task with the same error, without running it.
                if not pending.cancelled:
                    pending.cancelled = True
                    self._complete_with_error_layout(pending, entry.inline)
                return
            pending.frames.append(entry.inline)
            spec.args[index] = (ARG_VALUE, len(pending.frames) - 1)
        else:
            spec.args[index] = (ARG_STORED, ref._id, ref._owner, entry.node)
        with self.lock:
            pending.deps_left -= 1
            ready = pending.deps_left == 0 and not pending.cancelled
            if ready and pending.actor is None:
                pending.sent = True     # under the lock: cancel_task() sees one or the other
        if ready:
            self._send_task(pending)

    def _send_task(self, pending):
        if pending.actor is not None:
            self._send_actor_call(pending)
            return
        pending.sent = True
        self.transport.send(self.daemon, wire.SUBMIT_TASK, (pending.spec,), pending.frames)

    # -- tasks: results ----------------------------------------------------------------------------
    def _on_task_result(self, sender, payload, frames):
        task_id, attempt, results, retryable = payload
        pending = self.pending_tasks.get(task_id)
        if pending is None or pending.spec.attempt != attempt:
            return      # a superseded attempt (or a task already completed): not ours to keep
        if retryable and not pending.cancelled and pending.retries_left != 0:
            self._retry(pending)
            return
        spec = pending.spec
        if spec.streaming:
            self._finish_generator(pending, results[0] if results else 0)
        else:
            for rid, result in zip(pending.return_ids, results):
                self._fill_result(rid, result, frames)
        self._finish(pending)

    def _fill_result(self, object_id, result, frames):
        kind, where, contained = result
        if kind == VALUE_INLINE:
            ok = self._set_ready(object_id, kind, inline=frames[where].buffer, frame=frames[where])
        else:
            ok = self._set_ready(object_id, kind, node=where)
        if contained:
            self.refs.set_contained(object_id, contained, registered_for_us=True)
        if not ok and kind == VALUE_STORED:
            self._safe_send(self.daemon, wire.OBJ_FREE, ([object_id], [where]))

    def _on_task_failed(self, sender, payload, frames):
        task_id, attempt, reason, detail = payload
        pending = self.pending_tasks.get(task_id)
        if pending is None or pending.spec.attempt != attempt:
            return
        if reason == "cancelled" or pending.cancelled:
            err = exceptions.TaskCancelledError(task_id)
        elif reason == "unschedulable":
            err = exceptions.TaskUnschedulableError(f"Task {pending.spec.name} cannot be scheduled: {detail}")
        elif pending.retries_left != 0:
            self._retry(pending)
            return
        elif reason == "node_died":
            err = exceptions.NodeDiedError(
                f"Task {pending.spec.name} was lost with its node (it was retried "
                f"{pending.spec.attempt} times): {detail}")
        else:
            err = exceptions.WorkerCrashedError(
                f"The worker running task {pending.spec.name} died unexpectedly "
                f"(it was retried {pending.spec.attempt} times).\n{detail or ''}".rstrip())
        self._complete_with_error_layout(pending, serialization.serialize_error(err).to_bytes())

    def _retry(self, pending):
        if pending.retries_left > 0:
            pending.retries_left -= 1
        pending.spec.attempt += 1
        self._send_task(pending)

    def _complete_with_error_layout(self, pending, layout):
        spec = pending.spec
        if spec.streaming:
            gen = pending.generator
            with gen.cond:
                finished = gen.count is not None
                index = max(gen.seen) + 1 if gen.seen else 0
            if not finished:   # the error becomes the stream's last item
                self._add_generator_item(pending, index, (VALUE_INLINE, 0, None), [_Frame(layout)])
                self._finish_generator(pending, index + 1)
        else:
            for rid in pending.return_ids:
                self._set_ready(rid, VALUE_INLINE, inline=layout)
        self._finish(pending)

    def _finish(self, pending):
        if pending.actor is not None:
            self._actor_call_done(pending)
        with self.lock:
            self.pending_tasks.pop(pending.spec.task_id, None)
            keep = self._keeps_lineage(pending)
            if keep:
                self.lineage[pending.spec.task_id] = pending
        if keep:
            return      # its arguments stay held: the task may have to run again
        pending.frames = None
        if pending.holds:
            self.refs.release([oid for oid, _ in pending.holds])

    def _keeps_lineage(self, pending):
        """A retryable task whose result lives in another node's store is kept (with its
        arguments) while the result is referenced, to rebuild the result if that node dies."""
        spec = pending.spec
        if pending.actor is not None or spec.streaming or pending.retries_left == 0 or pending.cancelled:
            return False
        here = self.node_info["node_id"] if self.node_info else None
        for rid in spec.return_ids():
            entry = self.entries.get(rid)
            if entry is not None and entry.kind == VALUE_STORED and entry.node not in (None, here):
                return True
        return False

    def _drop_lineage(self, object_id):
        task_id = task_of(object_id)
        with self.lock:
            pending = self.lineage.get(task_id)
            if pending is None or any(rid in self.entries for rid in pending.spec.return_ids()):
                return
            del self.lineage[task_id]
        pending.frames = None
        self.refs.release([oid for oid, _ in pending.holds])

    def _rebuild_lost(self, node_id, only_task=None):
        """Results stored on a dead node: run their tasks again where lineage allows (True if
        some task runs again); the others fail with ObjectLostError when read."""
        with self.lock:
            lost = {task_of(oid) for oid, e in self.entries.items()
                    if e.owned and e.state == READY and e.kind == VALUE_STORED and e.node == node_id}
            if only_task is not None:
                lost &= {only_task}
            rerun = []
            for task_id in lost:
                pending = self.lineage.pop(task_id, None)
                if pending is None:
                    continue
                for rid in pending.spec.return_ids():
                    entry = self.entries.get(rid)
                    if entry is not None and entry.node == node_id:
                        entry.state, entry.kind, entry.node = PENDING, None, None
                self.pending_tasks[task_id] = pending
                rerun.append(pending)
        for pending in rerun:
            self._retry(pending)
        return bool(rerun)

    # -- streaming generators ----------------------------------------------------------------------
    def _on_generator_item(self, sender, payload, frames):
        task_id, attempt, index, result = payload
        pending = self.pending_tasks.get(task_id)
        if pending is None or pending.generator is None:
            return
        self._add_generator_item(pending, index, result, frames)

    def _add_generator_item(self, pending, index, result, frames):
        gen = pending.generator
        object_id = return_object_id(pending.spec.task_id, index)
        with gen.cond:
            if index in gen.seen or gen.count is not None:
                return    # a retried attempt reports items we already have
            gen.seen.add(index)
        with self.lock:
            self.entries[object_id] = ObjectEntry(owned=True)
        self.refs.add_owned(object_id)
        self.refs.hold([(object_id, self.address)])
        self._fill_result(object_id, result, frames)
        with gen.cond:
            gen.items[index] = object_id
            gen.cond.notify_all()

    def _finish_generator(self, pending, count):
        gen = pending.generator
        with gen.cond:
            gen.count = count
            gen.cond.notify_all()

    def generator_next(self, task_id, index, timeout=None):
        """The ref of item `index` of a streaming task, or None when it has fewer items."""
        gen = self.generators.get(task_id)
        if gen is None:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        if index not in gen.items and gen.count is None:
            # Read the inbox here if nobody else does: the item wakes no other thread.
            self._read_until(lambda: index in gen.items or gen.count is not None, deadline)
        with gen.cond:
            while index not in gen.items:
                if gen.count is not None and index >= gen.count:
                    return None
                remaining = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if remaining <= 0:
                    raise exceptions.GetTimeoutError(f"no generator item within {timeout}s")
                gen.cond.wait(remaining)
                if self.dead_reason:
                    raise exceptions.LocalRayletDiedError(self.dead_reason)
            object_id = gen.items.pop(index)
        ref = ObjectRef(object_id, self.address)
        self.refs.release([object_id])
        return ref

    def generator_done(self, task_id):
        gen = self.generators.pop(task_id, None)
        if gen is not None:
            with gen.cond:
                leftover, gen.items = list(gen.items.values()), {}
            self.refs.release(leftover)

    # -- cancel ------------------------------------------------------------------------------------
    def cancel(self, ref, force, recursive):
        task_id = task_of(ref._id)
        if ref._owner != self.address:
            raise ValueError("Only the owner of a task (the process that submitted it) can cancel it")
        pending = self.pending_tasks.get(task_id)
        if pending is None:
            return
        self.cancel_task(pending, force, recursive)

    def cancel_task(self, pending, force, recursive):
        if pending.actor is not None:
            self._cancel_actor_call(pending, force)
            return
        with self.lock:
            already = pending.cancelled
            pending.cancelled = True
            sent = pending.sent
        if not sent:
            if already:
                return
            err = exceptions.TaskCancelledError(pending.spec.task_id)
            self._complete_with_error_layout(pending, serialization.serialize_error(err).to_bytes())
            return
        self.transport.send(self.daemon, wire.CANCEL_TASK, (pending.spec.task_id, force, recursive))

    def cancel_children(self, parent_task_id, force):
        with self.lock:
            children = [p for p in self.pending_tasks.values() if p.parent == parent_task_id]
        for child in children:
            self.cancel_task(child, force, True)

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


_READ_UNTIL_CODE = CoreWorker._read_until.__code__
_INBOX_CODES = frozenset(f.__code__ for f in (
    CoreWorker._take_inbox, CoreWorker._release_inbox, CoreWorker._read_until,
    CoreWorker._dispatch_waiting))


def _serialize_arg(value, index, n_positional, kwargs):
    try:
        return serialization.serialize(value)
    except exceptions.ObjectSerializationError as exc:
        which = (f"argument {index}" if index < n_positional
                 else f"keyword argument {list(kwargs)[index - n_positional]!r}")
        raise exceptions.ObjectSerializationError(f"Could not pass {which} to the task: {exc}") from None


def _curve_keys(secret_file):
    from ..mesh.security import CurveKeys, load_secret
    return CurveKeys(load_secret(secret_file))


class _Frame:
    """Stands in for a received ZeroMQ frame when a result is made locally."""

    __slots__ = ("buffer",)

    def __init__(self, data):
        self.buffer = memoryview(data)
