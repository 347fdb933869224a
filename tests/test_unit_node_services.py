"""The node's services on a fake context and virtual time, with no sockets and no processes:
what happens when a member dies or a client dies (tests/helpers/fake_node.py)."""
import pytest

from zray.node.kv_service import kv_key
from zray.node.name_service import name_key
from zray.node.service import Service, build_handler_table
from zray.scheduling.resources import to_units
from zray.scheduling.task_spec import ACTOR_CREATION, TASK, TaskSpec
from zray.transport import wire
from zray.transport.address import join

from helpers.fake_node import Network

OWNER = "ipc://driver-1"


def spec(n, cpus=1, kind=TASK, extra=None, owner=OWNER, job="J"):
    return TaskSpec(bytes([n]) * 12, job, f"t{n}", b"f", [], [], 1, to_units({"CPU": cpus}), 3,
                    False, owner, extra=extra, kind=kind)


def actor_id(n):
    return bytes([n]) * 16


def register_actor(node, n, owner=OWNER, job="J", max_restarts=0, name=None):
    node.handle(owner, wire.REGISTER_ACTOR, (n, actor_id(n), name, "ns", False, False,
                                             max_restarts, "C", job, owner, {}))


def creation(n, cpus, owner=OWNER, job="J"):
    extra = {"actor_id": actor_id(n), "lifetime": {}, "meta": {}, "detached": False}
    return spec(n, cpus, kind=ACTOR_CREATION, extra=extra, owner=owner, job=job)


def forwarded_to(net, node):
    return [p[0] for p in net.to(node.tcp, wire.FORWARD_TASK)]


# -- the handler table --------------------------------------------------------------------------
def test_a_message_type_served_twice_is_refused_at_start():
    class One(Service):
        def handlers(self):
            return {wire.KV_GET: print}

    class Two(Service):
        def handlers(self):
            return {wire.KV_GET: print, wire.KV_PUT: print}

    assert set(build_handler_table([One()])) == {wire.KV_GET}
    with pytest.raises(ValueError, match="KV_GET.*One.*Two"):
        build_handler_table([One(), Two()])


def test_the_real_services_claim_each_message_once():
    net = Network()
    node = net.add("A")
    table = node.services.handler_table
    assert table[wire.SUBMIT_TASK] == node.services.tasks.on_submit_task
    assert wire.KV_PUT in table and wire.PEER_CLIENT_GONE in table


# -- a member dies --------------------------------------------------------------------------------
def test_a_dead_member_fails_the_tasks_forwarded_to_it_to_their_owners():
    net = Network()
    a, b = net.add("A", cpus=1), net.add("B", cpus=4)
    a.handle(OWNER, wire.SUBMIT_TASK, (spec(1, cpus=2),))
    assert [s.task_id for s in forwarded_to(net, b)] == [spec(1).task_id]
    net.kill(b)
    (failed,) = net.to(OWNER, wire.TASK_FAILED)
    assert failed[:3] == (spec(1).task_id, 0, "node_died") and "B" in failed[3]


def test_a_dead_member_gets_its_actor_creations_placed_again():
    net = Network()
    a, b, c = net.add("A", cpus=1), net.add("B", cpus=4), net.add("C", cpus=4)
    register_actor(a, 5)
    a.handle(OWNER, wire.SUBMIT_TASK, (creation(5, cpus=2),))
    first = b if forwarded_to(net, b) else c
    other = c if first is b else b
    net.kill(first)
    assert [s.task_id for s in forwarded_to(net, other)] == [creation(5, 2).task_id]
    assert net.to(OWNER, wire.TASK_FAILED) == []


def test_actors_hosted_on_a_dead_member_restart_elsewhere():
    net = Network()
    a, b, c = net.add("A", cpus=1), net.add("B", cpus=4), net.add("C", cpus=4)
    register_actor(a, 6, max_restarts=1)
    a.handle(OWNER, wire.SUBMIT_TASK, (creation(6, cpus=2),))
    host = b if forwarded_to(net, b) else c
    other = c if host is b else b
    worker_address = join("ipc://w", host.tcp, host.node_id)
    a.handle(host.tcp, wire.ACTOR_HOSTED, (actor_id(6), True, None, "w1", worker_address, 9))
    assert net.to(OWNER, wire.ACTOR_STATE)[-1][1] == "ALIVE"
    net.kill(host)
    assert net.to(OWNER, wire.ACTOR_STATE)[-1][1] == "RESTARTING"
    (again,) = forwarded_to(net, other)
    assert again.task_id == creation(6, 2).task_id and again.attempt == 1


def test_names_move_to_their_new_keepers_and_die_with_their_home():
    net = Network()
    a, b, c = net.add("A"), net.add("B"), net.add("C")
    answers = []
    for i in range(6):
        entry = {"actor_id": actor_id(i), "owner": OWNER, "meta": {}, "home": "h", "node": "A"}
        a.services.names.claim_name("ns", f"n{i}", entry, lambda ok, e, err: answers.append(ok))
    entry_b = {"actor_id": actor_id(9), "owner": OWNER, "meta": {}, "home": "h", "node": "B"}
    b.services.names.claim_name("ns", "of-b", entry_b, lambda ok, e, err: answers.append(ok))
    net.deliver()
    assert answers == [True] * 7
    decider = a.membership.ring.owner(name_key("ns", "n0"))
    victim = b if decider != "B" else c
    net.kill(victim)
    net.deliver()
    found = {}
    for name in [f"n{i}" for i in range(6)] + ["of-b"]:
        a.services.names.lookup_name("ns", name, lambda e, name=name: found.update({name: e}))
    net.deliver()
    assert [found[f"n{i}"]["actor_id"] for i in range(6)] == [actor_id(i) for i in range(6)]
    if victim is b:
        assert found["of-b"] is None      # its home died: the name is free again


