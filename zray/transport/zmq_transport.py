"""ZeroMQ sockets for one process: an inbox everyone sends to, and one outbox per peer.

Every zray process (driver, worker, node daemon) has one address and one inbox, a ROUTER bound
on it. Messages are one-way: a reply is a new message to the requester's address. Sending works
from any thread: each peer has one DEALER, used under its own lock (a lock is a full memory
barrier, which is what ZeroMQ asks for when a socket changes threads). One socket per peer also
means everything a process sends to a peer arrives in the order it was sent, whichever thread
sent it; reference counting relies on that. Receiving is done by one thread at a time
(CoreWorker hands the inbox between its I/O thread and threads that wait for a reply).

Versions: a DEALER's routing id is b"zray<PROTOCOL_VERSION> " + our address, so every peer
learns our protocol version in the handshake of each connection and reads it off every message
at no cost. A message from a peer of another version is dropped, that peer is told once
(PROTOCOL_MISMATCH, naming both versions) and the refusal is logged; when a peer refuses us,
`send` to it raises ProtocolMismatchError from then on and the message reaches the process, so
it can fail whatever it was waiting for from that peer.
"""
import logging
import os
import pickle
import re
import threading

import zmq

from . import address as addresses
from . import wire

_socket_recv = zmq.backend.Socket.recv     # (socket, flags, copy): pyzmq's thin base methods
_socket_send = zmq.backend.Socket.send     # (socket, data, flags, copy)
_SNDMORE = int(zmq.SNDMORE)
_ONE_SHOT_LINGER_MS = 5000
_IDENTITY_PREFIX = b"zray%d " % wire.PROTOCOL_VERSION
_PREFIX_LEN = len(_IDENTITY_PREFIX)
_FOREIGN_IDENTITY = re.compile(rb"zray(\d+) (.*)", re.S)

log = logging.getLogger("zray.transport")


class TransportClosed(Exception):
    """The transport was closed while a thread tried to use it."""


class ProtocolMismatchError(ConnectionError):
    """A peer speaks another zray protocol version (e.g. two zray releases in one mesh)."""

    def __init__(self, peer, peer_version, our_version, peer_release=None):
        self.peer = peer
        self.peer_version = peer_version
        self.our_version = our_version
        theirs = (f"protocol version {peer_version}" if peer_version is not None
                  else "a protocol older than version 3")
        release = f" (zray {peer_release})" if peer_release else ""
        super().__init__(
            f"zray peer {peer} speaks {theirs}{release}, this process speaks protocol version "
            f"{our_version} (zray {_release()}): every process of a cluster must run the same "
            f"zray release")

    def __reduce__(self):
        return (ProtocolMismatchError, (self.peer, self.peer_version, self.our_version))


def _release():
    from .. import __version__
    return __version__


def identity_of(address):
    """The routing id a transport at `address` connects with."""
    return _IDENTITY_PREFIX + address.encode()


def parse_identity(identity):
    """(protocol version | None, address) of a routing id, whatever version sent it."""
    match = _FOREIGN_IDENTITY.fullmatch(identity)
    if match is None:      # protocol 1-2: the routing id was the bare address
        return None, identity.decode(errors="replace")
    return int(match.group(1)), match.group(2).decode(errors="replace")


