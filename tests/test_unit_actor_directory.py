"""The actor directory as a state machine: events in, typed actions out, no processes."""
import pytest

from zray.scheduling.actor_directory import (ALIVE, DEAD, PENDING, RESTARTING, ActorDirectory,
                                             ActorRecord, Create, KillActorWorker, Notify,
                                             Terminate)
from zray.scheduling.task_spec import ACTOR_CREATION, TaskSpec

OWNER = "ipc://owner"


def record(n, name=None, max_restarts=0, detached=False, job="J"):
    return ActorRecord(bytes([n]) * 16, None, None, name, "ns", detached, job, OWNER,
                       max_restarts, "C", {})


def creation_spec(n):
    return TaskSpec(bytes([n]) * 12, "J", "C.__init__", b"f", [], [], 0, {}, 0, False, OWNER,
                    extra={"actor_id": bytes([n]) * 16}, kind=ACTOR_CREATION)


def alive(d, n, worker="w1", **kw):
    r = record(n, **kw)
    d.handle_register(r)
    assert d.handle_creation_task(r.actor_id, creation_spec(n), []) == [Create(r)]
    d.handle_dispatched(r.actor_id, worker)
    assert d.handle_started(r.actor_id, worker, "ipc://actor", 7) == [Notify(r, frozenset({OWNER}))]
    return r


def test_register_creation_and_start():
    d = ActorDirectory()
    r = record(1)
    assert d.handle_register(r) == r.actor_id and r.state == PENDING
    alive(ActorDirectory(), 2)
    assert d.get(r.actor_id) is r and d.get(b"x") is None


def test_a_taken_name_is_refused_or_shared_with_get_if_exists():
    d = ActorDirectory()
    first = alive(d, 1, name="n")
    with pytest.raises(ValueError, match="already exists"):
        d.handle_register(record(2, name="n"))
    assert d.handle_register(record(3, name="n"), get_if_exists=True) == first.actor_id
    assert d.lookup("n", "ns") is first


def test_a_dead_worker_restarts_the_actor_while_restarts_remain():
    d = ActorDirectory()
    r = alive(d, 1, max_restarts=1)
    actions = d.handle_worker_died("w1", "it crashed")
    assert actions == [Notify(r, frozenset({OWNER})), Create(r)]
    assert r.state == RESTARTING and r.restarts == 1 and r.spec.attempt == 1
    d.handle_dispatched(r.actor_id, "w2")
    d.handle_started(r.actor_id, "w2", "ipc://actor2", 8)
    (notify,) = d.handle_worker_died("w2", "again")
    assert type(notify) is Notify and r.state == DEAD and "died unexpectedly" in r.death_cause[0]
    assert d.actor_of_worker("w2") is None


def test_kill_without_restart_and_the_name_is_free_again():
    d = ActorDirectory()
    r = alive(d, 1, name="n", max_restarts=5)
    assert d.handle_kill(r.actor_id, no_restart=True) == [KillActorWorker("w1")]
    d.handle_worker_died("w1", None)
    assert r.state == DEAD and "zray.kill" in r.death_cause[0]
    assert d.lookup("n", "ns") is None


def test_out_of_scope_terminates_an_alive_actor_and_spares_a_detached_one():
    d = ActorDirectory()
    r = alive(d, 1)
    assert d.handle_out_of_scope(r.actor_id) == [Terminate(r)]
    (notify,) = d.handle_worker_died("w1", None)
    assert r.state == DEAD and "exited" in r.death_cause[0]
    kept = alive(d, 2, worker="w2", detached=True)
    assert d.handle_out_of_scope(kept.actor_id) == [] and kept.state == ALIVE


def test_a_finished_job_kills_its_actors_but_not_detached_ones():
    d = ActorDirectory()
    r = alive(d, 1)
    kept = alive(d, 2, worker="w2", detached=True)
    actions = d.handle_job_finished("J")
    assert KillActorWorker("w1") in actions and r.state == DEAD and kept.state == ALIVE


def test_a_constructor_that_raises_kills_the_actor_for_good():
    d = ActorDirectory()
    r = record(1, max_restarts=3)
    d.handle_register(r)
    d.handle_creation_task(r.actor_id, creation_spec(1), [])
    actions = d.handle_creation_failed(r.actor_id, "w1", "boom", b"layout")
    assert actions == [Notify(r, frozenset({OWNER})), KillActorWorker("w1")]
    assert r.death_cause == ("boom", b"layout")


def test_hand_over_and_adopt_move_a_record_whole():
    home, new_home = ActorDirectory(), ActorDirectory()
    r = alive(home, 1, name="n", detached=True)
    given = home.handle_hand_over(r.actor_id)
    assert given is r and home.get(r.actor_id) is None and home.lookup("n", "ns") is None
    assert home.actor_of_worker("w1") is None
    assert new_home.handle_adopt(given) == [Notify(r, frozenset({OWNER}))]
    assert new_home.lookup("n", "ns") is r and new_home.actor_of_worker("w1") == r.actor_id


def test_a_host_that_died_during_the_constructor_restarts_or_kills_the_actor():
    d = ActorDirectory()
    r = record(1, max_restarts=1)
    d.handle_register(r)
    d.handle_creation_task(r.actor_id, creation_spec(1), [])
    actions = d.handle_host_died(r.actor_id, "remote-w", "the node died")
    assert Create(r) in actions and r.state == RESTARTING
    lost = record(2)
    d.handle_register(lost)
    d.handle_host_died(lost.actor_id, None, "the node that kept the record died")
    assert lost.state == DEAD


def test_subscribers_get_the_state_and_dead_clients_are_forgotten():
    d = ActorDirectory()
    r = alive(d, 1)
    assert d.handle_subscribe(r.actor_id, "ipc://caller") == [Notify(r, frozenset({"ipc://caller"}))]
    d.handle_client_gone("ipc://caller")
    (notify, _) = d.handle_kill(r.actor_id, True) + d.handle_worker_died("w1", None)
    assert notify == KillActorWorker("w1")
    assert r.subscribers == {OWNER}


def test_actors_share_their_owners_fate_unless_detached():
    d = ActorDirectory()
    r = alive(d, 1)
    kept = alive(d, 2, worker="w2", detached=True)
    pending = record(3)
    d.handle_register(pending)       # its constructor argument never came
    actions = d.handle_client_gone(OWNER)
    assert KillActorWorker("w1") in actions and KillActorWorker("w2") not in actions
    assert r.state == DEAD and pending.state == DEAD and kept.state == ALIVE
    assert "owner" in r.death_cause[0]
    assert d.handle_client_gone(OWNER) == []      # once
