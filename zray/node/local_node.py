"""A node that outlives its drivers: `zray start` / `zray stop` / `zray status` on one host,
found by `zray.init(address="auto")` through a file in the user's zray directory.

(The mesh issue extends this to many hosts over TCP; on one host a node is reached over ipc.)
"""
import itertools
import logging
import json
import os
import select
import signal
import threading
import time

from ..transport import address as addresses
from ..transport import wire
from . import bootstrap, session
from .processes import is_node_daemon, pid_alive

_NOBLOCK = 1            # zmq.NOBLOCK, without importing zmq for the launcher's first steps
NODES_DIR = "nodes"      # <user root>/nodes/<session name>.json: one file per running node


def nodes_dir():
    # Never a fallback directory: node files must be where every process of the user looks.
    return os.path.join(session.user_root(fallback=False), NODES_DIR)


def node_file_for(session_dir):
    """Where the node of `session_dir` announces itself (so init(), status, stop find it)."""
    return os.path.join(nodes_dir(), os.path.basename(os.path.normpath(session_dir)) + ".json")


def write_node_file(path, info):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


def remove_node_file(path, pid):
    """Remove a node file if it still names the node `pid` (a newer node may own the path)."""
    info = _load(path)
    if info is not None and info.get("pid") == pid:
        _unlink(path)


def _unlink(path):
    """Remove a node file, and the nodes folder once it is empty (so the user's root can go)."""
    try:
        os.unlink(path)
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass


def _load(path):
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    info["node_file"] = path
    return info


def _live(info):
    """info when its node runs; else clear what the killed node left (its workers died with
    it) and None."""
    if info is None:
        return None
    if pid_alive(info.get("pid", 0)) and is_node_daemon(info["pid"], info.get("start_time"),
                                                        info.get("session", "")):
        return info
    _unlink(info["node_file"])
    if info.get("session"):
        kept = session.keep_logs_only(info["session"])    # it died on its own: logs say why
        if kept:
            logging.getLogger("zray").warning(
                "the zray node %s (pid %s) had died; its logs are kept in %s",
                info.get("address", "?"), info.get("pid"), kept)
    return None


def read_node_files():
    """Every running node of this user on this host: its {session, address, pid, node_id,
    mesh_address, secret_file, slurm_job_id, node_file}, oldest first."""
    try:
        names = sorted(os.listdir(nodes_dir()))
    except OSError:
        return []
    found = [_live(_load(os.path.join(nodes_dir(), n))) for n in names if n.endswith(".json")]
    found = [info for info in found if info is not None]
    return sorted(found, key=lambda info: info.get("started", 0))


def describe(info):
    mesh = info.get("mesh_address") or "no mesh"
    job = f", Slurm job {info['slurm_job_id']}" if info.get("slurm_job_id") else ""
    return f"node pid {info['pid']} ({mesh}{job}, session {info['session']})"


class AmbiguousNodeError(ConnectionError):
    """Several zray clusters run on this host and the address does not say which."""


def find_node(address=None):
    """The node of this host that `address` means: "auto" (or None: ZRAY_ADDRESS, else auto),
    "host:port" of any member of the wanted cluster, or the path of a node file.

    "auto" takes the only node of this user on this host; inside a Slurm job, the only one of
    that job. ConnectionError when none fits; AmbiguousNodeError naming every candidate when
    several do."""
    if address in (None, ""):
        address = os.environ.get("ZRAY_ADDRESS") or os.environ.get("RAY_ADDRESS") or "auto"
    if address.endswith(".json") and os.sep in address:
        info = _live(_load(address))
        if info is None:
            raise ConnectionError(f"no running zray node announces itself in {address}")
        return info
    nodes = read_node_files()
    if address == "auto":
        job = os.environ.get("SLURM_JOB_ID")
        in_job = [n for n in nodes if job and n.get("slurm_job_id") == job]
        candidates = in_job or nodes
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise ConnectionError(
                "found no running zray node on this host; start one with `zray start` (with "
                "--address HOST:PORT to join a mesh)")
        raise AmbiguousNodeError(
            f"{len(candidates)} zray clusters run on this host; say which with "
            f"address='HOST:PORT' (or ZRAY_ADDRESS): "
            + "; ".join(describe(n) for n in candidates))
    target = address if address.startswith("tcp://") else f"tcp://{address}"
    exact = [n for n in nodes if n.get("mesh_address") == target]
    if exact:
        return exact[0]
    members = [n for n in nodes if n.get("mesh_address") and _in_mesh_of(n, target)]
    if len(members) == 1:
        return members[0]
    if not members:
        here = "; ".join(describe(n) for n in nodes) or "none"
        raise ConnectionError(
            f"no zray node on this host is in the mesh of {address} (nodes here: {here}); "
            f"join it with `zray start --address {address}`")
    raise AmbiguousNodeError(f"several zray nodes on this host are in the mesh of {address}: "
                             + "; ".join(describe(n) for n in members))


