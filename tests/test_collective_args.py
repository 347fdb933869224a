"""Argument checks of zray.util.collective: one CollectiveArgumentError each, no cluster."""
import dataclasses

import numpy as np
import pytest

import zray.util.collective as col
from zray.util.collective import types as T
from zray.util.collective.errors import CollectiveArgumentError, CollectiveError


@pytest.fixture
def solo():
    col.init_collective_group(1, 0, "gloo", "solo")
    yield "solo"
    col.destroy_collective_group("solo")


def test_argument_error_is_a_value_error_and_a_collective_error():
    assert issubclass(CollectiveArgumentError, ValueError)
    assert issubclass(CollectiveArgumentError, CollectiveError)
    assert issubclass(col.CollectiveTimeoutError, TimeoutError)


def test_errors_name_group_rank_and_peer_and_pickle():
    import pickle
    e = col.PeerDiedError("it died", group="g", rank=1, peer=2)
    assert str(e) == "[group 'g', rank 1, peer rank 2] it died"
    e2 = pickle.loads(pickle.dumps(e))
    assert (type(e2), str(e2), e2.peer) == (col.PeerDiedError, str(e), 2)


@pytest.mark.parametrize("ws, rank", [(0, 0), (2, 2), (2, -1), (True, 0), (2, 1.0), (2, None)])
def test_world_size_and_rank_ranges(ws, rank):
    with pytest.raises(CollectiveArgumentError):
        col.init_collective_group(ws, rank, "gloo", "bad")
    assert not col.is_group_initialized("bad")


@pytest.mark.parametrize("name", ["", None, 3])
def test_group_name(name):
    with pytest.raises(CollectiveArgumentError):
        col.init_collective_group(1, 0, "gloo", name)


def test_backend_names():
    assert T.Backend("gloo") == T.Backend("GLOO") == T.Backend("cpu") == "cpu"
    assert T.Backend("mpi") == "mpi" and T.Backend("nccl") == "nccl"
    with pytest.raises(CollectiveArgumentError):
        T.Backend("tcp")


def test_is_backend_available_by_any_case(monkeypatch):
    for name in ("GLOO", "gloo", "cpu", "torch_gloo"):
        assert col.is_backend_available(name) is True          # needs nothing installed
    assert col.is_backend_available("MPI") == col.mpi_available()
    assert col.is_backend_available("NCCL") == col.nccl_available()
    for bad in ("ucc", "", None, 3):
        assert col.is_backend_available(bad) is False         # Ray's answer: not an error
    monkeypatch.setattr(col, "mpi_available", lambda: False)
    assert col.is_backend_available("mpi") is False


@pytest.mark.parametrize("name", ["allreduce_multigpu", "reduce_multigpu", "broadcast_multigpu",
                                  "allgather_multigpu", "reducescatter_multigpu",
                                  "send_multigpu", "recv_multigpu"])
def test_multigpu_calls_say_what_to_do_instead(solo, name):
    with pytest.raises(CollectiveError, match="one actor per GPU") as info:
        getattr(col, name)([np.ones(2)], group_name=solo)
    assert name.replace("_multigpu", "") in str(info.value)
    assert getattr(col, name).__name__ == name
    x = np.ones(2)                                   # the group is untouched and goes on
    col.allreduce(x, solo)
    assert (x == 1).all()


def test_options_are_frozen_and_checked():
    o = T.AllReduceOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.reduce_op = T.ReduceOp.MAX
    assert T.AllReduceOptions().reduce_op is T.ReduceOp.SUM      # no process-wide mutation
    for bad in (0, -1, "1", True):
        with pytest.raises(CollectiveArgumentError):
            T.BarrierOptions(timeout_ms=bad)
    with pytest.raises(CollectiveArgumentError):
        T.AllReduceOptions(reduce_op="sum")


@pytest.mark.parametrize("kwargs", [dict(heartbeat_ivl_ms=5000, heartbeat_timeout_ms=5000),
                                    dict(chunk_bytes=100), dict(shm_slot_bytes=1 << 31),
                                    dict(timeout_ms=0), dict(liveness_interval_ms=10,
                                                             timeout_ms=5),
                                    dict(spin_iterations=-1), dict(zero_copy_min_bytes=-1)])
def test_config_bounds(kwargs):
    with pytest.raises(CollectiveArgumentError):
        T.CollectiveConfig(**kwargs)


def test_config_from_env():
    c = T.CollectiveConfig.from_env({"ZRAY_COLLECTIVE_TIMEOUT_MS": "1234",
                                     "ZRAY_COLLECTIVE_FORCE_NETWORK": "1",
                                     "ZRAY_COLLECTIVE_CHUNK_BYTES": "65536"})
    assert (c.timeout_ms, c.force_network, c.chunk_bytes) == (1234.0, True, 65536)
    assert c.peer_death_bound_ms(True) < c.peer_death_bound_ms(False)


