"""Object bytes between nodes on plain TCP streams, authenticated by the cluster secret.

The control plane (every zray message, SWIM included) stays on CURVE-encrypted ZeroMQ. CURVE
caps a stream at ~0.9 GB/s on loopback where a raw TCP stream moves ~3.9 GB/s, so the bytes of
objects travel here instead: the source's node runs a `DataServer` on its mesh interface; the
puller's node runs a `DataClient` whose threads read each object straight into the puller's
store region (recv_into a view of the shared memory: no copy, the daemon's loop never touches
the bytes). The control messages of a pull (zray/store/transfer.py) decide everything; this
module only moves bytes and reports back.

Handshake, per connection (both sides prove they hold the cluster secret; nothing a peer sends
is unpickled, ever: the stream carries fixed-size binary headers only):

    client                                           server
                                   <- MAGIC + server nonce (32 random bytes)
    client nonce (32) + HMAC_c (32) + len (2) + the client's mesh address ->
                                   <- HMAC_s (32), or the connection is closed
    HMAC_x = HMAC-SHA256(key, x + server nonce + client nonce + address),
    key = SHA-256("zray-data-v1:" + cluster secret)

Then, any number of times on one connection:

    (pull_id, offset, length) as 3 x u64 ->
                                   <- status u8 + n u64, then n bytes: the object's bytes
                                      (status 0), or an error text (status 1)

The server answers a request only for a transfer the control plane granted to that peer
(`grant`): the object is pinned at the source meanwhile. Confidentiality is not kept on this
channel (docs/hpc.md, "Security of the data channel"); ZRAY_DATA_CHANNEL=curve keeps object
bytes on the CURVE channel.

Defaults and what they bound:

    CONNECT_TIMEOUT_S = 5     a connection plus handshake: a peer that does not answer in time
                              is treated as unreachable (the pull falls back to the CURVE path)
    STREAM_THREADS = 4        concurrent object streams a node pulls; more pulls queue
    MAX_CONNECTIONS = 64      connections a node's server serves at once, one thread each
                              (ZRAY_DATA_MAX_CONNECTIONS): at the cap, a new connection takes
                              the slot of the longest-idle pooled one (its client reconnects
                              when it next needs it), else waits until one frees (the kernel's
                              backlog holds it; its client gives up after CONNECT_TIMEOUT_S and
                              the pull goes over CURVE). One warning per episode at the cap.
    SEND_SLICE = 8 MiB        a server checks between slices that its grant still holds
    ZRAY_DATA_MAX_BYTES_PER_S a cap on what one node's server sends per second, all streams
                              together (unset: none), for links shared with other traffic
"""
import collections
import hashlib
import hmac
import logging
import os
import socket
import struct
import threading
import time

from .completions import Completions

log = logging.getLogger("zray.transport.data")

MODE_ENV = "ZRAY_DATA_CHANNEL"
MODE_TCP = "tcp"          # plain TCP, HMAC-authenticated (the default)
MODE_CURVE = "curve"      # object bytes stay on the CURVE channel
MAGIC = b"zraydat1"
NONCE = 32
MAC = 32
CONNECT_TIMEOUT_S = 5.0
STREAM_THREADS = 4
MAX_CONNECTIONS = 64
MAX_CONNECTIONS_ENV = "ZRAY_DATA_MAX_CONNECTIONS"
SEND_SLICE = 8 << 20
_REQUEST = struct.Struct("!QQQ")
_ANSWER = struct.Struct("!BQ")
_MAX_ADDRESS = 1024
_MAX_ERROR = 4096

# Why a stream ended, as DataClient reports it (the transfer machine names the error).
CONNECT = "connect"       # no connection or handshake: the pull may use the CURVE path instead
TIMEOUT = "timeout"       # no byte for the stall timeout
BROKEN = "broken"         # the stream broke mid-way (the source died, or closed it)
REFUSED = "refused"       # the source answered with an error
CANCELLED = "cancelled"   # the puller gave up (freed, source gone, ...)
_STALE = object()         # a pooled connection was dead before any answer: retry on a new one