def _in_mesh_of(info, target):
    try:
        nodes = query(wire.CLUSTER_INFO, info, timeout=3.0)["nodes"]
    except (TimeoutError, OSError):
        return False
    return any(n.get("MeshAddress") == target and n.get("Alive") for n in nodes)


def free_port(host):
    """A TCP port free on `host` now (IPv4 or IPv6)."""
    import socket
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start(num_cpus, num_gpus, resources, object_store_memory, block=False, timeout=60,
          port=0, join=None, node_ip="127.0.0.1", secret_file=None, dashboard=(None, "127.0.0.1")):
    """Start a node on this host (several may run: one per cluster); returns its info. With
    block=True it runs until stopped, and it ends with this process (kill -9 included)."""
    session_dir = session.create_session_dir()
    if join and not port:
        port = free_port(node_ip)
    spec = bootstrap.NodeSpec(
        session_dir=session_dir, num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
        object_store_memory=object_store_memory, node_ip=node_ip, port=port, join=join,
        secret_file=secret_file, node_file=node_file_for(session_dir),
        driver_pid=os.getpid() if block else 0, dashboard_port=dashboard[0],
        dashboard_host=dashboard[1])
    try:
        node = bootstrap.start_node(spec, timeout)
    except BaseException:
        session.remove_session_dir(session_dir)
        raise
    info = _load(spec.node_file)
    if block:
        def forward(signum, frame):
            node.proc.send_signal(signal.SIGTERM)
        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        info = dict(info or {}, exit_code=node.wait())
    return info


def stop(address=None, every=False, timeout=10):
    """Stop the node `address` names (find_node), or with every=True all of this user's nodes
    on this host (never another user's). The number of nodes stopped."""
    if every:
        return sum(_stop(info, timeout) for info in read_node_files())
    try:
        info = find_node(address)
    except AmbiguousNodeError:
        raise
    except ConnectionError:
        return 0
    return int(_stop(info, timeout))


def _stop(info, timeout):
    pid = info["pid"]
    # Signal through a pidfd opened before checking the process is the node: the check and
    # the signal then concern one process, even if the node dies and its pid is reused between.
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if not is_node_daemon(pid, info.get("start_time"), info["session"]):
            remove_node_file(info["node_file"], pid)
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        if not select.select([pidfd], [], [], timeout)[0]:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], 5)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)
    remove_node_file(info["node_file"], pid)
    session.remove_session_dir(info["session"])
    return True


CLOSE_CHECK_MS = 50     # a waiting query sees close() this soon (a launcher stopping)


class NodeClient:
    """Requests to a running node over one transport kept open: a launcher's watch asks its
    node four times a second for as long as the job runs, and a transport per request (a
    ZeroMQ context, its I/O thread, a socket file) cost 0.4-1 ms of the asking process's
    CPU, under the GIL, each time (0.1 ms kept open). Any thread may ask; one at a time."""

    def __init__(self, info):
        self.info = info
        self._transport = None
        self._address = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False

    def query(self, msg_type, timeout=10.0, args=()):
        """Send (req_id, *args); the reply's result, or its error raised."""
        with self._lock:
            if self._closed:
                raise ConnectionError("the node client is closed")
            transport = self._transport
            if transport is None:
                # Imported here: zmq and the transport are not on the path of `python -m
                # zray.launch` before it spawns its node (it only needs this module then).
                from ..transport.zmq_transport import Transport
                self._address = addresses.one_shot(self.info["session"])
                transport = self._transport = Transport(self._address)
            req_id = next(self._ids)
            transport.send(self.info["address"], msg_type, (req_id, *args))
            deadline = time.monotonic() + timeout
            while True:
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms <= 0:
                    raise TimeoutError(f"the zray node at {self.info['address']} did not "
                                       f"answer in {timeout}s")
                if self._closed:       # close() waits for this lock: let it have it
                    raise ConnectionError("the node client was closed while it waited")
                if not transport.inbox.poll(min(left_ms, CLOSE_CHECK_MS)):
                    continue
                _, reply_type, payload, _ = transport.recv(_NOBLOCK)
                try:
                    answered, result, error = payload
                except (TypeError, ValueError):
                    raise RuntimeError(f"the node answered with "
                                       f"{wire.NAMES.get(reply_type, reply_type)}: "
                                       f"{payload!r}") from None
                if answered != req_id:       # the late reply to a request that timed out
                    continue
                if error is not None:
                    raise error
                return result

    def close(self):
        """Within CLOSE_CHECK_MS, even while another thread waits for a silent node."""
        self._closed = True
        with self._lock:
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
            try:
                os.unlink(self._address[len("ipc://"):])
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def query(msg_type, info, timeout=10.0):
    """One request to a running node from a short-lived client (for `zray status`)."""
    with NodeClient(info) as client:
        return client.query(msg_type, timeout)


def status(address=None):
    info = find_node(address)
    return {
        "node": info,
        "cluster": query(wire.CLUSTER_INFO, info),
        "store": query(wire.STORE_STATS, info),
        "actors": query(wire.LIST_ACTORS, info),
    }
