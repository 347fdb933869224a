"""Addresses of zray processes, and which route reaches one.

A process of a node outside any mesh has one address, its ipc:// socket path. A process of a
node in a mesh is reachable two ways, and its address names both, with the node it lives on:

    ipc:///tmp/zray-1000/s.../sock/w1234|tcp://10.0.0.5:41234|<node_id>

Peers on the same host (the same IP) use the ipc path, which is faster and needs no keys;
peers on other hosts use the CURVE-authenticated TCP endpoint. The address is also the
process's identity on every connection, so whoever receives a message can answer it, and a
node that is declared dead can tell which addresses died with it.
"""
import itertools
import os

SEPARATOR = "|"
_ONE_SHOT_MARK = "/sock/q"
_one_shot_ids = itertools.count(1)     # next() on a count is atomic under the GIL


def tcp_endpoint(host, port):
    """'tcp://10.0.0.5:41234', or 'tcp://[::1]:41234' for an IPv6 host (brackets as ZeroMQ
    and URLs want them; a host already in brackets is kept)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


def join(ipc, tcp, node_id):
    return f"{ipc}{SEPARATOR}{tcp}{SEPARATOR}{node_id}"


def is_pair(address):
    return SEPARATOR in address


def parts(address):
    """(ipc, tcp, node_id); tcp and node_id are None for an ipc-only address."""
    if SEPARATOR not in address:
        return address, None, None
    ipc, tcp, node_id = address.split(SEPARATOR, 2)
    return ipc, tcp, node_id


def host_of(tcp):
    """'10.0.0.5' of 'tcp://10.0.0.5:41234' ('[::1]' of 'tcp://[::1]:41234': compared as is)."""
    return tcp[len("tcp://"):].rsplit(":", 1)[0]


def route(address, local_host):
    """The endpoint to connect to: the ipc path for a peer on this host, else its TCP one."""
    if SEPARATOR not in address:
        return address
    ipc, tcp, _ = address.split(SEPARATOR, 2)
    if local_host is None or host_of(tcp) == local_host:
        return ipc
    return tcp


def node_of(address):
    """The node id a mesh address names, or None."""
    return parts(address)[2]


def ipc_path(address):
    """The socket file of an address reached over ipc, or None."""
    ipc = parts(address)[0]
    return ipc[len("ipc://"):] if ipc.startswith("ipc://") else None


def one_shot(session_dir):
    """A fresh address for a short-lived client (`zray status`, a state query, the dashboard's
    poll) that sends one request and waits for its reply. Unique per call, not per process:
    threads of one process query at once, and a shared address would hand one the other's
    reply, or be unlinked under it."""
    return f"ipc://{session_dir}{_ONE_SHOT_MARK}{os.getpid()}-{next(_one_shot_ids)}"


def is_one_shot(address):
    """Whether `address` is a one-shot client's: a node answers it on a socket it closes at
    once, since such clients are never heard from again and a socket kept per client would
    leak a file descriptor per call (a dashboard polling every second ran a node out)."""
    return _ONE_SHOT_MARK in address and SEPARATOR not in address