def mode():
    """The data channel mode this process asks for (ZRAY_DATA_CHANNEL)."""
    value = (os.environ.get(MODE_ENV) or MODE_TCP).strip().lower()
    if value not in (MODE_TCP, MODE_CURVE):
        raise ValueError(f"{MODE_ENV}={value!r}: expected {MODE_TCP!r} (plain TCP, authenticated "
                         f"by the cluster secret) or {MODE_CURVE!r} (object bytes encrypted)")
    return value


def max_rate():
    """ZRAY_DATA_MAX_BYTES_PER_S as a positive number, or None."""
    value = os.environ.get("ZRAY_DATA_MAX_BYTES_PER_S")
    if not value:
        return None
    rate = float(value)
    if not rate > 0 or rate == float("inf"):
        raise ValueError(f"ZRAY_DATA_MAX_BYTES_PER_S={value!r}: expected a positive number of bytes")
    return rate


def max_connections():
    """ZRAY_DATA_MAX_CONNECTIONS as an int >= 1, or MAX_CONNECTIONS."""
    value = os.environ.get(MAX_CONNECTIONS_ENV)
    if not value:
        return MAX_CONNECTIONS
    try:
        cap = int(value)
    except ValueError:
        cap = 0
    if cap < 1:
        raise ValueError(f"{MAX_CONNECTIONS_ENV}={value!r}: expected a whole number of "
                         f"connections >= 1")
    return cap


def derive_key(cluster_secret):
    if not cluster_secret:
        raise ValueError("the cluster secret is empty")
    return hashlib.sha256(b"zray-data-v1:" + cluster_secret.encode()).digest()


def _mac(key, role, server_nonce, client_nonce, address):
    return hmac.new(key, role + server_nonce + client_nonce + address, hashlib.sha256).digest()


