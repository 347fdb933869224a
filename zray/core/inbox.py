"""A process's inbox: requests and their replies, and which thread reads messages.

Exactly one thread at a time reads the inbox and runs the message handlers: the I/O thread, or
a thread that blocks in get/rpc and reads its own reply (see "the inbox" below).

The inbox is a part of the runtime (core_worker.py) with explicit collaborators: the transport
it reads, the handler table it dispatches to (`handle` / `handle_range` fill it), and two
callables from the runtime: `housekeeping()` (work finalizers queued, run by whoever reads
before it blocks) and `short_poll()` (whether idle store pins need a look within 50 ms).
`dead_reason`, once set (the node daemon exited), fails every wait.
"""
import collections
import itertools
import logging
import math
import select
import threading
import time

import zmq

from .. import exceptions
from ..transport import wire

RPC_TIMEOUT_S = 120.0
INBOX_IDLE_S = 0.005   # an inbox its reader let go of is read by the I/O thread after this long
PARK_MAX_S = 0.1       # longest sleep of the parked I/O thread while another thread reads
DROP_DELAY_S = 0.05    # finalizers' work may wait this long for the I/O thread without a wake
IO_READER = "io"       # _inbox_owner while the I/O thread reads
_POLLIN, _NOBLOCK, _EVENTS = int(zmq.POLLIN), int(zmq.NOBLOCK), int(zmq.EVENTS)
_socket_get = zmq.backend.Socket.get
log = logging.getLogger("zray.core")


class RequestTimeout(exceptions.RaySystemError):
    """rpc() got no reply within its timeout."""