def test_unknown_group():
    with pytest.raises(col.GroupNotInitializedError, match="nope"):
        col.allreduce(np.ones(2), "nope")
    assert col.get_rank("nope") == -1 and col.get_collective_group_size("nope") == -1


def test_twice_initialized(solo):
    with pytest.raises(CollectiveArgumentError, match="already"):
        col.init_collective_group(1, 0, "gloo", solo)


@pytest.mark.parametrize("tensor, match", [
    ([1, 2], "numpy array"), (np.ones((4, 4))[:, 0], "contiguous"),
    (np.array(["a"]), "dtype"), (np.array([object()]), "dtype")])
def test_tensor_kind_layout_dtype(solo, tensor, match):
    with pytest.raises(CollectiveArgumentError, match=match):
        col.allreduce(tensor, solo)


def test_read_only_tensor(solo):
    a = np.ones(3)
    a.flags.writeable = False
    with pytest.raises(CollectiveArgumentError, match="read-only"):
        col.allreduce(a, solo)
    col.allgather([np.zeros(3)], a, solo)       # an input may be read-only


def test_op_and_dtype(solo):
    with pytest.raises(CollectiveArgumentError, match="ReduceOp"):
        col.allreduce(np.ones(2), solo, op="sum")
    with pytest.raises(CollectiveArgumentError, match="AVG"):
        col.allreduce(np.ones(2, np.int32), solo, op=col.ReduceOp.AVG)
    with pytest.raises(CollectiveArgumentError, match="bool"):
        col.allreduce(np.ones(2, bool), solo, op=col.ReduceOp.SUM)


@pytest.mark.parametrize("call", [
    lambda g: col.broadcast(np.ones(2), 1, g), lambda g: col.reduce(np.ones(2), -1, g),
    lambda g: col.send(np.ones(2), 1, g), lambda g: col.recv(np.ones(2), 5, g),
    lambda g: col.send(np.ones(2), 0, g), lambda g: col.gather([np.ones(2)], np.ones(2), 2, g),
    lambda g: col.scatter(np.ones(2), [np.ones(2)], True, g)])
def test_rank_arguments(solo, call):
    with pytest.raises(CollectiveArgumentError, match="solo"):
        call(solo)


@pytest.mark.parametrize("call", [
    lambda g: col.allgather([np.ones(2), np.ones(2)], np.ones(2), g),
    lambda g: col.allgather(np.ones(2), np.ones(2), g),
    lambda g: col.allgather([np.ones(3)], np.ones(2), g),
    lambda g: col.allgather([np.ones(2, np.float32)], np.ones(2), g),
    lambda g: col.reducescatter(np.ones(2), [], g),
    lambda g: col.reducescatter(np.ones(2), [np.ones(4)], g),
    lambda g: col.alltoall([np.ones(2)], [np.ones(3)], g),
    lambda g: col.alltoall([np.ones(2)], [np.ones(2), np.ones(2)], g),
    lambda g: col.gather(None, np.ones(2), 0, g),
    lambda g: col.scatter(np.ones(2), None, 0, g)])
def test_list_lengths_and_shapes(solo, call):
    with pytest.raises(CollectiveArgumentError):
        call(solo)


def test_timeout_ms_argument(solo):
    with pytest.raises(CollectiveArgumentError, match="timeout_ms"):
        col.barrier(solo, timeout_ms=-5)


def test_create_collective_group_arguments():
    with pytest.raises(CollectiveArgumentError, match="world_size"):
        col.create_collective_group([], 2, [0, 1], "gloo", "x")
    with pytest.raises(CollectiveArgumentError, match="permutation"):
        col.create_collective_group([object(), object()], 2, [0, 0], "gloo", "x")
    with pytest.raises(CollectiveArgumentError, match="actor handle"):
        col.create_collective_group([object(), object()], 2, [0, 1], "gloo", "x")
    with pytest.raises(CollectiveArgumentError, match="backend"):
        col.create_collective_group([], 0, [], "carrier-pigeon", "x")


def test_world_of_one_runs_every_op_in_place(solo):
    x = np.arange(4.0)
    col.allreduce(x, solo, col.ReduceOp.AVG)
    np.testing.assert_array_equal(x, np.arange(4.0))
    outs = [np.zeros(4)]
    col.allgather(outs, x, solo)
    np.testing.assert_array_equal(outs[0], x)
    w = col.barrier(solo, async_op=True)
    assert w.wait(5) and w.is_completed()
    col.new_group([0], "solo-sub", solo)
    assert col.get_rank("solo-sub") == 0
    col.destroy_collective_group("solo-sub")


def test_import_zray_does_not_import_heavy_modules():
    import subprocess
    import sys
    code = ("import sys, zray, zray.util.collective; "
            "print([m for m in ('mpi4py', 'cupy', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
