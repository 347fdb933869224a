"""A node that outlives its drivers: `zray start` / `zray stop` / `zray status` on one host,
found by `zray.init(address="auto")` through a file in the user's zray directory.

(The mesh issue extends this to many hosts over TCP; on one host a node is reached over ipc.)
"""
import contextlib
import json
import os
import select
import signal
import time

import zmq

from ..transport import wire
from ..transport.zmq_transport import Transport
from . import bootstrap, session
from .processes import is_node_daemon, pid_alive

NODE_FILE = "node.json"


def node_file_path():
    # Never a fallback directory: the node file must be where every process of the user looks.
    return os.path.join(session.user_root(fallback=False), NODE_FILE)


def read_node_file():
    """The running node's {session, address, pid}, or None (a stale file is removed)."""
    path = node_file_path()
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    if not (pid_alive(info.get("pid", 0)) and
            is_node_daemon(info["pid"], info.get("start_time"), info.get("session", ""))):
        # The node was killed (its pid may now be another process's): clear what it left
        # (its workers died with it).
        try:
            os.unlink(path)
        except OSError:
            pass
        if info.get("session"):
            session.remove_session_dir(info["session"])
        return None
    return info


def write_node_file(info):
    path = node_file_path()
    tmp = f"{path}.{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


def remove_node_file(pid):
    info = None
    try:
        with open(node_file_path()) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return
    if info.get("pid") == pid:
        try:
            os.unlink(node_file_path())
        except OSError:
            pass


def free_port(host):
    import socket
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start(num_cpus, num_gpus, resources, object_store_memory, block=False, timeout=60,
          port=0, join=None, node_ip="127.0.0.1", secret_file=None):
    """Start this user's node on this host; returns its info (with block=True: runs until
    stopped)."""
    running = read_node_file()
    if running is not None:
        raise RuntimeError(f"a zray node is already running on this host (pid {running['pid']}, "
                           f"session {running['session']}); run `zray stop` first")
    session_dir = session.create_session_dir()
    if join and not port:
        port = free_port(node_ip)
    spec = bootstrap.NodeSpec(
        session_dir=session_dir, num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
        object_store_memory=object_store_memory, node_ip=node_ip, port=port, join=join,
        secret_file=secret_file, node_file=node_file_path())
    try:
        node = bootstrap.start_node(spec, timeout)
    except BaseException:
        session.remove_session_dir(session_dir)
        raise
    info = read_node_file()
    if block:
        def forward(signum, frame):
            node.proc.send_signal(signal.SIGTERM)
        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        info = dict(info or {}, exit_code=node.wait())
    return info


def stop(timeout=10):
    """Stop this user's node on this host (never another user's). True if one was running."""
    info = read_node_file()
    if info is None:
        return False
    pid = info["pid"]
    # Signal through a pidfd opened before checking the process is the node: the check and
    # the signal then concern one process, even if the node dies and its pid is reused between.
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if not is_node_daemon(pid, info.get("start_time"), info["session"]):
            remove_node_file(pid)
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        if not select.select([pidfd], [], [], timeout)[0]:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], 5)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)
    remove_node_file(pid)
    session.remove_session_dir(info["session"])
    return True


@contextlib.contextmanager
def _query_transport(info):
    """A short-lived client's transport in the node's session; its socket file goes with it."""
    address = f"ipc://{info['session']}/sock/q{os.getpid()}"
    transport = Transport(address)
    try:
        yield transport
    finally:
        transport.close()
        try:
            os.unlink(address[len("ipc://"):])
        except OSError:
            pass


def query(msg_type, info, timeout=10.0):
    """One request to a running node from a short-lived client (for `zray status`)."""
    with _query_transport(info) as transport:
        transport.send(info["address"], msg_type, (1,))
        if not transport.inbox.poll(int(timeout * 1000)):
            raise TimeoutError(f"the zray node at {info['address']} did not answer in {timeout}s")
        _, _, payload, _ = transport.recv(zmq.NOBLOCK)
        req_id, result, error = payload
        if error is not None:
            raise error
        return result


def query_mesh(msg_type, info, timeout=3.0):
    """A listing from every live member of this node's mesh, each row tagged with its node_id.
    Members reach us over CURVE TCP (we read the cluster secret this node uses); one that does
    not answer within `timeout` is named in the second value."""
    rows = [dict(r, node_id=info["node_id"]) for r in query(msg_type, info)]
    members = [n for n in query(wire.CLUSTER_INFO, info)["nodes"][1:]
               if n.get("Alive") and n.get("MeshAddress")]
    if not members or not (info.get("mesh_address") and info.get("secret_file")):
        return rows, []
    from ..mesh.security import CurveKeys, load_secret
    from ..transport.address import host_of
    with _query_transport(info) as transport:
        transport.become_mesh_process(host_of(info["mesh_address"]),
                                      CurveKeys(load_secret(info["secret_file"])), info["node_id"])
        waiting = {}
        for i, member in enumerate(members, 1):
            waiting[i] = member["NodeID"]
            transport.send(member["MeshAddress"], msg_type, (i,))
        deadline = time.monotonic() + timeout
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0 or not transport.inbox.poll(int(left * 1000)):
                break
            _, _, payload, _ = transport.recv(zmq.NOBLOCK)
            req_id, result, error = payload
            node_id = waiting.pop(req_id, None)
            if node_id is not None and error is None:
                rows.extend(dict(r, node_id=node_id) for r in result)
        return rows, sorted(waiting.values())


def status():
    info = read_node_file()
    if info is None:
        return None
    return {
        "node": info,
        "cluster": query(wire.CLUSTER_INFO, info),
        "store": query(wire.STORE_STATS, info),
        "actors": query(wire.LIST_ACTORS, info),
    }
