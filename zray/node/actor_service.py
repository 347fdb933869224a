"""The node daemon's actor messages: decoded here, decided by the ActorDirectory."""
from ..scheduling.actor_directory import ActorDirectory, ActorRecord


class ActorService:
    """Mixed into NodeDaemon."""

    def _init_actor_service(self):
        wire = self.wire
        self.directory = ActorDirectory()
        self.handlers.update({
            wire.REGISTER_ACTOR: self.on_register_actor,
            wire.ACTOR_STARTED: self.on_actor_started,
            wire.SUBSCRIBE_ACTOR: self.on_subscribe_actor,
            wire.KILL_ACTOR: self.on_kill_actor,
            wire.ACTOR_EXITING: self.on_actor_exiting,
            wire.GET_ACTOR: self.on_get_actor,
            wire.ACTOR_OUT_OF_SCOPE: self.on_actor_out_of_scope,
            wire.LIST_ACTORS: self.on_list_actors,
        })

    # -- handlers --------------------------------------------------------------------------------
    def on_register_actor(self, sender, payload, frames):
        (req_id, actor_id, name, namespace, detached, get_if_exists, max_restarts, class_name,
         job_id, owner, meta) = payload
        home = self.home_address()
        if home:
            meta = dict(meta, home=home)
        record = ActorRecord(actor_id, None, None, name, namespace, detached, job_id, owner,
                             max_restarts, class_name, meta)
        if name and self.swim is not None:
            # In a mesh the name's decider on the ring says whether it is free (name_service.py).
            entry = {"actor_id": actor_id, "owner": owner, "meta": meta, "home": home,
                     "node": self.node_id}

            def claimed(ok, holder, error):
                if error is not None:
                    self.reply(sender, self.wire.ACTOR_REGISTERED, req_id, None, error)
                elif ok:
                    self._register_locally(sender, req_id, record, get_if_exists)
                elif get_if_exists:
                    self.reply(sender, self.wire.ACTOR_REGISTERED, req_id,
                               (holder["actor_id"], holder["owner"], holder["meta"]))
                else:
                    self.reply(sender, self.wire.ACTOR_REGISTERED, req_id, None, ValueError(
                        f"An actor named {name!r} already exists in namespace {namespace!r}"))
            self.claim_name(namespace, name, entry, claimed)
            return
        self._register_locally(sender, req_id, record, get_if_exists)

    def _register_locally(self, sender, req_id, record, get_if_exists):
        try:
            chosen = self.directory.handle_register(record, get_if_exists)
        except ValueError as exc:
            self.reply(sender, self.wire.ACTOR_REGISTERED, req_id, None, exc)
            return
        other = self.directory.actors[chosen]
        self.reply(sender, self.wire.ACTOR_REGISTERED, req_id, (chosen, other.owner, other.meta))

    def on_actor_creation_task(self, task):
        """A SUBMIT_TASK that creates an actor: the directory keeps it for restarts."""
        spec = task.spec
        self.run_actor_actions(self.directory.handle_creation_task(spec.extra["actor_id"], spec, task.frames))

    def on_actor_started(self, sender, payload, frames):
        actor_id, ok, message = payload
        worker_id = self._worker_id_of(sender)
        client = self.clients.get(sender)
        if actor_id not in self.directory.actors and worker_id in self.hosted_for_home:
            extra = self.hosted_for_home[worker_id][2].spec.extra
            if ok:
                self.run_actions(self.scheduler.handle_actor_started(
                    worker_id, extra["lifetime"], bool(extra.get("detached"))))
            self.report_actor_started(actor_id, worker_id, ok, message, sender,
                                      client.pid if client else None, frames)
            return
        if ok:
            record = self.directory.actors.get(actor_id)
            lifetime = record.spec.extra["lifetime"] if record and record.spec else {}
            detached = bool(record and record.detached)
            self.run_actions(self.scheduler.handle_actor_started(worker_id, lifetime, detached))
            self.run_actor_actions(self.directory.handle_started(
                actor_id, worker_id, sender, client.pid if client else None))
        else:
            layout = frames[0].bytes if frames else None
            self.run_actor_actions(self.directory.handle_creation_failed(actor_id, worker_id, message, layout))

    def on_subscribe_actor(self, sender, payload, frames):
        moved_to = self.moved_actors.get(payload[0])
        if moved_to is not None:
            self.send(sender, self.wire.ACTOR_STATE, (payload[0], "MOVED", None, None, moved_to))
            return
        self.run_actor_actions(self.directory.handle_subscribe(payload[0], sender))

    def on_kill_actor(self, sender, payload, frames):
        actor_id, no_restart = payload
        if actor_id in self.moved_actors:
            self.send(self.moved_actors[actor_id], self.wire.KILL_ACTOR, payload)
            return
        self.run_actor_actions(self.directory.handle_kill(actor_id, no_restart))

    def on_actor_exiting(self, sender, payload, frames):
        if payload[0] in self.moved_actors:
            self.send(self.moved_actors[payload[0]], self.wire.ACTOR_EXITING, payload)
            return
        self.directory.handle_exiting(payload[0])

    def on_get_actor(self, sender, payload, frames):
        req_id, name, namespace = payload

        def answer(found):
            if found is None:
                self.reply(sender, self.wire.GET_ACTOR_REPLY, req_id, None, ValueError(
                    f"Failed to look up actor with name {name!r} in namespace {namespace!r}: "
                    "no live actor has that name"))
            else:
                self.reply(sender, self.wire.GET_ACTOR_REPLY, req_id, found)
        record = self.directory.lookup(name, namespace)
        if record is not None:
            answer((record.actor_id, record.owner, record.meta))
        elif self.swim is not None:
            self.lookup_name(namespace, name, lambda entry: answer(
                None if entry is None else (entry["actor_id"], entry["owner"], entry["meta"])))
        else:
            answer(None)

    def on_actor_out_of_scope(self, sender, payload, frames):
        if payload[0] in self.moved_actors:
            self.send(self.moved_actors[payload[0]], self.wire.ACTOR_OUT_OF_SCOPE, payload)
            return
        self.run_actor_actions(self.directory.handle_out_of_scope(payload[0]))

    def on_list_actors(self, sender, payload, frames):
        self.reply(sender, self.wire.LIST_ACTORS_REPLY, payload[0], self.directory.list())

    # -- actions of the directory ------------------------------------------------------------
    def run_actor_actions(self, actions):
        wire = self.wire
        from ..scheduling.local_scheduler import Task
        for action in actions:
            kind = action[0]
            if kind == "create":
                record = action[1]
                if record.restarts:
                    record.spec.attempt += 1
                if self.home_address():
                    record.spec.extra["home"] = self.home_address()
                self.place_task(Task(record.spec, record.frames))
            elif kind == "notify":
                _, record, subscribers = action
                if record.state == "DEAD" and record.name and self.swim is not None:
                    self.release_name(record.namespace, record.name, record.actor_id)
                self.replicate_record(record)
                message, layout = record.death_cause or (None, None)
                frames = [layout] if layout else []
                home = (record.meta or {}).get("home")
                for address in subscribers:
                    self.send(address, wire.ACTOR_STATE,
                              (record.actor_id, record.state, record.address, message, home), frames)
            elif kind == "kill_worker":
                self.kill_actor_worker(action[1])
            elif kind == "terminate":
                record = action[1]
                if record.address:
                    self.send(record.address, wire.TERMINATE_ACTOR, ())
