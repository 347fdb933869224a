"""The node daemon's placement groups: decoded here, decided by scheduling/placement_groups.py.

A group is owned by the node where it was created (its *home*): the PlacementGroupManager there
picks nodes for its bundles from this node's view of every node (its own scheduler, the peers'
gossiped resources) and reserves them with PG_PREPARE / PG_COMMIT, or rolls back with
PG_RELEASE. Every node keeps what it holds in BundleReservations and turns committed bundles
into renamed resources of its LocalScheduler, so tasks of the group reach it by the ordinary
placement. The local node takes part like any other, by direct calls instead of messages.

Named groups use the name ring (name_service.py) under a namespace of their own, so a name is
unique across the mesh and found from any node. A group's job ending (its driver gone from this
node) removes it unless it is detached; a member that dies takes its bundles with it (the home
places them again), and bundles held for a home that died are given back.

Interface for other services: group_infos() -> info() of every group homed here.
"""
from ..exceptions import RaySystemError
from ..scheduling.local_scheduler import GroupRemoved, GroupWorker
from ..scheduling.placement_groups import (BundleReservations, Commit, Group, PlacementGroupManager,
                                           Prepare, Release, Removed, Waited, bundle_resources)
from ..scheduling.task_spec import ACTOR_CREATION
from ..transport import wire
from .service import Service

PG_TICK_S = 0.1          # how often pending groups, rounds and waits are looked at
PG_JOB_CHECK_S = 0.5     # how often the jobs of non-detached groups are checked
PG_NAME_PREFIX = "\x01pg\x01"   # names of groups live on the ring beside actor names


