"""ActorCaller's order rules with no processes: notices in any order (defects a and b)."""
import types

from zray import exceptions
from zray.core import actor_caller as ac
from zray.objects import serialization
from zray.transport import wire


class FakeOwner:
    def __init__(self):
        self.completed = {}        # task name -> "ok" | error
        self.table = types.SimpleNamespace(get=lambda task_id: None,
                                           actor_restarting=lambda calls, m: [])
        self.actors = None

    def complete_with_error_layout(self, pending, layout):
        flags, data, buffers = serialization.parse(layout)
        self.completed[pending.spec.name] = serialization.deserialize(flags, data, buffers)
        self.actors.call_done(pending)

    def result(self, pending):      # the actor's reply arrived
        self.completed[pending.spec.name] = "ok"
        self.actors.call_done(pending)

    def finish(self, task):
        pass


class Call:
    def __init__(self, actor, name):
        self.actor = actor
        self.spec = types.SimpleNamespace(task_id=name.encode(), name=name)
        self.frames = []
        self.ready = False
        self.sent = False
        self.cancelled = False


def _caller(monkeypatch):
    sent = []
    owner = FakeOwner()
    inbox = types.SimpleNamespace(handle=lambda *a: None, reply_type=lambda *a: None)
    context = types.SimpleNamespace(daemon="node", address="me")
    caller = ac.ActorCaller(context, inbox, None, owner, lambda *a: sent.append(a) or True)
    owner.actors = caller
    monkeypatch.setattr(ac, "spec_fields", lambda spec: (spec.name,))
    return caller, owner, sent


def _submit(caller, state, name):
    call = Call(state, name)
    caller.enqueue(call)
    caller.send_call(call)
    return call


def test_kill_is_final_whatever_notices_come_after(monkeypatch):
    caller, owner, sent = _caller(monkeypatch)
    state = caller._actor_state(b"a" * 16, {"class_name": "C"}, subscribe=False)
    caller.on_actor_state("node", (b"a" * 16, ac.ALIVE, "w", None), ())
    first = _submit(caller, state, "first")
    caller.kill_actor(b"a" * 16, True, {"class_name": "C"})
    assert isinstance(owner.completed["first"], exceptions.ActorDiedError)
    # A late ALIVE (sent before the node saw the kill) must not bring it back.
    caller.on_actor_state("node", (b"a" * 16, ac.ALIVE, "w", None), ())
    _submit(caller, state, "after")
    assert isinstance(owner.completed["after"], exceptions.ActorDiedError)
    assert "killed by `ray.kill`" in str(owner.completed["after"])
    assert [m for m in sent if m[1] == wire.ACTOR_CALL] == [("w", wire.ACTOR_CALL, ("first",), [])]


def test_replies_that_trail_the_nodes_dead_notice_still_complete_their_calls(monkeypatch):
    caller, owner, sent = _caller(monkeypatch)
    aid = b"b" * 16
    state = caller._actor_state(aid, {"class_name": "C"}, subscribe=False)
    caller.on_actor_state("node", (aid, ac.ALIVE, "w", None), ())
    calls = [_submit(caller, state, f"c{i}") for i in range(3)]
    terminate = _submit(caller, state, "terminate")
    # The node's DEAD (it exited by itself) overtakes the actor's replies.
    caller.on_actor_state("node", (aid, ac.DEAD, None, "The actor exited", "node", True), ())
    late = _submit(caller, state, "late")
    assert isinstance(owner.completed["late"], exceptions.ActorDiedError)
    for call in calls + [terminate]:
        assert call.spec.name not in owner.completed
        owner.result(call)
    # The actor's own goodbye follows its last reply: nothing is left in flight.
    caller.on_actor_state("w", (aid, ac.EXITED, None, "The actor C exited"), ())
    assert all(owner.completed[c.spec.name] == "ok" for c in calls + [terminate])


def test_a_call_the_exited_actor_never_answered_fails_at_its_goodbye(monkeypatch):
    caller, owner, sent = _caller(monkeypatch)
    aid = b"c" * 16
    state = caller._actor_state(aid, {"class_name": "C"}, subscribe=False)
    caller.on_actor_state("node", (aid, ac.ALIVE, "w", None), ())
    quit_call, ping = _submit(caller, state, "quit"), _submit(caller, state, "ping")
    caller.on_actor_state("node", (aid, ac.DEAD, None, "The actor exited", "node", True), ())
    owner.result(quit_call)
    assert "ping" not in owner.completed
    caller.on_actor_state("w", (aid, ac.EXITED, None, "The actor C exited"), ())
    assert isinstance(owner.completed["ping"], exceptions.ActorDiedError)


def test_a_crash_fails_calls_in_flight_at_once(monkeypatch):
    caller, owner, sent = _caller(monkeypatch)
    aid = b"d" * 16
    state = caller._actor_state(aid, {"class_name": "C"}, subscribe=False)
    caller.on_actor_state("node", (aid, ac.ALIVE, "w", None), ())
    _submit(caller, state, "x")
    caller.on_actor_state("node", (aid, ac.DEAD, None, "The actor died unexpectedly", "node", False), ())
    assert isinstance(owner.completed["x"], exceptions.ActorDiedError)