def _recv_exactly(sock, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise ConnectionError(f"the peer closed the connection after {got} of {n} bytes")
        got += k
    return bytes(buf)


def host_port(endpoint):
    """('10.0.0.5', 41234) of 'tcp://10.0.0.5:41234' (IPv6 hosts in brackets)."""
    rest = endpoint[len("tcp://"):] if endpoint.startswith("tcp://") else endpoint
    host, port = rest.rsplit(":", 1)
    return host.strip("[]"), int(port)


class AuthenticationFailed(ConnectionError):
    """The other end does not hold the cluster secret."""


# -- the source's side ----------------------------------------------------------------------------
class _Grant:
    __slots__ = ("base", "size", "busy", "revoked", "active")

    def __init__(self, base, size):
        self.base = base
        self.size = size
        self.busy = 0          # requests being sent now
        self.revoked = False
        self.active = False    # sent something since the last `take_active`


class DataServer:
    """Listens on `host`, serves granted byte ranges to authenticated peers; buffer(offset,
    length) gives the bytes (the store's buffer: the region, or a file-backed object).

    Thread-safe interface for the daemon's loop: grant, revoke, revoke_peer, take_active,
    close. One thread accepts; one thread per connection serves it, `max_connections` at most
    (MAX_CONNECTIONS above says what happens at the cap)."""

    def __init__(self, key, host, buffer, max_bytes_per_s=None, max_connections=None):
        self.key = key
        self.buffer = buffer
        self.max_bytes_per_s = max_bytes_per_s
        self.max_connections = max_connections or MAX_CONNECTIONS
        self._paced_until = 0.0            # with a rate cap: when the bytes sent so far are due
        self._grants = {}                  # (peer address, pull_id) -> _Grant
        self._lock = threading.Lock()
        self._slot_freed = threading.Condition(self._lock)
        self._idle = {}                    # conn -> None, oldest first: waiting for a request
                                           # after serving one (its client pools it)
        self._at_cap = False               # warned for this episode at the cap
        self.evicted = 0                   # idle connections closed to make room
        self.waited = 0                    # connections that waited for a slot
        self.peak_connections = 0
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(64)
        port = self._listener.getsockname()[1]
        self.endpoint = f"tcp://[{host}]:{port}" if family == socket.AF_INET6 else f"tcp://{host}:{port}"
        self._conns = set()
        self._threads = []
        self._closed = False
        self.refused = 0                   # connections that failed the handshake
        self.bytes_sent = 0
        self._acceptor = threading.Thread(target=self._accept_loop, name="zray-data-accept",
                                          daemon=True)
        self._acceptor.start()

    # -- the loop's interface ----------------------------------------------------------------
    def grant(self, peer, pull_id, base, size):
        with self._lock:
            self._grants[(peer, pull_id)] = _Grant(base, size)

    def revoke(self, peer, pull_id):
        with self._lock:
            grant = self._grants.pop((peer, pull_id), None)
            if grant is not None:
                grant.revoked = True

    def take_active(self):
        """The (peer, pull_id) of grants that sent bytes since the last call, or send now."""
        with self._lock:
            out = []
            for key, grant in self._grants.items():
                if grant.active or grant.busy:
                    out.append(key)
                    grant.active = False
            return out

    def close(self):
        with self._lock:
            self._closed = True
            conns = list(self._conns)
            self._grants.clear()
            self._slot_freed.notify_all()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for conn in conns:
            _shutdown(conn)
        for thread in [self._acceptor, *self._threads]:
            thread.join(timeout=2.0)

    # -- threads ------------------------------------------------------------------------------
    def _accept_loop(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return         # closed
            with self._lock:
                self._make_room()
                if self._closed:
                    conn.close()
                    return
                self._conns.add(conn)
                self.peak_connections = max(self.peak_connections, len(self._conns))
                self._threads = [t for t in self._threads if t.is_alive()]
                thread = threading.Thread(target=self._serve, args=(conn,), name="zray-data-serve",
                                          daemon=True)
                self._threads.append(thread)
            thread.start()

    def _make_room(self):
        """With the lock held, before a new connection gets a thread: below the cap at once;
        at it, close the longest-idle pooled connection, or wait until a thread ends."""
        while len(self._conns) >= self.max_connections and not self._closed:
            if not self._at_cap:
                self._at_cap = True
                log.warning("data channel: %d connections, the cap (%s=%d): idle ones are "
                            "closed to make room, new ones wait", len(self._conns),
                            MAX_CONNECTIONS_ENV, self.max_connections)
            if self._idle:
                victim = next(iter(self._idle))
                del self._idle[victim]
                self.evicted += 1
                _shutdown(victim)          # its thread ends and frees the slot
            else:
                self.waited += 1
            self._slot_freed.wait(timeout=1.0)
        if self._at_cap and len(self._conns) < self.max_connections // 2:
            self._at_cap = False

    def _serve(self, conn):
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = self._handshake(conn)
            if peer is None:
                return
            conn.settimeout(None)
            served = False
            while True:
                if served:
                    # Only a connection that served a request may be closed for room: its
                    # client pooled it and opens a new one when the close comes first.
                    with self._lock:
                        if self._closed:
                            return
                        self._idle[conn] = None
                try:
                    request = _recv_exactly(conn, _REQUEST.size)
                except (ConnectionError, OSError):
                    return     # the puller closed its connection (or it was closed for room)
                with self._lock:
                    evicted = served and conn not in self._idle
                    self._idle.pop(conn, None)
                if evicted:
                    return     # closed for room as its request arrived: its client sees the
                               # close before any answer and retries on a new connection
                self._answer(conn, peer, *_REQUEST.unpack(request))
                served = True
        except OSError as exc:
            log.debug("data connection ended: %r", exc)
        finally:
            with self._lock:
                self._conns.discard(conn)
                self._idle.pop(conn, None)
                self._slot_freed.notify_all()
            conn.close()

    def _handshake(self, conn):
        conn.settimeout(CONNECT_TIMEOUT_S)
        server_nonce = os.urandom(NONCE)
        try:
            conn.sendall(MAGIC + server_nonce)
            head = _recv_exactly(conn, NONCE + MAC + 2)
            client_nonce, mac, n = head[:NONCE], head[NONCE:NONCE + MAC], head[-2:]
            n = int.from_bytes(n, "big")
            if n > _MAX_ADDRESS:
                raise AuthenticationFailed(f"an address of {n} bytes")
            address = _recv_exactly(conn, n)
        except (OSError, ConnectionError) as exc:
            self.refused += 1
            log.warning("data channel: refused a connection that did not complete the "
                        "handshake: %s", exc)
            return None
        if not hmac.compare_digest(mac, _mac(self.key, b"client", server_nonce, client_nonce,
                                             address)):
            self.refused += 1
            log.warning("data channel: refused a peer without the cluster secret (it claimed to "
                        "be %r)", address[:80])
            return None
        conn.sendall(_mac(self.key, b"server", server_nonce, client_nonce, address))
        return address.decode(errors="replace")

    def _answer(self, conn, peer, pull_id, offset, length):
        with self._lock:
            grant = self._grants.get((peer, pull_id))
            ok = (grant is not None and not grant.revoked and length > 0
                  and offset + length <= grant.size)
            if ok:
                grant.busy += 1
        if not ok:
            text = (f"no transfer {pull_id} of {length} bytes at offset {offset} for "
                    f"{peer}").encode()[:_MAX_ERROR]
            conn.sendall(_ANSWER.pack(1, len(text)) + text)
            return
        try:
            conn.sendall(_ANSWER.pack(0, length))
            start = grant.base + offset
            end = start + length
            buffer = self.buffer
            while start < end:
                if grant.revoked:
                    # The control plane ended the transfer (the puller gave up, or its node
                    # died): the object may move now, stop reading it. The puller sees a
                    # short stream.
                    raise ConnectionAbortedError("the transfer was revoked")
                n = min(SEND_SLICE, end - start)
                if self.max_bytes_per_s:
                    self._pace(n)
                conn.sendall(buffer(start, n))
                start += n
                self.bytes_sent += n
                grant.active = True
        finally:
            with self._lock:
                grant.busy -= 1


    def _pace(self, n):
        with self._lock:
            now = time.monotonic()
            start = max(now, self._paced_until)
            self._paced_until = start + n / self.max_bytes_per_s
        if start > now:
            time.sleep(start - now)


def _shutdown(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# -- the puller's side ------------------------------------------------------------------------------
class _Stream:
    __slots__ = ("pull_id", "endpoint", "base", "size", "sock", "cancelled")

    def __init__(self, pull_id, endpoint, base, size):
        self.pull_id = pull_id
        self.endpoint = endpoint
        self.base = base
        self.size = size
        self.sock = None
        self.cancelled = False


class DataClient:
    """Streams granted objects from peers' DataServers into buffer(base, size), on a few
    threads.

    The loop calls start(pull_id, endpoint, base, size) and cancel(pull_id); each stream ends
    exactly once with (pull_id, failure) in `take_done()`, failure None or (kind, detail), kind
    one of CONNECT, TIMEOUT, BROKEN, REFUSED, CANCELLED. Until that report the stream may write
    into buffer(base, size): the loop keeps that space allocated until then. `wake_fd` (an
    eventfd) becomes readable when a report is waiting. Connections are kept per endpoint and
    reused by the next stream."""

    def __init__(self, key, own_address, buffer, stall_timeout_s, threads=STREAM_THREADS):
        self.key = key
        self.own_address = own_address.encode()
        self.buffer = buffer
        self.stall_timeout_s = stall_timeout_s
        self._done = Completions()
        self.wake_fd = self._done.fd
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queue = collections.deque()
        self._streams = {}                 # pull_id -> _Stream, queued or running
        self._idle = collections.defaultdict(list)   # endpoint -> [socket]
        self._closed = False
        self.bytes_received = 0
        self._threads = [threading.Thread(target=self._run, name=f"zray-data-pull-{i}", daemon=True)
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()

    # -- the loop's interface ----------------------------------------------------------------
    def start(self, pull_id, endpoint, base, size):
        with self._lock:
            stream = self._streams[pull_id] = _Stream(pull_id, endpoint, base, size)
            self._queue.append(stream)
            self._work.notify()

    def cancel(self, pull_id):
        """Stop a stream at once; its report (CANCELLED) follows on `take_done`."""
        with self._lock:
            stream = self._streams.get(pull_id)
            if stream is None:
                return
            stream.cancelled = True
            if stream.sock is not None:
                _shutdown(stream.sock)     # a recv in progress returns now

    def take_done(self):
        return self._done.take_all()

    def close(self):
        with self._lock:
            self._closed = True
            for stream in self._streams.values():
                stream.cancelled = True
                if stream.sock is not None:
                    _shutdown(stream.sock)
            idle = [s for socks in self._idle.values() for s in socks]
            self._idle.clear()
            self._work.notify_all()
        for sock in idle:
            sock.close()
        for thread in self._threads:
            thread.join(timeout=2.0)
        self._done.close()

    # -- threads ------------------------------------------------------------------------------
    def _run(self):
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._work.wait()
                if self._closed:
                    return
                stream = self._queue.popleft()
            failure = self._stream(stream)
            with self._lock:
                self._streams.pop(stream.pull_id, None)
            self._done.put((stream.pull_id, failure))

    def _stream(self, stream):
        failure = self._stream_once(stream, pooled_ok=True)
        if failure is _STALE:
            # A pooled connection the source had closed meanwhile (nothing was read from it):
            # once more on a fresh one.
            failure = self._stream_once(stream, pooled_ok=False)
        return failure

    def _stream_once(self, stream, pooled_ok):
        if stream.cancelled:
            return (CANCELLED, "cancelled before it started")
        try:
            sock, pooled = self._checkout(stream.endpoint, pooled_ok)
        except (OSError, ConnectionError) as exc:
            return (CONNECT, f"cannot open the data channel to {stream.endpoint}: {exc}")
        with self._lock:
            stream.sock = sock
            cancelled = stream.cancelled
        if cancelled:
            sock.close()
            return (CANCELLED, "cancelled")
        got = 0
        answered = False
        try:
            sock.settimeout(self.stall_timeout_s)
            sock.sendall(_REQUEST.pack(stream.pull_id, 0, stream.size))
            status, n = _ANSWER.unpack(_recv_exactly(sock, _ANSWER.size))
            answered = True
            if status != 0:
                text = _recv_exactly(sock, min(n, _MAX_ERROR)).decode(errors="replace")
                self._checkin(stream.endpoint, sock)
                return (REFUSED, text)
            if n != stream.size:
                raise ConnectionError(f"the source announced {n} bytes, not {stream.size}")
            with self.buffer(stream.base, stream.size) as target:
                while got < n:
                    k = sock.recv_into(target[got:])
                    if k == 0:
                        raise ConnectionError("the source closed the connection")
                    got += k
                    with self._lock:
                        self.bytes_received += k
        except socket.timeout:
            sock.close()
            return (TIMEOUT, f"no data for {self.stall_timeout_s:g} s after {got} of "
                             f"{stream.size} bytes")
        except (OSError, ConnectionError) as exc:
            sock.close()
            if stream.cancelled:
                return (CANCELLED, "cancelled")
            if pooled and not answered:
                return _STALE
            return (BROKEN, f"the data stream broke after {got} of {stream.size} bytes: {exc}")
        finally:
            with self._lock:
                stream.sock = None
        self._checkin(stream.endpoint, sock)
        return None

    def _checkout(self, endpoint, pooled_ok=True):
        """(socket, whether it was pooled): an idle connection to `endpoint`, else a new one."""
        with self._lock:
            idle = self._idle.get(endpoint)
            if idle and pooled_ok:
                return idle.pop(), True
        host, port = host_port(endpoint)
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            head = _recv_exactly(sock, len(MAGIC) + NONCE)
            if head[:len(MAGIC)] != MAGIC:
                raise ConnectionError(f"{endpoint} is not a zray data channel")
            server_nonce = head[len(MAGIC):]
            client_nonce = os.urandom(NONCE)
            address = self.own_address
            sock.sendall(client_nonce + _mac(self.key, b"client", server_nonce, client_nonce, address)
                         + len(address).to_bytes(2, "big") + address)
            try:
                mac = _recv_exactly(sock, MAC)
            except ConnectionError:
                raise AuthenticationFailed(f"{endpoint} refused this node's handshake (another "
                                           f"cluster secret?)") from None
            if not hmac.compare_digest(mac, _mac(self.key, b"server", server_nonce, client_nonce,
                                                 address)):
                raise AuthenticationFailed(f"{endpoint} does not hold the cluster secret")
        except BaseException:
            sock.close()
            raise
        return sock, False

    def _checkin(self, endpoint, sock):
        with self._lock:
            if self._closed:
                sock.close()
            else:
                self._idle[endpoint].append(sock)
