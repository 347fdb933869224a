"""The node's services, composed in one place, and the one place lifecycle events fan out.

`NodeServices` builds every service with its collaborators, in the order events reach them,
and turns what the node observes (a SWIM event, a process death, a peer's PEER_CLIENT_GONE)
into the lifecycle hooks of service.py. The daemon owns one; the unit tests own one on a fake
context (tests/test_unit_node_services.py), so both run exactly this code.
"""
from ..mesh.ring import HashRing
from ..transport import wire
from ..transport.address import node_of
from .actor_host_service import ActorHostService
from .actor_replicas import ActorReplicaService
from .actor_service import ActorService
from .function_service import FunctionService
from .kv_service import KvService
from .name_service import NameService
from .object_service import ObjectService
from .pg_service import PlacementGroupService
from .preload_service import PreloadService
from .routing_service import RoutingService
from .state_service import StateService
from .service import ClientGone, build_handler_table, overrides
from .task_service import TaskService


class NodeServices:
    def __init__(self, ctx, mesh, forget=None, more_handlers=(), preload=None):
        """mesh: the MeshService (or a stand-in with refresh_meta()); forget(address): drop the
        connection to a process that died; more_handlers: other owners of handlers() (the
        daemon) checked against the services for duplicates."""
        self.ctx = ctx
        self._forget = forget or (lambda address: None)
        self.mesh = mesh
        self.objects = ObjectService(ctx)
        self.functions = FunctionService(ctx)
        self.tasks = TaskService(ctx)
        self.routing = RoutingService(ctx, self.tasks, self.functions)
        self.hosting = ActorHostService(ctx, self.tasks)
        self.names = NameService(ctx)
        self.actors = ActorService(ctx, self.tasks, self.routing, self.names, self.hosting)
        self.replicas = ActorReplicaService(ctx, self.actors, self.functions)
        self.groups = PlacementGroupService(ctx, self.tasks, self.routing, self.names,
                                            self.actors, self.hosting, mesh.refresh_meta)
        self.kv = KvService(ctx)
        self.state = StateService(ctx, self.tasks, self.actors, self.groups, mesh, self.kv)
        self.preload = PreloadService(ctx, preload or (lambda names: None), self.tasks)
        self.all = [mesh, self.objects, self.functions, self.hosting, self.tasks, self.routing,
                    self.actors, self.names, self.replicas, self.groups, self.kv, self.state,
                    self.preload]
        self.handler_table = build_handler_table([self, *more_handlers, *self.all])
        self.tickers = [s.tick for s in self.all if overrides(s, "tick")]

    def handlers(self):
        return {wire.PEER_CLIENT_GONE: self.on_peer_client_gone}

    def tick(self, now):
        for tick in self.tickers:
            tick(now)

    # -- the one fan-out -------------------------------------------------------------------------
    def fan_out(self, hook, *args):
        for service in self.all:
            getattr(service, hook)(*args)

    def on_member(self, kind, member):
        """A SWIM event: "join", "update", "suspect", "dead" or "leave"."""
        if kind == "join":
            self.fan_out("member_joined", member)
        elif kind == "update":
            self.fan_out("member_updated", member)
        elif kind in ("dead", "leave"):
            self._member_gone(member)
        if kind != "update":
            membership = self.ctx.membership
            live = membership.live_nodes()
            if live != membership.ring.members():
                ring = HashRing(live)
                membership.set_ring(ring)
                self.fan_out("ring_changed", ring)

    def _member_gone(self, member):
        clients = self.ctx.clients
        for address in clients.addresses():
            self.ctx.send(address, wire.NODE_DIED, (member.name, member.address))
        self.fan_out("member_gone", member)
        # Drivers that lived there: their jobs end here too.
        for job_id, driver in clients.remote_drivers_on(node_of, member.name):
            self.client_gone(driver, "driver", job_id, local=False)

    def client_gone(self, address, kind, job_id, local):
        """A driver or worker died: here (local) or on a peer. The same event either way.
        kind None: a process of this node that never registered (or whose death was already
        told): only what it may have left here is cleaned up."""
        self._forget(address)
        if kind is not None:
            for other in self.ctx.clients.addresses():
                if other != address:
                    self.ctx.send(other, wire.CLIENT_DIED, (address,))
        self.fan_out("client_gone", ClientGone(address, kind, job_id, local))
        if kind == "driver":
            self.ctx.clients.driver_gone(job_id, address)
            self.fan_out("job_finished", job_id)

    def on_peer_client_gone(self, sender, payload, frames):
        address, kind, job_id = payload
        self.client_gone(address, kind, job_id, local=False)

    def worker_died(self, worker_id, detail):
        self.fan_out("worker_died", worker_id, detail)