class Inbox:
    def __init__(self, transport, has_dropped, housekeeping, short_poll):
        self.transport = transport
        self.handlers = {}
        self._has_dropped = has_dropped      # refs dropped by finalizers wait to be counted
        self._runtime_housekeeping = housekeeping
        self._short_poll = short_poll
        self.dead_reason = None
        self._running = True
        self._rpc_ids = itertools.count(1)
        self._rpcs = {}
        self._posted = collections.deque()   # finalizers' work; popped one by one (any thread)
        self._init_reading()
        self.io_thread = None
        self.refused_hooks = []              # fn(peer, error): a peer refused us (versions)
        self.handlers[wire.PROTOCOL_MISMATCH] = self._on_protocol_mismatch

    # -- the handler table -------------------------------------------------------------------------
    def handle(self, msg_type, handler):
        """Dispatch msg_type to handler(sender, payload, frames); one handler per type."""
        if msg_type in self.handlers and self.handlers[msg_type] != handler:
            raise ValueError(f"{wire.NAMES.get(msg_type, msg_type)} already has a handler")
        self.handlers[msg_type] = handler

    def reply_type(self, msg_type):
        """Replies of this type complete rpc() requests (payload: req_id, result, error)."""
        self.handle(msg_type, self._on_reply)

    def start(self):
        self.io_thread = threading.Thread(target=self._io_loop, name="zray-io", daemon=True)
        self.io_thread.start()

    def stop(self, timeout=5.0):
        self._running = False
        self.transport.wake()
        if self.io_thread is not None:
            self.io_thread.join(timeout=timeout)

    @property
    def running(self):
        return self._running

    # -- requests and replies ------------------------------------------------------------------
    def rpc(self, address, msg_type, payload, frames=(), timeout=RPC_TIMEOUT_S):
        """Send a request and wait for its reply; raises the error the peer sent back."""
        req_id = next(self._rpc_ids)
        request = _Request(self.thread_event(), address)
        self._rpcs[req_id] = request
        try:
            self.transport.send(address, msg_type, (req_id, *payload), frames)
            if not self.block_until(request.is_replied, request.event, time.monotonic() + timeout):
                raise RequestTimeout(
                    f"no reply to {wire.NAMES.get(msg_type)} from {address} in {timeout:.0f}s")
        finally:
            self._rpcs.pop(req_id, None)
        if request.error is not None:
            raise request.error
        return request.result

    def block_until(self, done, event, deadline, on_event_wait=None):
        """Wait until done() (True) or the deadline (False): reading the inbox on this thread
        when it can, else on `event`, which the thread that reads the inbox sets when done()
        may have become true (on_event_wait() first arranges that, if needed)."""
        ready = self.read_until(done, deadline)
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
                    ready = self.read_until(done, deadline)
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
        request = self._rpcs.get(req_id)
        if request is not None:
            request.result = (result, frames) if frames else result
            request.error = error
            request.replied = True
            request.event.set()

    def _on_protocol_mismatch(self, sender, payload, frames):
        """A peer of another protocol version refused us (the transport hands us its
        ProtocolMismatchError, naming both versions; later sends to it raise it): every
        request waiting on that peer fails with it now, instead of timing out."""
        (error,) = payload
        log.error("%s", error)
        for request in list(self._rpcs.values()):
            if request.address == sender and not request.replied:
                request.error = error
                request.replied = True
                request.event.set()
        for hook in self.refused_hooks:
            try:
                hook(sender, error)
            except Exception:
                log.exception("error failing the requests to %s", sender)

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
    def _init_reading(self):
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
        self.wake_for_drops()

    def wake_for_drops(self):
        # Work queued by finalizers (dropped refs, released buffers) is done by the I/O thread
        # within DROP_DELAY_S anyway, and by a thread before it blocks in get/rpc; only a long
        # sleep needs a wake (one eventfd write, from a finalizer: no lock taken).
        if self._io_sleeping_long:
            self.transport.wake()

    def _housekeeping(self):
        """Work finalizers queued (dropped refs, released buffers) and idle store pins."""
        self._runtime_housekeeping()
        posted = self._posted
        while posted:
            try:
                fn, args = posted.popleft()   # atomic: two threads never run one item twice
            except IndexError:
                break
            try:
                fn(*args)
            except Exception:
                log.exception("error in posted call %r", fn)

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
                handler = handlers.get(msg_type)
            except zmq.Again:
                break
            except zmq.ZMQError:
                raise
            except Exception as exc:    # a malformed message: drop it, serve on
                log_bad_frame(log, exc)
                continue
            if handler is None:
                continue
            try:
                handler(sender, payload, frames)
            except Exception:   # a bad message must not stop the process's I/O
                log.exception("error handling %s from %s", wire.NAMES.get(msg_type, msg_type), sender)

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
                if self._has_dropped() or self._posted:
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
            # Wake often enough to give back idle store pins on time (store.sweep).
            timeout = 50 if self._short_poll() else 1000
            self._io_sleeping_long = timeout > DROP_DELAY_S * 1000
            if self._has_dropped() or self._posted:
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

    def read_until(self, done, deadline):
        """Read the inbox on this thread until done() or the deadline; done() as it stands
        then, or None when another user thread reads the inbox (nothing was waited)."""
        if not self._take_inbox():
            return None
        if self._has_dropped() or self._posted:
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
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    # Rounded up: a wait with a timeout never returns before it (as Ray's).
                    timeout = math.ceil(min(1.0, left) * 1000)
                # Only here may a worker's cancel (SIGINT) interrupt this thread: a handler
                # interrupted half-way would lose its message (see WorkerRuntime._sigint).
                self._inbox_polling = True
                try:
                    poll(items, timeout)
                finally:
                    self._inbox_polling = False
        finally:
            self._release_inbox()

    def read_while_idle(self, fd, timeout):
        """An event loop about to block (async actors, actor_host.py): read the inbox on its
        thread until a message came, `fd` (the loop's own selector) is readable, or `timeout`
        seconds (None: no limit) passed, so a call dispatched here starts on the loop at once
        instead of being handed over from another thread. True when it read; False, having
        waited for nothing, when another thread reads the inbox (the loop then waits as usual
        and calls come handed over)."""
        if not self._take_inbox():
            return False
        try:
            if self._has_dropped() or self._posted:
                self._housekeeping()
            inbox = self.transport.inbox
            if not (_socket_get(inbox, _EVENTS) & _POLLIN):
                ms = 1000 if timeout is None else math.ceil(min(1.0, timeout) * 1000)
                self._inbox_polling = True
                try:
                    zmq.zmq_poll([(inbox, _POLLIN), (fd, _POLLIN)], ms)
                finally:
                    self._inbox_polling = False
            self._dispatch_waiting()
            return True
        finally:
            self._release_inbox()

    def in_inbox_code(self, frame):
        """Whether `frame` (a signal handler's) is inside the inbox machinery, where an
        exception would leave the inbox taken or a message half-handled. Blocked in the poll
        of read_until it is not: nothing is taken from the socket there."""
        if self._inbox_polling and frame.f_code is _READ_UNTIL_CODE:
            return False
        while frame is not None:
            if frame.f_code in _INBOX_CODES:
                return True
            frame = frame.f_back
        return False

    def thread_event(self):
        """This thread's reusable event, cleared (no Event/Condition allocated per wait)."""
        event = getattr(self._local, "event", None)
        if event is None:
            event = self._local.event = threading.Event()
        elif event.is_set():
            event.clear()      # set late by a callback of an earlier wait
        return event


def log_bad_frame(logger, exc):
    """Log a message that could not be decoded, naming its sender. The sender is read from the
    transport's frame (Transport.recv had read the routing id when decoding failed): only an
    authenticated peer gets this far (CURVE over TCP, the same user over ipc)."""
    peer = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "recv" and "identity" in tb.tb_frame.f_locals:
            identity = tb.tb_frame.f_locals["identity"]
            if isinstance(identity, bytes):
                from ..transport.zmq_transport import parse_identity
                version, peer = parse_identity(identity)
        tb = tb.tb_next
    logger.warning("dropped a malformed message from %s: %s: %s", peer or "an unknown peer",
                   type(exc).__name__, exc)


class _Request:
    """One rpc() waiting for its reply."""

    __slots__ = ("event", "result", "error", "replied", "address")

    def __init__(self, event, address):
        self.event = event
        self.address = address
        self.result = None
        self.error = None
        self.replied = False

    def is_replied(self):
        return self.replied


_READ_UNTIL_CODE = Inbox.read_until.__code__
_INBOX_CODES = frozenset(f.__code__ for f in (
    Inbox._take_inbox, Inbox._release_inbox, Inbox.read_until, Inbox._dispatch_waiting))
