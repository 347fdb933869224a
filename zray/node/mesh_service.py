"""The node daemon's part in the mesh: a TCP endpoint with CURVE, and SWIM membership.

The Swim state machine gets real time on every turn of the daemon's loop and its messages
travel as MESH_SWIM between daemons. The node's resources (total and available) ride on its
`alive` gossip, refreshed at most once a second when they change, so every node has a view of
every other node's resources: `cluster_resources()` and `nodes()` read it.
"""
import random
import sys
import time

from ..mesh.swim import ALIVE, DEAD, LEFT, SUSPECT, Swim, SwimConfig

META_REFRESH_S = 1.0


def tcp_address(host_port):
    return host_port if host_port.startswith("tcp://") else f"tcp://{host_port}"


class MeshService:
    """Mixed into NodeDaemon."""

    swim = None

    def _init_mesh(self):
        args = self.args
        if not args.port:
            return
        from ..mesh.security import CurveKeys, generate_secret, load_secret
        secret = load_secret(args.secret_file)
        self.secret_file = args.secret_file
        if secret is None:
            if args.join:
                raise SystemExit("zray node: joining a cluster needs its secret: set "
                                 "ZRAY_CLUSTER_SECRET or pass --secret-file")
            secret, self.secret_file = generate_secret(self.session_dir)
        elif self.secret_file is None:
            # Given by the environment: keep a 0600 copy in the session dir, where this node's
            # drivers and workers read it to listen on TCP themselves.
            _, self.secret_file = generate_secret(self.session_dir, secret)
        address = f"tcp://{args.node_ip}:{args.port}"
        self.transport.bind_tcp(address, CurveKeys(secret))
        self.mesh_address = address
        now = time.monotonic()
        self.swim = Swim(self.node_id, address, meta=self._mesh_meta(),
                         config=SwimConfig(), rng=random.Random(), now=now)
        self._last_meta = self._mesh_meta()
        self._next_meta = now + META_REFRESH_S
        self.handlers[self.wire.MESH_SWIM] = self.on_mesh_swim
        if args.join:
            self.swim.join([tcp_address(a) for a in args.join.split(",")], now)
        self._mesh_flush()

    def mesh_endpoint(self):
        """What this node's drivers and workers need to listen on TCP too, or None."""
        if self.swim is None:
            return None
        return {"ip": self.args.node_ip, "secret_file": self.secret_file, "node_id": self.node_id}

    def _mesh_meta(self):
        return {
            "resources": self.from_units(self.total_units),
            "available": self.from_units({k: v for k, v in self.scheduler.available.items() if v > 0}),
            "hostname": self.hostname, "ip": self.args.node_ip,
            "queued": self.scheduler.num_queued(),      # the load, beside the free resources
        }

    def mesh_tick(self):
        if self.swim is None:
            return
        now = time.monotonic()
        if now >= self._next_meta:
            self._next_meta = now + META_REFRESH_S
            meta = self._mesh_meta()
            if meta != self._last_meta:
                self._last_meta = meta
                self.swim.update_meta(meta, now)
        self.swim.tick(now)
        self._mesh_flush()
        self.move_queued_tasks()
        if self.name_requests:
            self.names_tick(now)
        if self.pending_finds:
            self._answer_finds(now)

    def on_mesh_swim(self, sender, payload, frames):
        self.swim.receive(sender, payload[0], time.monotonic())
        self._mesh_flush()

    def _mesh_flush(self):
        for address, message in self.swim.take_outbox():
            self.send(address, self.wire.MESH_SWIM, (message,))
        for kind, member in self.swim.take_events():
            if kind != "update":
                print(f"zray node {self.node_id[:8]}: member {member.name[:8]} at {member.address} "
                      f"is {'alive' if kind == 'join' else kind}", file=sys.stderr, flush=True)
            self.member_changed(kind, member)
            if kind != "update":
                self.names_membership_changed()
                self.actor_replicas_membership_changed()

    def mesh_leave(self):
        if self.swim is not None:
            self.swim.leave(time.monotonic())
            self._mesh_flush()

    def mesh_nodes(self):
        """Every other member as a node record, in the shape of ray.nodes()."""
        if self.swim is None:
            return []
        out = []
        for member in self.swim.members.values():
            if member.name == self.node_id:
                continue
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


__all__ = ["MeshService", "sum_resources", "DEAD", "LEFT"]
