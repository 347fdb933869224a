"""ZeroMQ sockets for one process: an inbox everyone sends to, and one outbox per peer.

Every zray process (driver, worker, node daemon) has one address and one inbox, a ROUTER bound
on it. Messages are one-way: a reply is a new message to the requester's address. Sending works
from any thread: each peer has one DEALER, used under its own lock (a lock is a full memory
barrier, which is what ZeroMQ asks for when a socket changes threads). One socket per peer also
means everything a process sends to a peer arrives in the order it was sent, whichever thread
sent it; reference counting relies on that. Receiving is done by one thread at a time
(CoreWorker hands the inbox between its I/O thread and threads that wait for a reply).
"""
import os
import pickle
import threading

import zmq

from . import wire

_socket_recv = zmq.backend.Socket.recv     # (socket, flags, copy): pyzmq's thin base methods
_socket_send = zmq.backend.Socket.send     # (socket, data, flags, copy)
_SNDMORE = int(zmq.SNDMORE)


class TransportClosed(Exception):
    """The transport was closed while a thread tried to use it."""


class Transport:
    def __init__(self, address, io_threads=1):
        self.address = address
        self._ctx = zmq.Context(io_threads=io_threads)
        self._ctx.setsockopt(zmq.LINGER, 0)
        self.inbox = self._ctx.socket(zmq.ROUTER)
        self.inbox.setsockopt(zmq.RCVHWM, 0)
        self.inbox.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.inbox.bind(address)
        self._identity = address.encode()
        self.tcp_address = None
        self._curve = None
        self._outboxes = {}              # address -> (socket, lock)
        self._outboxes_lock = threading.Lock()
        self._closed = False
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def bind_tcp(self, address, curve_keys):
        """Also listen on tcp:// for peers on other hosts, authenticated by CURVE. Messages we
        send over TCP carry this address as our identity, so replies come back over TCP."""
        curve_keys.make_server(self.inbox)
        self.inbox.bind(address)
        self.inbox.curve_server = False     # options apply per endpoint, at bind time
        self._curve = curve_keys
        self.tcp_address = address

    # -- sending (any thread) ------------------------------------------------------------------
    def send(self, address, msg_type, payload=(), frames=()):
        header = pickle.dumps((msg_type, payload), protocol=5)
        sock, lock = self._outboxes.get(address) or self._connect(address)
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

    def _connect(self, address):
        with self._outboxes_lock:
            entry = self._outboxes.get(address)
            if entry is None:
                if self._closed:
                    raise TransportClosed(f"transport of {self.address} is closed")
                sock = self._ctx.socket(zmq.DEALER)
                sock.setsockopt(zmq.SNDHWM, 0)
                if address.startswith("tcp://"):
                    if self._curve is None:
                        raise TransportClosed(f"{self.address} has no TCP endpoint to reach {address}")
                    self._curve.make_client(sock)
                    sock.setsockopt(zmq.IDENTITY, self.tcp_address.encode())
                else:
                    sock.setsockopt(zmq.IDENTITY, self._identity)
                sock.setsockopt(zmq.RECONNECT_IVL, 20)
                sock.connect(address)
                entry = self._outboxes[address] = (sock, threading.Lock())
            return entry

    def forget(self, address):
        """Close the outbox to a peer that is gone."""
        with self._outboxes_lock:
            entry = self._outboxes.pop(address, None)
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
        With flags=zmq.NOBLOCK raises zmq.Again when the inbox is empty."""
        # Frame by frame with Frame.more: recv_multipart asks getsockopt(RCVMORE) per frame.
        recv = _socket_recv
        inbox = self.inbox
        identity = recv(inbox, flags, False)
        header = recv(inbox, 0, False)
        msg_type, payload = pickle.loads(header.buffer)
        if not header.more:
            return identity.bytes.decode(), msg_type, payload, []
        frames = []
        frame = header
        while frame.more:
            frame = recv(inbox, 0, False)
            frames.append(frame)
        return identity.bytes.decode(), msg_type, payload, frames

    def close(self, linger_ms=0):
        """Close every socket; with linger_ms, first give queued messages that long to leave."""
        with self._outboxes_lock:
            if self._closed:
                return
            self._closed = True
            entries, self._outboxes = list(self._outboxes.values()), {}
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