class Transport:
    def __init__(self, address, io_threads=1):
        self.address = address
        self._ctx = zmq.Context(io_threads=io_threads)
        self._ctx.setsockopt(zmq.LINGER, 0)
        self.inbox = self._ctx.socket(zmq.ROUTER)
        self.inbox.setsockopt(zmq.RCVHWM, 0)
        self.inbox.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.inbox.bind(address)
        self._identity = identity_of(address)
        self._tcp_identity = None
        self.tcp_address = None
        self.local_host = None           # our IP, once we listen on TCP: peers there use ipc
        self._curve = None
        self._outboxes = {}              # address -> (socket, lock)
        self._outboxes_lock = threading.Lock()
        self._closed = False
        self._refused = {}               # identity -> True: peers of another version we told
        self.refused_by = {}             # address -> ProtocolMismatchError: peers that refuse us
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def bind_tcp(self, address, curve_keys):
        """Also listen on tcp:// for peers on other hosts, authenticated by CURVE. Messages we
        send over TCP carry this address as our identity, so replies come back over TCP.
        A port of 0 picks a free one; the bound address is returned."""
        curve_keys.make_server(self.inbox)
        if address.startswith("tcp://["):
            self.inbox.setsockopt(zmq.IPV6, 1)   # an IPv6 endpoint (tcp://[::1]:port)
        if address.endswith(":0"):
            address = address[:-2] + ":*"
        self.inbox.bind(address)
        address = self.inbox.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.inbox.curve_server = False     # options apply per endpoint, at bind time
        self._curve = curve_keys
        self.tcp_address = address
        self._tcp_identity = identity_of(address)
        self.local_host = addresses.host_of(address)
        return address

    def become_mesh_process(self, tcp_host, curve_keys, node_id):
        """A driver's or worker's transport on a node in a mesh: listen on TCP too and take the
        address that names both endpoints (transport/address.py), used as identity on both."""
        tcp = self.bind_tcp(addresses.tcp_endpoint(tcp_host, 0), curve_keys)
        self.address = addresses.join(self.address, tcp, node_id)
        self._identity = self._tcp_identity = identity_of(self.address)
        return self.address

    # -- sending (any thread) ------------------------------------------------------------------
    def send(self, address, msg_type, payload=(), frames=()):
        header = pickle.dumps((msg_type, payload), protocol=5)
        if self.refused_by and address in self.refused_by:
            raise self.refused_by[address]
        entry = self._outboxes.get(address)
        if entry is None:
            if addresses.is_one_shot(address):
                self._send_once(address, header, frames)
                return
            entry = self._connect(address)
        sock, lock = entry
        # pyzmq's base send, with int flags: send_multipart type-checks every part and ORs
        # enum flags per frame (a few µs per message, on every call's critical path).
        send = _socket_send
        with lock:
            if frames:
                send(sock, header, _SNDMORE, True)
                last = len(frames) - 1
                for i, frame in enumerate(frames):
                    send(sock, frame, 0 if i == last else _SNDMORE, False)
            else:
                send(sock, header, 0, True)

    def _send_once(self, address, header, frames):
        """To a one-shot client: a socket of its own, closed after the send. The linger lets
        ZeroMQ deliver the message after the close (the client is waiting, so at once), and
        bounds how long a socket to a client that has already gone is kept."""
        with self._outboxes_lock:
            if self._closed:
                raise TransportClosed(f"transport of {self.address} is closed")
            sock = self._open(address)
        try:
            parts = [header, *frames]
            last = len(parts) - 1
            for i, part in enumerate(parts):
                _socket_send(sock, part, 0 if i == last else _SNDMORE, i == 0)
        finally:
            sock.close(linger=_ONE_SHOT_LINGER_MS)

    def _connect(self, address):
        # One socket per endpoint, however many addresses name it (a daemon's ipc path and its
        # ipc|tcp pair): a ROUTER hands an identity over to the newest connection that uses
        # it, so two sockets of ours to one peer would keep cutting each other off.
        with self._outboxes_lock:
            entry = self._outboxes.get(address)
            if entry is None:
                if self._closed:
                    raise TransportClosed(f"transport of {self.address} is closed")
                endpoint = addresses.route(address, self.local_host)
                entry = self._outboxes.get(endpoint)
                if entry is None:
                    entry = self._outboxes[endpoint] = (self._open(endpoint), threading.Lock())
                self._outboxes[address] = entry
            return entry

    def _open(self, endpoint):
        sock = self._ctx.socket(zmq.DEALER)
        if endpoint.startswith("tcp://["):
            sock.setsockopt(zmq.IPV6, 1)        # an IPv6 peer (tcp://[::1]:port)
        sock.setsockopt(zmq.SNDHWM, 0)
        if endpoint.startswith("tcp://"):
            if self._curve is None:
                sock.close(linger=0)
                raise TransportClosed(f"{self.address} has no TCP endpoint to reach {endpoint}")
            self._curve.make_client(sock)
            sock.setsockopt(zmq.IDENTITY, self._tcp_identity)
        else:
            sock.setsockopt(zmq.IDENTITY, self._identity)
        sock.setsockopt(zmq.RECONNECT_IVL, 20)
        sock.connect(endpoint)
        return sock

    def forget(self, address):
        """Close the outbox to a peer that is gone."""
        with self._outboxes_lock:
            entry = self._outboxes.pop(address, None)
            if entry is not None:
                for key in [k for k, e in self._outboxes.items() if e is entry]:
                    del self._outboxes[key]
        if entry is not None:
            with entry[1]:
                entry[0].close(linger=0)

    def wake(self):
        """Wake the I/O loop blocked in poll (safe from any thread and from __del__)."""
        try:
            os.eventfd_write(self.wake_fd, 1)
        except OSError:
            pass

    def drain_wake(self):
        try:
            os.eventfd_read(self.wake_fd)
        except (BlockingIOError, OSError):
            pass

    # -- receiving (the I/O thread only) -------------------------------------------------------
    def recv(self, flags=0):
        """One message from the inbox: (sender_address, msg_type, payload, frames).
        With flags=zmq.NOBLOCK raises zmq.Again when the inbox is empty. Messages of peers
        that speak another protocol version are not returned (module docstring)."""
        # Frame by frame with Frame.more: recv_multipart asks getsockopt(RCVMORE) per frame.
        recv = _socket_recv
        inbox = self.inbox
        while True:
            identity = recv(inbox, flags, False).bytes
            header = recv(inbox, 0, False)
            frames = []
            frame = header
            while frame.more:
                frame = recv(inbox, 0, False)
                frames.append(frame)
            if identity.startswith(_IDENTITY_PREFIX):
                msg_type, payload = pickle.loads(header.buffer)
                return identity[_PREFIX_LEN:].decode(), msg_type, payload, frames
            message = self._from_other_version(identity, header)
            if message is not None:
                return message

    def _from_other_version(self, identity, header):
        """A message whose routing id carries another protocol version (or none): a refusal
        of ours by that peer is returned to the caller; anything else is dropped, and the peer
        is told once. Only authenticated peers get here (CURVE over TCP, same user over ipc)."""
        version, address = parse_identity(identity)
        try:
            msg_type, payload = pickle.loads(header.buffer)
        except Exception as exc:   # an undecodable header: there is nobody to answer
            log.warning("dropped an undecodable message from %s (protocol %s): %r",
                        address, version, exc)
            return None
        if msg_type == wire.PROTOCOL_MISMATCH:
            error = ProtocolMismatchError(address, version, wire.PROTOCOL_VERSION,
                                          payload[2] if len(payload) > 2 else None)
            self.refused_by[address] = error
            log.error("%s", error)
            return address, msg_type, (error,), []
        if identity not in self._refused:
            self._refused[identity] = True
            error = ProtocolMismatchError(address, version, wire.PROTOCOL_VERSION)
            log.error("refusing messages of %s", error)
            try:
                self.send(address, wire.PROTOCOL_MISMATCH,
                          (version, wire.PROTOCOL_VERSION, _release(), str(error)))
            except Exception as exc:   # an address we cannot route to: the log says it
                log.warning("could not tell %s of the version mismatch: %r", address, exc)
        return None

    def close(self, linger_ms=0):
        """Close every socket; with linger_ms, first give queued messages that long to leave."""
        with self._outboxes_lock:
            if self._closed:
                return
            self._closed = True
            entries = list({id(e): e for e in self._outboxes.values()}.values())
            self._outboxes = {}
        for sock, lock in entries:
            with lock:
                sock.close(linger=linger_ms)
        self.inbox.close(linger=0)
        self._ctx.term()
        try:
            os.close(self.wake_fd)
        except OSError:
            pass


def describe(msg_type):
    return wire.NAMES.get(msg_type, f"<unknown message {msg_type}>")
