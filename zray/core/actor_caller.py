"""The caller's side of actors: creating them, and sending method calls straight to them.

Calls from one process to one actor leave in submission order: each actor has a queue here, and
a call is sent only once every call before it has been sent (a call whose ObjectRef arguments
are not ready holds back the ones behind it, as in Ray). The node hosting the actor tells every
caller when the actor is alive (and where), restarting, or dead; calls in flight when it dies
are resent after a restart while `max_task_retries` allows, and fail with ActorDiedError
otherwise.
"""
import collections
import threading

from .. import exceptions
from ..objects import serialization
from ..objects.ids import put_object_id
from ..scheduling.task_spec import ACTOR_CALL, ACTOR_CREATION, DYNAMIC, STREAMING, TaskSpec
from ..transport import wire
from .object_entries import READY, VALUE_INLINE, ObjectEntry

ALIVE = "ALIVE"
RESTARTING = "RESTARTING"
DEAD = "DEAD"
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


class _ActorState:
    __slots__ = ("actor_id", "address", "state", "queue", "inflight", "death_layout", "lock",
                 "meta", "creation")

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


class ActorCaller:
    """Mixed into CoreWorker."""

    def _init_actor_caller(self):
        self.actor_states = {}
        self.owned_actors = set()
        self.handlers[wire.ACTOR_STATE] = self._on_actor_state
        self.handlers[wire.ACTOR_REGISTERED] = self._on_reply
        self.handlers[wire.GET_ACTOR_REPLY] = self._on_reply
        self.handlers[wire.LIST_ACTORS_REPLY] = self._on_reply

    # -- creation ------------------------------------------------------------------------------
    def create_actor(self, class_id, class_name, args, kwargs, placement, lifetime, meta, *,
                     name, namespace, detached, get_if_exists, max_restarts, strategy=None):
        namespace = namespace or self.namespace
        actor_id = put_object_id(self.current_task_id, next(self._put_counter))
        existing, owner, existing_meta = self.rpc(self.daemon, wire.REGISTER_ACTOR, (
            actor_id, name, namespace, detached, get_if_exists, max_restarts, class_name,
            self.job_id, self.address, meta))
        meta.update(existing_meta)     # the node adds where the actor's record lives ("home")
        if existing != actor_id:
            return existing, owner, True
        entry = ObjectEntry(owned=True)
        entry.kind = VALUE_INLINE
        entry.inline = bytes(serialization.serialize(actor_id.hex()).to_bytes())
        entry.state = READY
        with self.lock:
            self.entries[actor_id] = entry
        self.refs.add_owned(actor_id)
        self.owned_actors.add(actor_id)
        state = self._actor_state(actor_id, meta, subscribe=False)
        extra = {"actor_id": actor_id, "lifetime": lifetime, "meta": meta, "detached": detached}
        if strategy is not None:
            extra["strategy"] = strategy
        task_id, _ = self.submit_task(class_id, f"{class_name}.__init__", args, kwargs, 0,
                                      placement, 0, False, extra=extra, kind=ACTOR_CREATION)
        state.creation = self.pending_tasks.get(task_id)
        return actor_id, self.address, False

    # -- calls -----------------------------------------------------------------------------------
    def _actor_state(self, actor_id, meta, subscribe=True):
        with self.lock:
            state = self.actor_states.get(actor_id)
            if state is None:
                state = self.actor_states[actor_id] = _ActorState(actor_id, meta)
                new = True
            else:
                new = False
        if new and subscribe:
            self._safe_send(self._home(meta), wire.SUBSCRIBE_ACTOR, (actor_id,))
        return state

    def submit_actor_task(self, handle, method_name, args, kwargs, num_returns, group, name):
        state = self.actor_states.get(handle._actor_id) or self._actor_state(handle._actor_id, handle._meta)
        n = _NUM_RETURNS.get(num_returns, num_returns)
        extra = {"actor_id": handle._actor_id, "method": method_name, "group": group}
        label = name or f"{handle._meta.get('class_name', 'Actor')}.{method_name}"
        task_id, refs = self.submit_task(None, label, args, kwargs, n, {},
                                         handle._meta.get("max_task_retries", 0), False,
                                         extra=extra, actor=state, kind=ACTOR_CALL)
        if n == 1:
            return refs[0]
        from ..remote_function import returned_refs
        return returned_refs(self, task_id, refs, n)

    def _send_actor_call(self, pending):
        """The call's arguments are ready: send it when every earlier call has been sent."""
        state = pending.actor
        with state.lock:
            pending.ready = True
            if pending.sent:                      # a retry of a call that already went out
                pending.sent = False
                state.inflight.pop(pending.spec.task_id, None)
                state.queue.append(pending)
        self._flush_actor(state)

    def _flush_actor(self, state):
        with state.lock:
            if state.state == DEAD:
                calls = list(state.queue)
                state.queue.clear()
                for pending in calls:
                    self._fail_actor_call(pending, state)
                return
            while state.queue and state.address and state.queue[0].ready:
                pending = state.queue.popleft()
                if pending.cancelled and pending.spec.task_id not in self.pending_tasks:
                    continue
                state.inflight[pending.spec.task_id] = pending
                pending.sent = True
                self._safe_send(state.address, wire.ACTOR_CALL, spec_fields(pending.spec), pending.frames)

    def _fail_actor_call(self, pending, state):
        layout = state.death_layout or serialization.serialize_error(
            exceptions.ActorDiedError("The actor died")).to_bytes()
        self._complete_with_error_layout(pending, layout)

    def _on_actor_state(self, sender, payload, frames):
        actor_id, new_state, address, message = payload[:4]
        state = self.actor_states.get(actor_id)
        if state is None:
            return
        home = payload[4] if len(payload) > 4 else None
        if home and state.meta is not None:
            state.meta["home"] = home       # a detached actor's record moved to its host
        if new_state == "MOVED":
            self._safe_send(home, wire.SUBSCRIBE_ACTOR, (actor_id,))
            return
        with state.lock:
            state.state = new_state
            state.address = address if new_state == ALIVE else None
            if new_state == ALIVE:
                self._flush_actor(state)
                return
            # The incarnation the calls in flight went to is gone.
            inflight = list(state.inflight.values())
            state.inflight.clear()
            if new_state == DEAD:
                state.death_layout = self._death_layout(message, frames)
                for pending in inflight:
                    self._fail_actor_call(pending, state)
                self._flush_actor(state)
                if state.creation is not None:
                    self._finish(state.creation)
                    state.creation = None
                return
            retry = []
            for pending in inflight:
                if pending.retries_left != 0:
                    if pending.retries_left > 0:
                        pending.retries_left -= 1
                    pending.spec.attempt += 1
                    pending.sent = False
                    retry.append(pending)
                else:
                    err = exceptions.ActorDiedError(
                        f"The actor died while running {pending.spec.name} and is restarting; "
                        f"the call is not retried (max_task_retries=0)\n{message}".rstrip())
                    self._complete_with_error_layout(pending, serialization.serialize_error(err).to_bytes())
            state.queue.extendleft(reversed(retry))

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
        text = message if cause is None else f"{message}\n{cause}"
        return serialization.serialize_error(exceptions.ActorDiedError(text, cause)).to_bytes()

    def _cancel_actor_call(self, pending, force):
        if force:
            raise ValueError("force=True is not supported for actor tasks")
        state = pending.actor
        with state.lock:
            if pending in state.queue:
                state.queue.remove(pending)
                err = exceptions.TaskCancelledError(pending.spec.task_id)
                self._complete_with_error_layout(pending, serialization.serialize_error(err).to_bytes())
                return
            address = state.address
        if address:
            self._safe_send(address, wire.CANCEL_TASK, (pending.spec.task_id, False, True))

    def _actor_call_done(self, pending):
        state = pending.actor
        with state.lock:
            state.inflight.pop(pending.spec.task_id, None)

    # -- handles going away, names, kill ---------------------------------------------------------
    def _home(self, meta):
        """The node daemon that keeps the actor's record: its state, restarts and death. In a
        mesh it may be on another host; outside one it is our own node."""
        return (meta or {}).get("home") or self.daemon

    def _actor_out_of_scope(self, actor_id):
        self.owned_actors.discard(actor_id)
        state = self.actor_states.get(actor_id)
        self._safe_send(self._home(state.meta if state else None), wire.ACTOR_OUT_OF_SCOPE, (actor_id,))

    def get_actor(self, name, namespace):
        return self.rpc(self.daemon, wire.GET_ACTOR, (name, namespace or self.namespace))

    def kill_actor(self, actor_id, no_restart, meta=None):
        self.transport.send(self._home(meta), wire.KILL_ACTOR, (actor_id, no_restart))

    def list_actors(self):
        return self.rpc(self.daemon, wire.LIST_ACTORS, ())
