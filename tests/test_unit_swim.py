"""SWIM membership with virtual time and an in-memory network: no sockets, no sleeping."""
import pytest

from zray.mesh.simulation import SimulatedMesh
from zray.mesh.swim import ALIVE, DEAD, LEFT, SUSPECT, Swim, SwimConfig


@pytest.mark.parametrize("n", [3, 5, 10])
def test_a_killed_member_is_declared_dead_everywhere_within_5_seconds(n):
    for seed in range(3):
        mesh = SimulatedMesh(n, seed=seed)
        mesh.run_until(lambda: False, 1.0)
        mesh.kill("m1")
        took = mesh.run_until(lambda: mesh.all_dead_to_all("m1"), 30)
        assert took is not None and took < 5.0, f"n={n} seed={seed}: {took}"


def test_a_joiner_is_known_to_all_and_knows_all():
    mesh = SimulatedMesh(8, seed=3)
    new = mesh.add_member(join=True, seeds=["m5"])
    assert mesh.run_until(lambda: mesh.all_see(new, {ALIVE}), 10) is not None
    assert mesh.run_until(lambda: len(mesh.members[new].alive_members()) == 9, 10) is not None


def test_join_through_any_seed_of_a_grown_cluster():
    mesh = SimulatedMesh(3, seed=4)
    a = mesh.add_member(join=True, seeds=["m0"])
    b = mesh.add_member(join=True, seeds=[a])      # the newest member as the seed
    assert mesh.run_until(lambda: all(mesh.all_see(x, {ALIVE}) for x in (a, b)), 10) is not None


def test_graceful_leave_is_left_not_dead_and_needs_no_suspicion():
    mesh = SimulatedMesh(6, seed=5)
    mesh.run_until(lambda: False, 1.0)
    mesh.members["m2"].leave(mesh.now)
    mesh._flush(mesh.members["m2"])
    mesh.kill("m2")
    took = mesh.run_until(lambda: all(m.members["m2"].state == LEFT for m in mesh.living()), 10)
    assert took is not None and took < 1.0


def test_a_suspected_member_that_is_alive_refutes_with_a_higher_incarnation():
    mesh = SimulatedMesh(5, seed=6)
    victim = mesh.members["m3"]
    accuser = mesh.members["m0"]
    accuser._suspect("m3", mesh.now, reason_from="m0")
    mesh._flush(accuser)
    assert accuser.members["m3"].state == SUSPECT
    assert mesh.run_until(lambda: victim.incarnation > 0 and mesh.all_see("m3", {ALIVE}), 5) is not None
    mesh.run_until(lambda: False, 5.0)
    assert mesh.all_see("m3", {ALIVE})     # never declared dead


def test_partition_then_heal_converges_again():
    mesh = SimulatedMesh(6, seed=7)
    left, right = ["m0", "m1", "m2"], ["m3", "m4", "m5"]
    mesh.partition(left, right)

    def split():
        return (all(mesh.members[a].members[b].state == DEAD for a in left for b in right) and
                all(mesh.members[b].members[a].state == DEAD for a in left for b in right))
    took = mesh.run_until(split, 30)
    assert took is not None and took < 10
    mesh.heal()
    healed = mesh.run_until(lambda: all(mesh.all_see(x, {ALIVE}) for x in left + right), 30)
    assert healed is not None


def test_metadata_travels_with_a_new_incarnation():
    mesh = SimulatedMesh(5, seed=8)
    m1 = mesh.members["m1"]
    m1.update_meta({"CPU": 4, "load": 0.5}, mesh.now)
    assert mesh.run_until(lambda: all(m.members["m1"].meta.get("CPU") == 4 for m in mesh.living()), 5) is not None


def test_a_message_about_us_being_dead_is_refuted():
    me = Swim("a", "a")
    me._apply(("dead", "a", 0, "b"), 0.0)
    assert me.incarnation == 1
    assert me.take_outbox() == [] and me._broadcasts["a"].message[0] == "alive"


def test_news_wins_only_with_a_higher_incarnation():
    me = Swim("a", "a")
    me._apply(("alive", "b", 3, "b", {}), 0.0)
    me._apply(("suspect", "b", 2, "c"), 0.0)
    assert me.members["b"].state == ALIVE
    me._apply(("suspect", "b", 3, "c"), 0.0)
    assert me.members["b"].state == SUSPECT
    me._apply(("alive", "b", 3, "b", {}), 0.0)
    assert me.members["b"].state == SUSPECT
    me._apply(("alive", "b", 4, "b", {}), 0.0)
    assert me.members["b"].state == ALIVE
    me._apply(("dead", "b", 4, "c"), 0.0)
    assert me.members["b"].state == DEAD
    me._apply(("alive", "b", 4, "b", {}), 0.0)
    assert me.members["b"].state == DEAD


@pytest.mark.parametrize("bad", [
    {"probe_interval": 0}, {"probe_timeout": 1.0}, {"indirect_checks": 0},
    {"suspicion_mult": -1}, {"gossip_fanout": 0},
])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        SwimConfig(**bad)


def test_unknown_message_kind_is_an_error():
    with pytest.raises(ValueError):
        Swim("a", "a").receive("b", ("bogus",), 0.0)


def test_the_scale_benchmark_runs_at_a_tiny_size(capsys):
    from benchmarks.membership_scale import main
    main(["--max", "16", "--seeds", "1"])
    assert "detect rounds" in capsys.readouterr().out
