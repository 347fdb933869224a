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
"""
import time

from ..scheduling.placement_groups import BundleReservations, Group, PlacementGroupManager

PG_TICK_S = 0.1          # how often pending groups, rounds and waits are looked at
PG_JOB_CHECK_S = 0.5     # how often the jobs of non-detached groups are checked
PG_NAME_PREFIX = "\x01pg\x01"   # names of groups live on the ring beside actor names


class PlacementGroupService:
    """Mixed into NodeDaemon (before ObjectService: it extends mesh_tick)."""

    def _init_pg_service(self):
        wire = self.wire
        self.pg_manager = PlacementGroupManager(self.node_id)
        self.pg_bundles = BundleReservations()
        self._pg_ring = None
        self._pg_next_tick = 0.0
        self._pg_next_job_check = 0.0
        self.handlers.update({
            wire.PG_CREATE: self.on_pg_create,
            wire.PG_REMOVE: self.on_pg_remove,
            wire.PG_WAIT: self.on_pg_wait,
            wire.PG_GET: self.on_pg_get,
            wire.PG_TABLE: self.on_pg_table,
            wire.PG_PREPARE: self.on_pg_prepare,
            wire.PG_PREPARE_REPLY: self.on_pg_prepare_reply,
            wire.PG_COMMIT: self.on_pg_commit,
            wire.PG_RELEASE: self.on_pg_release,
        })

    def mesh_tick(self):
        super().mesh_tick()
        if (self.pg_manager.live or self.pg_bundles.bundles
                or (self.scheduler.infeasible and self.pg_manager.removed)):
            now = time.monotonic()
            if now >= self._pg_next_tick or self._pg_ring is not self.ring:
                self._pg_next_tick = now + PG_TICK_S
                self.pg_tick(now)

    def pg_tick(self, now):
        if self._pg_ring is not self.ring:      # the membership changed (name_service.py)
            self._pg_ring = self.ring
            live = self.ring.members()
            self.pg_run(self.pg_manager.handle_live_nodes(live, now))
            for pg_id in self.pg_bundles.groups_of_owners_not_in(live):
                self.pg_release_here(pg_id, None)
        if now >= self._pg_next_job_check:
            self._pg_next_job_check = now + PG_JOB_CHECK_S
            jobs = {g.job_id for g in self.pg_manager.live_groups() if not g.detached}
            for job_id in jobs:
                if job_id not in self.drivers and job_id not in self.remote_drivers:
                    self.pg_run(self.pg_manager.handle_job_finished(job_id))
        self.pg_run(self.pg_manager.tick(now))
        self.pg_place(now)
        if self.scheduler.infeasible and self.pg_manager.removed:
            self.pg_fail_removed_waiting()

    def pg_fail_removed_waiting(self):
        """Tasks waiting for a group this node removed would wait forever: they fail."""
        groups = self.pg_manager.groups
        doomed = []
        for task_id, task in self.scheduler.infeasible.items():
            for name in task.spec.resources:
                if "_group_" in name:
                    group = groups.get(name.rpartition("_")[2])
                    if group is not None and group.pg_id not in self.pg_manager.live:
                        doomed.append(task_id)
                    break
        if doomed:
            self.pg_run_scheduler([("group_removed", self.scheduler.infeasible.pop(t))
                                   for t in doomed])

    def pg_place(self, now):
        if not self.pg_manager.due(now):
            return
        nodes = {self.node_id: dict(self.scheduler.available)}
        for node_id, view in self.placement.peers.items():
            nodes[node_id] = view.room()
        self.pg_run(self.pg_manager.handle_place(nodes, now))

    # -- requests from clients ---------------------------------------------------------------------
    def on_pg_create(self, sender, payload, frames):
        req_id, pg_id, bundles, strategy, name, namespace, detached, job_id, creator = payload
        home = self.home_address() or self.address
        group = Group(pg_id, bundles, strategy, name, namespace, detached, job_id, creator, home)

        def create():
            self.pg_manager.handle_create(group)
            self.pg_place(time.monotonic())
            self.reply(sender, self.wire.PG_REPLY, req_id, home)
        if not name:
            create()
            return
        entry = {"actor_id": pg_id, "owner": creator, "home": home, "node": self.node_id,
                 "meta": (pg_id, bundles, strategy, home)}

        def claimed(ok, holder, error):
            if error is not None:
                self.reply(sender, self.wire.PG_REPLY, req_id, None, error)
            elif ok:
                create()
            else:
                from ..exceptions import RaySystemError
                self.reply(sender, self.wire.PG_REPLY, req_id, None, RaySystemError(
                    f"Failed to create placement group '{pg_id}' because name '{name}' "
                    "already exists."))
        self.claim_name(PG_NAME_PREFIX + namespace, name, entry, claimed)

    def on_pg_remove(self, sender, payload, frames):
        req_id, pg_id = payload
        self.pg_run(self.pg_manager.handle_remove(pg_id))
        self.reply(sender, self.wire.PG_REPLY, req_id, None)

    def on_pg_wait(self, sender, payload, frames):
        req_id, pg_id, timeout_s = payload
        token = (sender, req_id)
        self.pg_run(self.pg_manager.handle_wait(pg_id, token, time.monotonic() + timeout_s))

    def on_pg_get(self, sender, payload, frames):
        req_id, name, namespace = payload

        def answer(entry):
            if entry is None:
                self.reply(sender, self.wire.PG_REPLY, req_id, None, ValueError(
                    f"Failed to look up placement group with name: {name}"))
            else:
                self.reply(sender, self.wire.PG_REPLY, req_id, entry["meta"])
        self.lookup_name(PG_NAME_PREFIX + namespace, name, answer)

    def on_pg_table(self, sender, payload, frames):
        req_id, pg_id = payload
        if pg_id is not None:
            group = self.pg_manager.groups.get(pg_id)
            self.reply(sender, self.wire.PG_REPLY, req_id, group.info() if group else {})
            return
        self.reply(sender, self.wire.PG_REPLY, req_id,
                   {g.pg_id: g.info() for g in self.pg_manager.groups.values()})

    # -- the manager's actions ---------------------------------------------------------------------
    def pg_run(self, actions):
        wire = self.wire
        for action in actions:
            kind = action[0]
            if kind == "prepare":
                _, node, pg_id, round_id, items = action
                if node == self.node_id:
                    ok = self.pg_prepare_here(pg_id, items, self.node_id)
                    self.pg_run(self.pg_manager.handle_prepared(pg_id, round_id, node, ok,
                                                                time.monotonic()))
                elif self.pg_member_address(node):
                    need = {}
                    for _, units in items:
                        for k, v in units.items():
                            need[k] = need.get(k, 0) + v
                    self.placement.forwarded(node, need)    # until its next gossip says so
                    self.send(self.pg_member_address(node), wire.PG_PREPARE,
                              (pg_id, round_id, items, self.node_id))
            elif kind == "commit":
                _, node, pg_id, round_id, indices = action
                if node == self.node_id:
                    self.pg_commit_here(pg_id, indices)
                elif self.pg_member_address(node):
                    self.send(self.pg_member_address(node), wire.PG_COMMIT, (pg_id, round_id, indices))
                    self.pg_view_add(node, pg_id, indices)
            elif kind == "release":
                _, node, pg_id, indices = action
                if node == self.node_id:
                    self.pg_release_here(pg_id, indices)
                elif self.pg_member_address(node):
                    self.send(self.pg_member_address(node), wire.PG_RELEASE, (pg_id, indices))
            elif kind == "waited":
                _, (address, req_id), ready = action
                self.reply(address, wire.PG_REPLY, req_id, ready)
            elif kind == "removed":
                group = action[1]
                if group.name:
                    self.release_name(PG_NAME_PREFIX + group.namespace, group.name, group.pg_id)

    def pg_member_address(self, node_id):
        member = self.swim.members.get(node_id) if self.swim is not None else None
        return member.address if member is not None else None

    def pg_view_add(self, node_id, pg_id, indices):
        """Tasks of the group may go to that peer at once, before its gossip shows the bundles."""
        from ..scheduling.placement_groups import bundle_resources
        view = self.placement.peers.get(node_id)
        group = self.pg_manager.groups.get(pg_id)
        if view is None or group is None:
            return
        for i in indices:
            for name, n in bundle_resources(pg_id, i, group.bundles[i]).items():
                view.total[name] = view.total.get(name, 0) + n
                view.available[name] = view.available.get(name, 0) + n
        if self.scheduler.infeasible:
            self.replace_infeasible()

    # -- holding bundles (any node) ----------------------------------------------------------------
    def on_pg_prepare(self, sender, payload, frames):
        pg_id, round_id, items, owner = payload
        ok = self.pg_prepare_here(pg_id, items, owner)
        self.send(sender, self.wire.PG_PREPARE_REPLY, (pg_id, round_id, self.node_id, ok))

    def on_pg_prepare_reply(self, sender, payload, frames):
        pg_id, round_id, node_id, ok = payload
        self.pg_run(self.pg_manager.handle_prepared(pg_id, round_id, node_id, ok, time.monotonic()))

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
            self.run_actions(self.scheduler.handle_resources_added(renamed))
            self.pg_resources_changed()
            if self.scheduler.infeasible:
                self.replace_infeasible()

    def pg_release_here(self, pg_id, indices):
        plain, renamed = self.pg_bundles.release(pg_id, indices)
        if renamed:
            self.pg_run_scheduler(self.scheduler.handle_resources_removed(renamed))
        if plain:
            self.run_actions(self.scheduler.handle_unreserved(plain))
        if plain or renamed:
            self.pg_resources_changed()

    def pg_resources_changed(self):
        self.total_units = dict(self.scheduler.total)
        if self.swim is not None:
            self._next_meta = 0.0      # gossip the new resources at the next turn

    def pg_run_scheduler(self, actions):
        """Carry out what removing a group's resources asks: its queued tasks fail, its running
        tasks and actors are killed (an actor is not restarted)."""
        wire = self.wire
        text = "its placement group was removed"
        rest = []
        for action in actions:
            kind = action[0]
            if kind == "group_removed":
                task = action[1]
                spec = task.spec
                if spec.extra and "actor_id" in spec.extra:
                    self.task_unschedulable(task, text)
                else:
                    self.send(spec.owner, wire.TASK_FAILED, (spec.task_id, spec.attempt, "unschedulable", text))
                    self.task_ended_here(task)
            elif kind == "group_worker":
                worker = action[1]
                actor_id = self.directory.by_worker.get(worker.worker_id)
                hosted = self.hosted_for_home.get(worker.worker_id)
                if actor_id is not None:
                    self.run_actor_actions(self.directory.handle_kill(actor_id, True))
                elif hosted is not None:
                    self.send(hosted[1], wire.KILL_ACTOR, (hosted[0], True))
                elif worker.task is not None:
                    spec = worker.task.spec
                    self.send(spec.owner, wire.TASK_FAILED, (spec.task_id, spec.attempt, "unschedulable", text))
                    self.task_ended_here(worker.task)
                self._kill(worker.pid)
            else:
                rest.append(action)
        self.run_actions(rest)
