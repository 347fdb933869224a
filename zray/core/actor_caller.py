"""The caller's side of actors: creating them, and sending method calls straight to them.

Calls from one process to one actor leave in submission order: each actor has a queue here, and
a call is sent only once every call before it has been sent (a call whose ObjectRef arguments
are not ready holds back the ones behind it, as in Ray). The node hosting the actor tells every
caller when the actor is alive (and where), restarting, or dead; calls in flight when it dies
are resent after a restart while `max_task_retries` allows, and fail with ActorDiedError
otherwise (the owner table's one retry budget decides, owner_table.py).

A part of the runtime (core_worker.py). Collaborators, given to the constructor: the process
context, the inbox (requests to the node), the objects part, the task owner (an actor call is
a task: submitted, completed and finished there) and `send`.
"""
import collections
import logging
import threading

from .. import exceptions
from ..objects import serialization
from ..objects.ids import put_object_id
from ..scheduling.actor_directory import EXITED_REASON, KILLED_REASON
from ..scheduling.task_spec import ACTOR_CALL, ACTOR_CREATION, DYNAMIC, STREAMING, TaskSpec
from ..transport import wire
from . import owner_table as ot

ALIVE = "ALIVE"
RESTARTING = "RESTARTING"
DEAD = "DEAD"
EXITED = "EXITED"      # from the actor itself, after its last reply to this caller
_NUM_RETURNS = {"streaming": STREAMING, "dynamic": DYNAMIC}


def spec_fields(s):
    """A TaskSpec as the plain tuple ACTOR_CALL carries; TaskSpec(*fields) rebuilds it."""
    return (s.task_id, s.job_id, s.name, s.function_id, s.args, s.kwarg_names, s.num_returns,
            s.resources, s.max_retries, s.retry_exceptions, s.owner, s.attempt,
            s.parent_task_id, s.extra, s.kind)


assert TaskSpec.__slots__ == (
    "task_id", "job_id", "name", "function_id", "args", "kwarg_names", "num_returns",
    "resources", "max_retries", "retry_exceptions", "owner", "attempt", "parent_task_id",
    "extra", "kind"), "TaskSpec changed: update spec_fields"


EXIT_GRACE_S = 5.0   # an actor that exited: how long its last replies may trail the node's DEAD


class _ActorState:
    __slots__ = ("actor_id", "address", "state", "queue", "inflight", "death_layout", "lock",
                 "meta", "creation", "goodbye")

    def __init__(self, actor_id, meta):
        self.actor_id = actor_id
        self.address = None
        self.state = None
        self.queue = collections.deque()     # pending calls not sent yet, in submission order
        self.inflight = collections.OrderedDict()
        self.death_layout = None
        self.lock = threading.RLock()
        self.meta = meta
        self.creation = None                 # the creation task, when this process created it
        self.goodbye = False                 # the actor's own EXITED came: every reply is here


log = logging.getLogger("zray.core")


