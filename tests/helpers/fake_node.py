"""Node services on a fake context and an in-memory network, on virtual time (no sockets, no
processes): the same NodeServices the daemon runs, with sends recorded and delivered by hand."""
from zray.mesh.swim import ALIVE, DEAD, Member
from zray.node.processes import ClientTable
from zray.node.service import Membership, NodeContext, Service
from zray.node.services import NodeServices
from zray.scheduling.local_scheduler import LocalScheduler
from zray.scheduling.resources import to_units


class FakeSwim:
    def __init__(self):
        self.members = {}


class FakeStore:
    spiller = None                 # spills are written synchronously (none happen here)

    def __init__(self):
        self.gone = []
        self.spilling = {}

    def client_gone(self, address):
        self.gone.append(address)

    def list_objects(self):
        return []


class FakeMesh(Service):
    """Stands in for MeshService: nothing to gossip."""

    def refresh_meta(self):
        pass


class Network:
    """Nodes by address; messages queue until deliver(). Messages to addresses that are not
    nodes (clients) are kept in `outbox` per address."""

    def __init__(self):
        self.now = 0.0
        self.nodes = {}           # tcp address and ipc address -> FakeNode
        self.queue = []
        self.sent = []            # every (sender, address, msg_type, payload)
        self.dead = set()

    def clock(self):
        return self.now

    def add(self, node_id, cpus=2):
        node = FakeNode(self, node_id, cpus)
        for other in {id(n): n for n in self.nodes.values()}.values():
            other.meet(node)
            node.meet(other)
        self.nodes[node.tcp] = self.nodes[node.ipc] = node
        return node

    def send_from(self, sender, address, msg_type, payload, frames):
        self.sent.append((sender, address, msg_type, payload))
        self.queue.append((sender, address, msg_type, payload, frames))
        return True

    def deliver(self, limit=10_000):
        for _ in range(limit):
            if not self.queue:
                return
            sender, address, msg_type, payload, frames = self.queue.pop(0)
            node = self.nodes.get(address)
            if node is None or node.node_id in self.dead:
                continue
            handler = node.services.handler_table.get(msg_type)
            if handler is not None:
                handler(sender, payload, frames)
        raise AssertionError("messages kept coming")

    def to(self, address, msg_type=None):
        """Payloads sent to an address (of one type)."""
        return [p for _, a, t, p in self.sent if a == address and (msg_type is None or t == msg_type)]

    def kill(self, node):
        """The node dies: every other node sees it dead."""
        self.dead.add(node.node_id)
        for other in {id(n): n for n in self.nodes.values()}.values():
            if other is not node and other.node_id not in self.dead:
                other.member_dies(node.node_id)


class FakeNode:
    def __init__(self, net, node_id, cpus):
        self.net = net
        self.node_id = node_id
        self.ipc = f"ipc://node-{node_id}"
        self.tcp = f"tcp://{node_id}:1"
        self.swim = FakeSwim()
        self.scheduler = LocalScheduler(to_units({"CPU": cpus}))
        self.membership = Membership(node_id, self.ipc)
        self.membership.attach(self.swim, self.tcp)
        self.clients = ClientTable()
        self.started, self.killed = [], []
        self.store = FakeStore()
        self.ctx = NodeContext(
            node_id, self.ipc, "/nonexistent", send=self.send, reply=self.reply,
            scheduler=self.scheduler, store=self.store, membership=self.membership,
            clients=self.clients,
            start_worker=lambda job_id, runtime_env="": self.started.append(job_id),
            kill_pid=self.killed.append, now=net.clock)
        self.services = NodeServices(self.ctx, FakeMesh())

    def send(self, address, msg_type, payload=(), frames=()):
        return self.net.send_from(self.tcp, address, msg_type, payload, frames)

    def reply(self, address, msg_type, req_id, result=None, error=None, frames=()):
        return self.send(address, msg_type, (req_id, result, error), frames)

    def meet(self, other, cpus=None):
        meta = {"resources": {"CPU": cpus or other.scheduler.total["CPU"] / 10_000},
                "available": {"CPU": cpus or other.scheduler.available["CPU"] / 10_000}}
        member = Member(other.node_id, other.tcp, 0, ALIVE, meta, self.net.now)
        self.swim.members[other.node_id] = member
        self.services.on_member("join", member)

    def member_dies(self, node_id):
        member = self.swim.members[node_id]
        member.state = DEAD
        self.services.on_member("dead", member)

    def handle(self, sender, msg_type, payload, frames=()):
        """A message from a client of this node."""
        self.services.handler_table[msg_type](sender, payload, frames)

    def register(self, address, kind, job_id, worker_id=None, pid=1):
        from zray.node.processes import Client
        self.clients.clients[address] = Client(kind, address, pid, job_id, worker_id, None)
        if kind == "driver":
            self.clients.drivers.setdefault(job_id, address)
