"""The node daemon's part in the mesh: a TCP endpoint with CURVE, and SWIM membership.

The Swim state machine gets real time on every turn of the daemon's loop and its messages
travel as MESH_SWIM between daemons. The node's resources (total and available) ride on its
`alive` gossip, refreshed at most once a second when they change, so every node has a view of
every other node's resources: `cluster_resources()` and `nodes()` read it. Membership changes
go to the daemon (`on_member(kind, member)`), which fans them out to every service; this
service keeps the Membership view (service.py) that the others read.

Interface: endpoint() for the node's processes, nodes() for cluster info, refresh_meta() when
the resources changed, leave() at shutdown.
"""
import logging
import random

from ..mesh.swim import ALIVE, SUSPECT, Swim, SwimConfig
from ..scheduling.resources import from_units
from ..transport import wire
from .service import Service

log = logging.getLogger("zray.mesh")

META_REFRESH_S = 1.0


def tcp_address(host_port):
    return host_port if host_port.startswith("tcp://") else f"tcp://{host_port}"


class MeshService(Service):
    def __init__(self, ctx, transport, args, on_member):
        """on_member(kind, member): a SWIM event ("join", "update", "suspect", "dead",
        "leave"), for the daemon to fan out."""
        self.ctx = ctx
        self.scheduler = ctx.scheduler
        self.args = args
        self.on_member = on_member
        self.swim = None
        self.secret_file = None
        self.mesh_address = None
        self.cluster_secret = None        # also keys the data channel (object_service.py)
        if not args.port:
            return
        from ..mesh.security import CurveKeys, generate_secret, load_secret
        secret = load_secret(args.secret_file)
        self.secret_file = args.secret_file
        if secret is None:
            if args.join:
                raise SystemExit("zray node: joining a cluster needs its secret: set "
                                 "ZRAY_CLUSTER_SECRET or pass --secret-file")
            secret, self.secret_file = generate_secret(ctx.session_dir)
        elif self.secret_file is None:
            # Given by the environment: keep a 0600 copy in the session dir, where this node's
            # drivers and workers read it to listen on TCP themselves.
            _, self.secret_file = generate_secret(ctx.session_dir, secret)
        self.cluster_secret = secret
        address = f"tcp://{args.node_ip}:{args.port}"
        transport.bind_tcp(address, CurveKeys(secret))
        self.mesh_address = address
        now = ctx.now()
        self.swim = Swim(ctx.node_id, address, meta=self._meta(), config=SwimConfig(),
                         rng=random.Random(), now=now)
        ctx.membership.attach(self.swim, address)
        self._last_meta = self._meta()
        self._next_meta = now + META_REFRESH_S

    def start(self):
        """Join the seeds given on the command line (after every service exists)."""
        if self.swim is None:
            return
        if self.args.join:
            self.swim.join([tcp_address(a) for a in self.args.join.split(",")], self.ctx.now())
        self._flush()

    def handlers(self):
        return {wire.MESH_SWIM: self.on_mesh_swim} if self.swim is not None else {}

    def endpoint(self):
        """What this node's drivers and workers need to listen on TCP too, or None."""
        if self.swim is None:
            return None
        return {"ip": self.args.node_ip, "secret_file": self.secret_file,
                "node_id": self.ctx.node_id}

    def _meta(self):
        scheduler = self.scheduler
        return {
            "resources": from_units(scheduler.total),
            "available": from_units({k: v for k, v in scheduler.available.items() if v > 0}),
            "hostname": self.ctx.hostname, "ip": self.args.node_ip,
            "queued": scheduler.num_queued(),      # the load, beside the free resources
        }

    def refresh_meta(self):
        """The resources changed: gossip them at the next turn."""
        if self.swim is not None:
            self._next_meta = 0.0

    def tick(self, now):
        if self.swim is None:
            return
        if now >= self._next_meta:
            self._next_meta = now + META_REFRESH_S
            meta = self._meta()
            if meta != self._last_meta:
                self._last_meta = meta
                self.swim.update_meta(meta, now)
        self.swim.tick(now)
        self._flush()

    def on_mesh_swim(self, sender, payload, frames):
        self.swim.receive(sender, payload[0], self.ctx.now())
        self._flush()

    def _flush(self):
        for address, message in self.swim.take_outbox():
            self.ctx.send(address, wire.MESH_SWIM, (message,))
        for kind, member in self.swim.take_events():
            if member.name == self.ctx.node_id:
                continue
            if kind != "update":
                log.info("member %s at %s is %s", member.name[:8], member.address,
                         "alive" if kind == "join" else kind)
            self.on_member(kind, member)

    def client_gone(self, gone):
        """A driver or worker of this node died: every peer hears of it (PEER_CLIENT_GONE)."""
        if self.swim is None or not gone.local or gone.kind is None:
            return
        for member in self.swim.members.values():
            if member.name != self.ctx.node_id and member.state in (ALIVE, SUSPECT):
                self.ctx.send(member.address, wire.PEER_CLIENT_GONE,
                              (gone.address, gone.kind, gone.job_id))

    def leave(self):
        if self.swim is not None:
            self.swim.leave(self.ctx.now())
            self._flush()

    def nodes(self):
        """Every other member as a node record, in the shape of ray.nodes()."""
        out = []
        for member in self.ctx.membership.peers():
            meta = member.meta or {}
            out.append({
                "NodeID": member.name, "Alive": member.state in (ALIVE, SUSPECT),
                "State": member.state.upper(), "NodeManagerAddress": meta.get("ip"),
                "NodeManagerHostname": meta.get("hostname"), "MeshAddress": member.address,
                "Resources": dict(meta.get("resources", {})),
                "Available": dict(meta.get("available", {})),
                "Queued": meta.get("queued", 0),
                "alive": member.state in (ALIVE, SUSPECT),
            })
        return out


def sum_resources(dicts):
    total = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total