class ActorCaller:
    def __init__(self, context, inbox, objects, owner, send):
        self.context = context
        self.inbox = inbox
        self.objects = objects
        self.owner = owner
        self.send = send
        self.actor_states = {}
        self.owned_actors = set()
        self._lock = threading.Lock()
        inbox.handle(wire.ACTOR_STATE, self.on_actor_state)
        for reply in (wire.ACTOR_REGISTERED, wire.GET_ACTOR_REPLY, wire.LIST_ACTORS_REPLY):
            inbox.reply_type(reply)

    # -- creation ------------------------------------------------------------------------------
    def create_actor(self, class_id, class_name, args, kwargs, placement, lifetime, meta, *,
                     name, namespace, detached, get_if_exists, max_restarts, strategy=None):
        context = self.context
        namespace = namespace or context.namespace
        actor_id = put_object_id(context.current_task_id, context.next_put_index())
        existing, owner, existing_meta = self.inbox.rpc(context.daemon, wire.REGISTER_ACTOR, (
            actor_id, name, namespace, detached, get_if_exists, max_restarts, class_name,
            context.job_id, context.address, meta))
        meta.update(existing_meta)     # the node adds where the actor's record lives ("home")
        if existing != actor_id:
            return existing, owner, True
        self.objects.add_ready_inline(actor_id, bytes(serialization.serialize(actor_id.hex()).to_bytes()))
        self.owned_actors.add(actor_id)
        state = self._actor_state(actor_id, meta, subscribe=False)
        extra = {"actor_id": actor_id, "lifetime": lifetime, "meta": meta, "detached": detached}
        if strategy is not None:
            extra["strategy"] = strategy
        task_id, _ = self.owner.submit_task(class_id, f"{class_name}.__init__", args, kwargs, 0,
                                            placement, 0, False, extra=extra, kind=ACTOR_CREATION)
        state.creation = self.owner.table.get(task_id)
        return actor_id, context.address, False

    # -- calls -----------------------------------------------------------------------------------
    def _actor_state(self, actor_id, meta, subscribe=True):
        with self._lock:
            state = self.actor_states.get(actor_id)
            if state is None:
                state = self.actor_states[actor_id] = _ActorState(actor_id, meta)
                new = True
            else:
                new = False
        if new and subscribe:
            self.send(self.home(meta), wire.SUBSCRIBE_ACTOR, (actor_id,))
        return state

    def submit_actor_task(self, handle, method_name, args, kwargs, num_returns, group, name):
        state = self.actor_states.get(handle._actor_id) or self._actor_state(handle._actor_id, handle._meta)
        n = _NUM_RETURNS.get(num_returns, num_returns)
        extra = {"actor_id": handle._actor_id, "method": method_name, "group": group}
        label = name or f"{handle._meta.get('class_name', 'Actor')}.{method_name}"
        task_id, refs = self.owner.submit_task(None, label, args, kwargs, n, {},
                                               handle._meta.get("max_task_retries", 0), False,
                                               extra=extra, actor=state, kind=ACTOR_CALL)
        return task_id, refs, n

    def enqueue(self, pending):
        """A new call takes its place in its actor's queue (in submission order)."""
        state = pending.actor
        with state.lock:
            state.queue.append(pending)

    def send_call(self, pending):
        """The call's arguments are ready: send it when every earlier call has been sent."""
        state = pending.actor
        with state.lock:
            pending.ready = True
            if pending.sent:                      # a retry of a call that already went out
                pending.sent = False
                state.inflight.pop(pending.spec.task_id, None)
                state.queue.append(pending)
        self._flush(state)

    def _flush(self, state):
        with state.lock:
            if state.state == DEAD:
                calls = list(state.queue)
                state.queue.clear()
                for pending in calls:
                    self._fail_actor_call(pending, state)
                return
            while state.queue and state.address and state.queue[0].ready:
                pending = state.queue.popleft()
                if pending.cancelled and self.owner.table.get(pending.spec.task_id) is None:
                    continue
                state.inflight[pending.spec.task_id] = pending
                pending.sent = True
                try:
                    self.send(state.address, wire.ACTOR_CALL, spec_fields(pending.spec), pending.frames)
                except Exception as exc:    # logged by send(): the call fails, never hangs
                    state.inflight.pop(pending.spec.task_id, None)
                    err = exceptions.RaySystemError(f"could not send {pending.spec.name}: {exc!r}")
                    self.owner.complete_with_error_layout(
                        pending, serialization.serialize_error(err).to_bytes())

    def _fail_actor_call(self, pending, state):
        layout = state.death_layout or serialization.serialize_error(
            exceptions.ActorDiedError("The actor died")).to_bytes()
        self.owner.complete_with_error_layout(pending, layout)

    def on_actor_state(self, sender, payload, frames):
        """A notice of the actor's state: from its home node (ALIVE, RESTARTING, DEAD, MOVED),
        or from the actor itself as it exits (EXITED: sent after every reply to us, on the
        same path, so every reply it will ever send us is here). DEAD is final: nothing after
        it changes the state (a kill made it DEAD here at once; notices may come late)."""
        actor_id, new_state, address, message = payload[:4]
        state = self.actor_states.get(actor_id)
        if state is None:
            return
        if new_state == EXITED:
            self._exited(state, message)
            return
        home = payload[4] if len(payload) > 4 else None
        exited = len(payload) > 5 and payload[5]
        if home and state.meta is not None:
            state.meta["home"] = home       # a detached actor's record moved to its host
        if new_state == "MOVED":
            if state.state != DEAD:
                self.send(home, wire.SUBSCRIBE_ACTOR, (actor_id,))
            return
        with state.lock:
            if state.state == DEAD:
                return
            if new_state == DEAD and exited and not state.goodbye and state.inflight:
                # It exited by itself (exit_actor, __ray_terminate__) after answering the calls
                # before that; its replies come straight from it and this notice through its
                # node, so it may overtake them: calls in flight wait for their replies, or its
                # EXITED, or EXIT_GRACE_S.
                state.state = DEAD
                state.address = None
                state.death_layout = self._death_layout(message, frames)
                self._flush(state)
                timer = threading.Timer(EXIT_GRACE_S, self._exited, (state, None))
                timer.daemon = True
                timer.start()
                self._end_creation(state)
                return
            state.state = new_state
            state.address = address if new_state == ALIVE else None
            if new_state == ALIVE:
                self._flush(state)
                return
            # The incarnation the calls in flight went to is gone.
            inflight = list(state.inflight.values())
            state.inflight.clear()
            if new_state == DEAD:
                state.death_layout = self._death_layout(message, frames)
                for pending in inflight:
                    self._fail_actor_call(pending, state)
                self._flush(state)
                self._end_creation(state)
                return
            retry = []
            for action in self.owner.table.actor_restarting(inflight, message):
                if isinstance(action, ot.Retry):
                    retry.append(action.task)
                else:
                    self.owner.carry_out(action)
            state.queue.extendleft(reversed(retry))

    def _end_creation(self, state):
        if state.creation is not None:
            self.owner.finish(state.creation)
            state.creation = None

    def _exited(self, state, message):
        """The actor's own goodbye (or the grace after its DEAD): calls still in flight were
        never answered, and fail."""
        with state.lock:
            state.goodbye = True
            if state.state != DEAD:
                state.state = DEAD
                state.address = None
                state.death_layout = self._death_layout(
                    message or f"The actor {EXITED_REASON}", ())
            inflight = list(state.inflight.values())
            state.inflight.clear()
            for pending in inflight:
                self._fail_actor_call(pending, state)
            self._flush(state)
            self._end_creation(state)

    def _death_layout(self, message, frames):
        cause = None
        if frames:
            try:
                flags, data, buffers = serialization.parse(frames[0].buffer)
                cause = serialization.deserialize(flags, data, buffers)
                if isinstance(cause, exceptions.RayTaskError):
                    cause = cause.as_instanceof_cause()
            except Exception:
                cause = None
        message = message or "The actor died"
        text = message if cause is None else f"{message}\n{cause}"
        return serialization.serialize_error(exceptions.ActorDiedError(text, cause)).to_bytes()

    def cancel_call(self, pending, force):
        if force:
            raise ValueError("force=True is not supported for actor tasks")
        state = pending.actor
        with state.lock:
            if pending in state.queue:
                state.queue.remove(pending)
                err = exceptions.TaskCancelledError(pending.spec.task_id)
                self.owner.complete_with_error_layout(pending, serialization.serialize_error(err).to_bytes())
                return
            address = state.address
        if address:
            self.send(address, wire.CANCEL_TASK, (pending.spec.task_id, False, True))

    def call_done(self, pending):
        state = pending.actor
        with state.lock:
            state.inflight.pop(pending.spec.task_id, None)

    # -- handles going away, names, kill ---------------------------------------------------------
    def home(self, meta):
        """The node daemon that keeps the actor's record: its state, restarts and death. In a
        mesh it may be on another host; outside one it is our own node."""
        return (meta or {}).get("home") or self.context.daemon

    def out_of_scope(self, actor_id):
        """No handle of an actor this process created remains: tell its home."""
        self.owned_actors.discard(actor_id)
        state = self.actor_states.get(actor_id)
        self.send(self.home(state.meta if state else None), wire.ACTOR_OUT_OF_SCOPE, (actor_id,))

    def node_died(self, node_id):
        """Actors whose record lived on a dead node: the ring may keep a copy (a detached
        actor's); ask where it is now. The answer is its state from the new home, or DEAD."""
        from ..transport.address import node_of
        for state in list(self.actor_states.values()):
            home = (state.meta or {}).get("home")
            if home and node_of(home) == node_id:
                self.send(self.context.daemon, wire.ACTOR_FIND, (state.actor_id, self.context.address))

    def get_actor(self, name, namespace):
        return self.inbox.rpc(self.context.daemon, wire.GET_ACTOR,
                              (name, namespace or self.context.namespace))

    def kill_actor(self, actor_id, no_restart, meta=None):
        """zray.kill: with no_restart the actor is dead for this process at once, as in Ray
        (calls queued or in flight fail, later ones too), whatever order the node's notices
        come in; the node kills its worker."""
        self.send(self.home(meta), wire.KILL_ACTOR, (actor_id, no_restart))
        if not no_restart:
            return
        state = self._actor_state(actor_id, meta, subscribe=False)
        with state.lock:
            if state.state == DEAD:
                return
            state.state = DEAD
            state.address = None
            name = (meta or {}).get("class_name", "Actor")
            state.death_layout = serialization.serialize_error(exceptions.ActorDiedError(
                f"The actor {name} ({actor_id.hex()}) {KILLED_REASON}")).to_bytes()
            inflight = list(state.inflight.values())
            state.inflight.clear()
            for pending in inflight:
                self._fail_actor_call(pending, state)
            self._flush(state)
            self._end_creation(state)

    def list_actors(self):
        return self.inbox.rpc(self.context.daemon, wire.LIST_ACTORS, ())