class PlacementGroupService(Service):
    def __init__(self, ctx, tasks, routing, names, actors, hosting, resources_changed):
        """resources_changed(): this node's resource totals changed (gossip them soon)."""
        self.ctx = ctx
        self.node_id = ctx.node_id
        self.scheduler = ctx.scheduler
        self.membership = ctx.membership
        self.tasks = tasks
        self.routing = routing
        self.names = names
        self.actors = actors
        self.hosting = hosting
        self._resources_changed = resources_changed
        self.pg_manager = PlacementGroupManager(self.node_id)
        self.pg_bundles = BundleReservations()
        self._pg_next_tick = 0.0
        self._pg_next_job_check = 0.0
        self._run = {Prepare: self._prepare, Commit: self._commit, Release: self._release,
                     Waited: self._waited, Removed: self._removed}

    def handlers(self):
        return {
            wire.PG_CREATE: self.on_pg_create,
            wire.PG_REMOVE: self.on_pg_remove,
            wire.PG_WAIT: self.on_pg_wait,
            wire.PG_GET: self.on_pg_get,
            wire.PG_TABLE: self.on_pg_table,
            wire.PG_PREPARE: self.on_pg_prepare,
            wire.PG_PREPARE_REPLY: self.on_pg_prepare_reply,
            wire.PG_COMMIT: self.on_pg_commit,
            wire.PG_RELEASE: self.on_pg_release,
        }

    # -- time and membership -----------------------------------------------------------------------
    def tick(self, now):
        if not (self.pg_manager.active() or self.pg_bundles.bundles
                or (self.scheduler.has_infeasible() and self.pg_manager.removed)):
            return
        if now < self._pg_next_tick:
            return
        self._pg_next_tick = now + PG_TICK_S
        if now >= self._pg_next_job_check:
            self._pg_next_job_check = now + PG_JOB_CHECK_S
            for job_id in self.pg_manager.live_jobs():
                if not self.ctx.clients.job_alive(job_id):
                    self.pg_run(self.pg_manager.handle_job_finished(job_id))
        self.pg_run(self.pg_manager.tick(now))
        self.pg_place(now)
        if self.scheduler.has_infeasible() and self.pg_manager.removed:
            self.pg_run_scheduler(self.scheduler.handle_groups_removed(self.pg_manager.removed_ids()))

    def job_finished(self, job_id):
        self.pg_run(self.pg_manager.handle_job_finished(job_id))

    def ring_changed(self, ring):
        now = self.ctx.now()
        live = ring.members()
        self.pg_run(self.pg_manager.handle_live_nodes(live, now))
        for pg_id in self.pg_bundles.groups_of_owners_not_in(live):
            self.pg_release_here(pg_id, None)
        self.pg_place(now)

    def pg_place(self, now):
        if not self.pg_manager.due(now):
            return
        nodes = {self.node_id: dict(self.scheduler.available)}
        nodes.update(self.routing.peer_rooms())
        self.pg_run(self.pg_manager.handle_place(nodes, now))

    # -- requests from clients ---------------------------------------------------------------------
    def on_pg_create(self, sender, payload, frames):
        req_id, pg_id, bundles, strategy, name, namespace, detached, job_id, creator = payload
        home = self.membership.home_address() or self.ctx.address
        group = Group(pg_id, bundles, strategy, name, namespace, detached, job_id, creator, home)

        def create():
            self.pg_manager.handle_create(group)
            self.pg_place(self.ctx.now())
            self.ctx.reply(sender, wire.PG_REPLY, req_id, home)
        if not name:
            create()
            return
        entry = {"actor_id": pg_id, "owner": creator, "home": home, "node": self.node_id,
                 "meta": (pg_id, bundles, strategy, home)}

        def claimed(ok, holder, error):
            if error is not None:
                self.ctx.reply(sender, wire.PG_REPLY, req_id, None, error)
            elif ok:
                create()
            else:
                self.ctx.reply(sender, wire.PG_REPLY, req_id, None, RaySystemError(
                    f"Failed to create placement group '{pg_id}' because name '{name}' "
                    "already exists."))
        self.names.claim_name(PG_NAME_PREFIX + namespace, name, entry, claimed)

    def on_pg_remove(self, sender, payload, frames):
        req_id, pg_id = payload
        self.pg_run(self.pg_manager.handle_remove(pg_id))
        self.ctx.reply(sender, wire.PG_REPLY, req_id, None)

    def on_pg_wait(self, sender, payload, frames):
        req_id, pg_id, timeout_s = payload
        token = (sender, req_id)
        self.pg_run(self.pg_manager.handle_wait(pg_id, token, self.ctx.now() + timeout_s))

    def on_pg_get(self, sender, payload, frames):
        req_id, name, namespace = payload

        def answer(entry):
            if entry is None:
                self.ctx.reply(sender, wire.PG_REPLY, req_id, None, ValueError(
                    f"Failed to look up placement group with name: {name}"))
            else:
                self.ctx.reply(sender, wire.PG_REPLY, req_id, entry["meta"])
        self.names.lookup_name(PG_NAME_PREFIX + namespace, name, answer)

    def group_infos(self):
        """info() of every group this node is the home of (the state API)."""
        return [g.info() for g in self.pg_manager.groups.values()]

    def on_pg_table(self, sender, payload, frames):
        req_id, pg_id = payload
        if pg_id is not None:
            group = self.pg_manager.groups.get(pg_id)
            self.ctx.reply(sender, wire.PG_REPLY, req_id, group.info() if group else {})
            return
        self.ctx.reply(sender, wire.PG_REPLY, req_id,
                   {g.pg_id: g.info() for g in self.pg_manager.groups.values()})

    # -- the manager's actions ---------------------------------------------------------------------
    def pg_run(self, actions):
        for action in actions:
            self._run[type(action)](action)

    def _prepare(self, action):
        node, pg_id, round_id, items = action.node_id, action.pg_id, action.round_id, action.items
        if node == self.node_id:
            ok = self.pg_prepare_here(pg_id, items, self.node_id)
            self.pg_run(self.pg_manager.handle_prepared(pg_id, round_id, node, ok, self.ctx.now()))
            return
        address = self.membership.address_of(node)
        if address is not None:
            need = {}
            for _, units in items:
                for k, v in units.items():
                    need[k] = need.get(k, 0) + v
            self.routing.note_reserved(node, need)    # until its next gossip says so
            self.ctx.send(address, wire.PG_PREPARE, (pg_id, round_id, items, self.node_id))

    def _commit(self, action):
        node, pg_id, indices = action.node_id, action.pg_id, action.indices
        if node == self.node_id:
            self.pg_commit_here(pg_id, indices)
            return
        address = self.membership.address_of(node)
        if address is not None:
            self.ctx.send(address, wire.PG_COMMIT, (pg_id, action.round_id, indices))
            self.pg_view_add(node, pg_id, indices)

    def _release(self, action):
        if action.node_id == self.node_id:
            self.pg_release_here(action.pg_id, action.indices)
            return
        address = self.membership.address_of(action.node_id)
        if address is not None:
            self.ctx.send(address, wire.PG_RELEASE, (action.pg_id, action.indices))

    def _waited(self, action):
        address, req_id = action.token
        self.ctx.reply(address, wire.PG_REPLY, req_id, action.ready)

    def _removed(self, action):
        group = action.group
        if group.name:
            self.names.release_name(PG_NAME_PREFIX + group.namespace, group.name, group.pg_id)

    def pg_view_add(self, node_id, pg_id, indices):
        """Tasks of the group may go to that peer at once, before its gossip shows the bundles."""
        group = self.pg_manager.groups.get(pg_id)
        if group is None:
            return
        units = {}
        for i in indices:
            for name, n in bundle_resources(pg_id, i, group.bundles[i]).items():
                units[name] = units.get(name, 0) + n
        self.routing.add_to_peer_view(node_id, units)

    # -- holding bundles (any node) ----------------------------------------------------------------
    def on_pg_prepare(self, sender, payload, frames):
        pg_id, round_id, items, owner = payload
        ok = self.pg_prepare_here(pg_id, items, owner)
        self.ctx.send(sender, wire.PG_PREPARE_REPLY, (pg_id, round_id, self.node_id, ok))

    def on_pg_prepare_reply(self, sender, payload, frames):
        pg_id, round_id, node_id, ok = payload
        self.pg_run(self.pg_manager.handle_prepared(pg_id, round_id, node_id, ok, self.ctx.now()))

    def on_pg_commit(self, sender, payload, frames):
        pg_id, round_id, indices = payload
        self.pg_commit_here(pg_id, indices)

    def on_pg_release(self, sender, payload, frames):
        pg_id, indices = payload
        self.pg_release_here(pg_id, indices)

    def pg_prepare_here(self, pg_id, items, owner):
        need = self.pg_bundles.prepare(pg_id, items, owner, self.scheduler.available)
        if need is None:
            return False
        self.scheduler.reserve(need)
        self.pg_resources_changed()
        return True

    def pg_commit_here(self, pg_id, indices):
        renamed = self.pg_bundles.commit(pg_id, indices)
        if renamed:
            self.tasks.run(self.scheduler.handle_resources_added(renamed))
            self.pg_resources_changed()
            if self.scheduler.has_infeasible():
                self.routing.replace_infeasible()

    def pg_release_here(self, pg_id, indices):
        plain, renamed = self.pg_bundles.release(pg_id, indices)
        if renamed:
            self.pg_run_scheduler(self.scheduler.handle_resources_removed(renamed))
        if plain:
            self.tasks.run(self.scheduler.handle_unreserved(plain))
        if plain or renamed:
            self.pg_resources_changed()

    def pg_resources_changed(self):
        self._resources_changed()

    def pg_run_scheduler(self, actions):
        """Carry out what removing a group's resources asks: its queued tasks fail, its running
        tasks and actors are killed (an actor is not restarted)."""
        text = "its placement group was removed"
        rest = []
        for action in actions:
            if type(action) is GroupRemoved:
                task = action.task
                if task.spec.kind == ACTOR_CREATION:
                    self.routing.task_unschedulable(task, text)
                else:
                    self.tasks.fail_task(task, "unschedulable", text)
            elif type(action) is GroupWorker:
                worker = action.worker
                if not (self.actors.kill_for_group(worker.worker_id)
                        or self.hosting.kill_for_group(worker.worker_id)):
                    if worker.task is not None:
                        self.tasks.fail_task(worker.task, "unschedulable", text)
                self.ctx.kill_pid(worker.pid)
            else:
                rest.append(action)
        self.tasks.run(rest)
