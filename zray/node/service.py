"""What every node service gets and may implement: NodeContext, Membership, Service.

The node daemon (daemon.py) owns the event loop, the processes (pidfds, the zygote) and an
ordered list of services. Each service declares the messages it handles (`handlers()`) and
overrides the lifecycle hooks it cares about; the daemon builds one handler table from every
service at start (a message type claimed twice raises) and fans each lifecycle event out to
every service, in list order, from one place:

    tick(now)               every turn of the loop (only services that override it)
    member_joined(member)   a mesh member is alive (new, or back)
    member_updated(member)  a member's gossiped view (resources, load) changed
    member_gone(member)     a member is dead or left
    ring_changed(ring)      the set of live members changed: keys may have new deciders
    worker_died(worker_id, detail)  a registered worker of this node exited
    client_gone(gone)       a driver or worker died, here or on another node: one event
    job_finished(job_id)    a job's driver is gone
    close()                 the node is shutting down

A service reads another one only through the methods that service documents as its interface
(no private attributes, no state machines' internals). Tests drive services with a fake context
on virtual time (tests/test_unit_node_services.py).
"""
import time
from dataclasses import dataclass

from ..mesh.ring import HashRing
from ..mesh.swim import ALIVE, SUSPECT


@dataclass(frozen=True, slots=True)
class ClientGone:
    """A driver or worker process died. `local`: it was a client of this node."""
    address: str
    kind: str        # "driver" | "worker" | None: a process of this node that never registered
    job_id: str
    local: bool


class Membership:
    """A read-only view of the mesh for services; MeshService keeps it current. Outside a
    mesh (one node), `in_mesh` is False and every other node is unknown."""

    def __init__(self, node_id, address):
        self.node_id = node_id
        self.address = address            # the node's ipc address
        self.mesh_address = None          # its tcp address, in a mesh
        self.ring = HashRing([node_id])   # live members, for keys with one decider
        self._swim = None

    # -- kept by MeshService and the daemon --------------------------------------------------
    def attach(self, swim, mesh_address):
        self._swim = swim
        self.mesh_address = mesh_address

    def set_ring(self, ring):
        self.ring = ring

    # -- the view ----------------------------------------------------------------------------
    @property
    def in_mesh(self):
        return self._swim is not None

    def home_address(self):
        """Where callers on any host reach this node: an ipc|tcp pair (callers on this host use
        the ipc path), or None outside a mesh."""
        if self._swim is None:
            return None
        from ..transport.address import join
        return join(self.address, self.mesh_address, self.node_id)

    def address_of(self, node_id):
        """The mesh address of a member (live or not), or None for an unknown one."""
        if self._swim is None:
            return None
        member = self._swim.members.get(node_id)
        return member.address if member is not None else None

    def state_of(self, node_id):
        """ALIVE, SUSPECT, DEAD, LEFT, or None for a member this node never heard of."""
        if self._swim is None:
            return None
        member = self._swim.members.get(node_id)
        return member.state if member is not None else None

    def is_live(self, node_id):
        if node_id == self.node_id:
            return True
        return self.state_of(node_id) in (ALIVE, SUSPECT)

    def live_nodes(self):
        if self._swim is None:
            return {self.node_id}
        return {self.node_id} | {m.name for m in self._swim.members.values()
                                 if m.state in (ALIVE, SUSPECT)}

    def node_at(self, mesh_address):
        if self._swim is not None:
            for member in self._swim.members.values():
                if member.address == mesh_address:
                    return member.name
        return None

    def peers(self):
        """Every other member this node knows (swim Members: name, address, state, meta)."""
        if self._swim is None:
            return []
        return [m for m in self._swim.members.values() if m.name != self.node_id]


class NodeContext:
    """What a service may use of its node. The daemon makes one; tests make a fake one.

    send(address, msg_type, payload=(), frames=()) -> bool: False when it could not be sent
    (the failure is logged; a closed transport is quiet). reply(address, msg_type, req_id,
    result=None, error=None, frames=()): a reply that cannot be sent becomes an error reply.
    """

    def __init__(self, node_id, address, session_dir, *, send, reply, scheduler, store,
                 membership, clients, start_worker, kill_pid, now=time.monotonic,
                 hostname="", node_ip="127.0.0.1"):
        self.node_id = node_id
        self.address = address
        self.session_dir = session_dir
        self.hostname = hostname
        self.node_ip = node_ip
        self.send = send
        self.reply = reply
        self.now = now
        self.scheduler = scheduler
        self.store = store
        self.membership = membership
        self.clients = clients            # processes.ClientTable (read it only)
        self.start_worker = start_worker  # start_worker(job_id, runtime_env): one more worker process
        self.kill_pid = kill_pid          # kill_pid(pid): SIGKILL a process of this node


class Service:
    """A part of the node daemon. Every hook does nothing unless overridden."""

    def handlers(self):
        """{message type: handler(sender, payload, frames)} this service serves."""
        return {}

    def tick(self, now):
        pass

    def member_joined(self, member):
        pass

    def member_updated(self, member):
        pass

    def member_gone(self, member):
        pass

    def ring_changed(self, ring):
        pass

    def worker_died(self, worker_id, detail):
        pass

    def client_gone(self, gone):
        pass

    def job_finished(self, job_id):
        pass

    def close(self):
        pass


def overrides(service, hook):
    """Whether a service implements a hook (the daemon calls only those on hot paths)."""
    return getattr(type(service), hook) is not getattr(Service, hook)


def build_handler_table(services):
    """One {message type: bound handler} for every service; a type claimed twice raises."""
    from ..transport import wire
    table, owner = {}, {}
    for service in services:
        for msg_type, handler in service.handlers().items():
            if msg_type in table:
                raise ValueError(
                    f"message {wire.NAMES.get(msg_type, msg_type)} is handled by both "
                    f"{type(owner[msg_type]).__name__} and {type(service).__name__}")
            table[msg_type] = handler
            owner[msg_type] = service
    return table