# -- a client dies ----------------------------------------------------------------------------------
def _client_death(local):
    net = Network()
    a, b = net.add("A"), net.add("B")
    a.register("ipc://bystander", "driver", "J1")
    dying = "ipc://dying" if local else join("ipc://dying", b.tcp, "B")
    if local:
        a.register(dying, "driver", "J2")
    else:
        a.clients.add_remote_driver("J2", dying)
    register_actor(a, 7, owner=dying, job="J2")
    a.handle("ipc://bystander", wire.SUBSCRIBE_ACTOR, (actor_id(7),))
    a.scheduler.handle_worker_started("w1", "J2", "ipc://w1", 41)
    a.handle(dying, wire.SUBMIT_TASK, (spec(8, owner=dying, job="J2"),))
    assert a.scheduler.running_task_of("w1") is not None
    net.sent.clear()
    if local:   # what the daemon does when the process's pidfd fires
        client = a.clients.clients.pop(dying)
        a.services.client_gone(dying, client.kind, client.job_id, local=True)
    else:
        a.handle(b.tcp, wire.PEER_CLIENT_GONE, (dying, "driver", "J2"))
    messages = sorted(((addr, t, repr(p)) for _, addr, t, p in net.sent
                       if t != wire.PEER_CLIENT_GONE), key=repr)
    return messages, a


def test_a_local_and_a_remote_client_death_produce_the_same_messages():
    local, node_l = _client_death(local=True)
    remote, node_r = _client_death(local=False)
    assert [m[:2] for m in local] == [m[:2] for m in remote]
    kinds = {t for _, t, _ in local}
    assert {wire.CLIENT_DIED, wire.ACTOR_STATE} <= kinds
    for node in (node_l, node_r):
        assert set(node.killed) == {41}                # the worker running its task
        assert node.services.actors.directory.get(actor_id(7)).state == "DEAD"
        assert not node.clients.job_alive("J2")


# -- the key-value store ----------------------------------------------------------------------------
def kv(node, msg_type, *args, client="ipc://kv-client", req=[0]):
    req[0] += 1
    node.handle(client, msg_type, (req[0],) + args)
    node.net.deliver()
    (_, result, error) = [p for p in node.net.to(client, wire.KV_REPLY) if p[0] == req[0]][0]
    if error is not None:
        raise error
    return result


def test_kv_on_one_node():
    net = Network()
    a = net.add("A")
    assert kv(a, wire.KV_PUT, "ns", "k", b"v1", True) is True
    assert kv(a, wire.KV_PUT, "ns", "k", b"v2", False) is False
    assert kv(a, wire.KV_GET, "ns", "k") == b"v1"
    assert kv(a, wire.KV_GET, "other", "k") is None
    assert kv(a, wire.KV_KEYS, "ns", "") == ["k"]
    assert kv(a, wire.KV_DEL, "ns", "k") is True
    assert kv(a, wire.KV_DEL, "ns", "k") is False
    with pytest.raises(TypeError):
        kv(a, wire.KV_PUT, "ns", "k", "not bytes", True)


def test_kv_keys_live_on_the_ring_and_survive_any_one_death():
    net = Network()
    nodes = [net.add(n) for n in "ABCD"]
    a = nodes[0]
    for i in range(12):
        assert kv(a, wire.KV_PUT, "ns", f"key{i}", b"%d" % i, True)
    deciders = {a.membership.ring.owner(kv_key("ns", f"key{i}")) for i in range(12)}
    assert len(deciders) > 1                  # spread over the ring
    assert kv(nodes[3], wire.KV_KEYS, "ns", "key1") == ["key1", "key10", "key11"]
    for victim in nodes[1:]:
        trial = Network()
        ns = [trial.add(n) for n in "ABCD"]
        for i in range(12):
            kv(ns[0], wire.KV_PUT, "ns", f"key{i}", b"%d" % i, True)
        trial.kill(ns["ABCD".index(victim.node_id)])
        trial.deliver()
        reader = ns[0]
        assert [kv(reader, wire.KV_GET, "ns", f"key{i}") for i in range(12)] == \
            [b"%d" % i for i in range(12)]
        assert len(kv(reader, wire.KV_KEYS, "ns", "")) == 12


def test_a_kv_request_to_a_silent_decider_times_out_on_virtual_time():
    net = Network()
    a, b = net.add("A"), net.add("B")
    key = next(f"k{i}" for i in range(100) if a.membership.ring.owner(kv_key("ns", f"k{i}")) == "B")
    net.dead.add("B")                         # dead, but A has not noticed
    a.handle("ipc://c", wire.KV_GET, (1, "ns", key))
    net.deliver()
    assert net.to("ipc://c", wire.KV_REPLY) == []
    net.now += 11.0
    a.services.tick(net.now)
    ((req, result, error),) = net.to("ipc://c", wire.KV_REPLY)
    assert req == 1 and isinstance(error, TimeoutError)
