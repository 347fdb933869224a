"""The cpu backend ("gloo": shared memory in one node, ZeroMQ forced) and the mpi backend
(MPI started lazily in each actor, joined by Open_port/Accept/Connect) between zray actors."""
import time

import numpy as np
import pytest

import zray
import zray.util.collective as col

try:
    import torch
except ImportError:          # torch is optional: its cases skip
    torch = None


@pytest.fixture(scope="module")
def cluster():
    if zray.is_initialized():
        zray.shutdown()
    zray.init(num_cpus=2)
    yield
    zray.shutdown()


def _tensor(lib, values):
    a = np.ascontiguousarray(values)
    return torch.from_numpy(a.copy()) if lib == "torch" else a.copy()


def _np(t):
    return t.numpy() if hasattr(t, "numpy") and not isinstance(t, np.ndarray) else t


def _error(exc):
    return {"type": type(exc).__name__, "peer": getattr(exc, "peer", None), "msg": str(exc),
            "collective": isinstance(exc, col.CollectiveError)}


@zray.remote(num_cpus=0)
class Member:
    def init(self, world_size, rank, name, force_network=False, backend="gloo"):
        col.set_config(col.CollectiveConfig(force_network=force_network))
        col.init_collective_group(world_size, rank, backend, name)
        return col.get_rank(name), col.get_collective_group_size(name)

    def destroy(self, name):
        col.destroy_collective_group(name)
        return col.is_group_initialized(name)

    def init_cma(self, world_size, rank, name, refuse=False, enabled=True, min_bytes=0):
        """Form a shm group with cross-memory reads from `min_bytes`; `refuse`: this member
        cannot read its peers (as where the kernel forbids it)."""
        from zray.util.collective.backends import cma
        saved = cma.available
        if refuse:
            cma.available = lambda: False
        try:
            col.set_config(col.CollectiveConfig(cma=enabled, cma_min_bytes=min_bytes,
                                                cma_chunk_bytes=4096))
            col.init_collective_group(world_size, rank, "gloo", name)
        finally:
            cma.available = saved
            col.set_config(col.CollectiveConfig())
        from zray.util.collective.collective import get_group_handle
        shm = get_group_handle(name).shm
        return shm.use_cma, shm.cma_min_bytes

    def allreduce_sizes(self, name, sizes):
        r, ws = col.get_rank(name), col.get_collective_group_size(name)
        bad = []
        for n in sizes:
            for dt in (np.float32, np.float64, np.int64, np.int8):
                x = (np.arange(n) % 7 + r).astype(dt)
                col.allreduce(x, name)
                want = sum((np.arange(n) % 7 + k).astype(dt) for k in range(ws)).astype(dt)
                if not (x == want).all():
                    bad.append((n, np.dtype(dt).str))
            x = np.full(n, r + 1.0)
            col.allreduce(x, name, col.ReduceOp.AVG)
            if not np.allclose(x, (ws + 1) / 2):
                bad.append((n, "avg"))
            x = np.arange(n, dtype=np.float32) * (r + 1)
            col.allreduce(x, name, col.ReduceOp.MAX)
            if not (x == np.arange(n, dtype=np.float32) * ws).all():
                bad.append((n, "max"))
        return bad

    def pid(self):
        import os
        return os.getpid()

    def allreduce_then_overwrite(self, name, n, rounds):
        """Large allreduces over ZeroMQ (their messages go out of the tensor itself), the
        tensor overwritten the moment each call returns: a message still read from it
        would carry the NaNs to a peer. (wrong results, zero-copy messages per call)"""
        r, ws = col.get_rank(name), col.get_collective_group_size(name)
        net = col.get_group_handle(name).net
        tracked = []
        wait_sent = net._wait_sent
        net._wait_sent = lambda deadline: (tracked.append(len(net.in_flight)),
                                           wait_sent(deadline))[1]
        wrong, x = 0, np.empty(n)
        for k in range(rounds):
            x[:] = r + k
            col.allreduce(x, name)
            wrong += not (x == sum(range(ws)) + ws * k).all()
            x[:] = np.nan
        net._wait_sent = wait_sent
        return wrong, min(tracked), net.in_flight

    def every_op(self, name, lib, n):
        r, ws = col.get_rank(name), col.get_collective_group_size(name)
        out = {}
        x = _tensor(lib, np.arange(n, dtype=np.float32) + r)
        col.allreduce(x, name)
        out["allreduce"] = _np(x).copy()
        x = _tensor(lib, np.full(n, r + 1.0))
        col.allreduce(x, name, col.ReduceOp.AVG)
        out["avg"] = _np(x).copy()
        for op in ("MIN", "MAX", "PRODUCT"):
            x = _tensor(lib, np.full(n, r + 2, np.int64))
            col.allreduce(x, name, getattr(col.ReduceOp, op))
            out[op] = _np(x).copy()
        x = _tensor(lib, np.full(n, float(r)))
        col.broadcast(x, ws - 1, name)
        out["broadcast"] = _np(x).copy()
        x = _tensor(lib, np.full(n, r + 1.0))
        col.reduce(x, 1, name)
        out["reduce"] = _np(x).copy()
        outs = [_tensor(lib, np.zeros(n)) for _ in range(ws)]
        col.allgather(outs, _tensor(lib, np.full(n, float(r))), name)
        out["allgather"] = [_np(t).copy() for t in outs]
        t = _tensor(lib, np.zeros(n))
        col.reducescatter(t, [_tensor(lib, np.full(n, 10.0 * k + r)) for k in range(ws)], name)
        out["reducescatter"] = _np(t).copy()
        outs = [_tensor(lib, np.zeros(n)) for _ in range(ws)] if r == 0 else None
        col.gather(outs, _tensor(lib, np.full(n, r * 3.0)), 0, name)
        out["gather"] = [_np(t).copy() for t in outs] if outs else None
        t = _tensor(lib, np.zeros(n))
        ins = [_tensor(lib, np.full(n, 5.0 * k)) for k in range(ws)] if r == 1 else None
        col.scatter(t, ins, 1, name)
        out["scatter"] = _np(t).copy()
        outs = [_tensor(lib, np.zeros(n)) for _ in range(ws)]
        col.alltoall(outs, [_tensor(lib, np.full(n, 100.0 * r + k)) for k in range(ws)], name)
        out["alltoall"] = [_np(t).copy() for t in outs]
        col.barrier(name)
        if r == 0:
            col.send(_tensor(lib, np.full(n, 42.0)), ws - 1, name)
        if r == ws - 1:
            t = _tensor(lib, np.zeros(n))
            col.recv(t, 0, name)
            out["recv"] = _np(t).copy()
        w = col.allreduce(_tensor(lib, np.ones(n)), name, async_op=True)
        out["async"] = w.wait(timeout=30) and w.is_completed()
        return out

    def allreduce(self, name, n=8, timeout_ms=None, value=1.0):
        try:
            x = np.full(n, value)
            col.allreduce(x, name, timeout_ms=timeout_ms)
            return x
        except Exception as exc:           # the driver inspects it
            return _error(exc)

    def sleep(self, s):
        time.sleep(s)

    def two_groups(self, names, n):
        xs = [np.full(n, float(i + 1)) for i in range(len(names))]
        works = [col.allreduce(x, nm, async_op=True) for x, nm in zip(xs, names)]
        for w in works:
            w.wait(timeout=30)
        return [float(x[0]) for x in xs]


def _check_every_op(results, ws, n):
    for r, out in enumerate(results):
        np.testing.assert_array_equal(out["allreduce"],
                                      sum(np.arange(n, dtype=np.float32) + k for k in range(ws)))
        np.testing.assert_allclose(out["avg"], np.full(n, (ws + 1) / 2))
        np.testing.assert_array_equal(out["MIN"], 2)
        np.testing.assert_array_equal(out["MAX"], ws + 1)
        np.testing.assert_array_equal(out["PRODUCT"], np.prod(np.arange(2, ws + 2)))
        np.testing.assert_array_equal(out["broadcast"], ws - 1.0)
        expect_reduce = sum(range(1, ws + 1)) if r == 1 else r + 1.0
        np.testing.assert_array_equal(out["reduce"], expect_reduce)
        for k in range(ws):
            np.testing.assert_array_equal(out["allgather"][k], float(k))
            np.testing.assert_array_equal(out["alltoall"][k], 100.0 * k + r)
        np.testing.assert_array_equal(out["reducescatter"], sum(10.0 * r + k for k in range(ws)))
        if r == 0:
            for k in range(ws):
                np.testing.assert_array_equal(out["gather"][k], 3.0 * k)
        np.testing.assert_array_equal(out["scatter"], 5.0 * r)
        if r == ws - 1:
            np.testing.assert_array_equal(out["recv"], 42.0)
        assert out["async"]


@pytest.fixture(scope="module")
def members(cluster):
    return [Member.remote() for _ in range(3)]


def _mpi_ok():
    return col.mpi_available()


def _form(members, name, force_network=False, backend="gloo"):
    ws = len(members)
    got = zray.get([m.init.remote(ws, i, name, force_network, backend)
                    for i, m in enumerate(members)], timeout=60)
    assert got == [(i, ws) for i in range(ws)]


def _destroy(members, name):
    assert zray.get([m.destroy.remote(name) for m in members], timeout=30) == [False] * \
        len(members)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("path", ["shm", "net", "mpi"])
def test_every_op(members, lib, path):
    if lib == "torch" and torch is None:
        pytest.skip("torch is not installed")
    if path == "mpi" and not _mpi_ok():
        pytest.skip("mpi4py is not installed")
    name = f"every-{lib}-{path}"
    _form(members, name, force_network=path == "net",
          backend="mpi" if path == "mpi" else "gloo")
    for n in (5, 70_000):       # below and above the tree/ring threshold
        results = zray.get([m.every_op.remote(name, lib, n) for m in members], timeout=120)
        _check_every_op(results, len(members), n)
    _destroy(members, name)


def test_network_allreduce_sends_the_tensor_itself_and_returns_once_sent(members):
    """Messages of >= zero_copy_min_bytes leave without a copy; the call returns only once
    ZeroMQ let go of them, so the caller may write the tensor at once."""
    name = "zero-copy"
    _form(members, name, force_network=True)
    n = 3 * (4 << 20) // 8 + 5              # float64: ring segments of ~4 MiB, chunked
    out = zray.get([m.allreduce_then_overwrite.remote(name, n, 6) for m in members],
                   timeout=240)
    for wrong, least_tracked, left in out:
        assert (wrong, left) == (0, []), out
        assert least_tracked >= 1, out        # the sends were zero-copy ones
    _destroy(members, name)


def test_mpi_large_allreduce_between_actors_rings_over_point_to_point(members):
    """>= RING_MIN_BYTES_JOINED (4 MiB): the mpi backend's own ring over Isend/Irecv, with a
    length the member count does not divide; then a small call still uses Iallreduce."""
    if not _mpi_ok():
        pytest.skip("mpi4py is not installed")
    from zray.util.collective.backends.mpi import RING_MIN_BYTES_JOINED
    name = "mpi-ring"
    _form(members, name, backend="mpi")
    n = RING_MIN_BYTES_JOINED // 8 + 5
    out = zray.get([m.allreduce.remote(name, n=n, value=float(i + 1))
                    for i, m in enumerate(members)], timeout=120)
    assert all(x.shape == (n,) and (x == 6.0).all() for x in out)
    out = zray.get([m.allreduce.remote(name, n=3) for m in members], timeout=60)
    assert all((x == 3.0).all() for x in out)
    _destroy(members, name)


@pytest.mark.parametrize("path", ["shm", "net", "mpi"])
def test_mismatched_shapes_raise_not_hang(members, path):
    if path == "mpi" and not _mpi_ok():
        pytest.skip("mpi4py is not installed")
    name = f"mismatch-{path}"
    _form(members, name, force_network=path == "net",
          backend="mpi" if path == "mpi" else "gloo")
    res = zray.get([m.allreduce.remote(name, n=4 + (i == 2), timeout_ms=20_000)
                    for i, m in enumerate(members)], timeout=60)
    assert all(isinstance(r, dict) and r["collective"] for r in res), res
    if path in ("shm", "mpi"):      # every rank saw the same table: an argument error, group usable
        assert {r["type"] for r in res} == {"CollectiveArgumentError"}, res
        assert f"mismatch-{path}" in res[0]["msg"]
        ok = zray.get([m.allreduce.remote(name, n=4) for m in members], timeout=60)
        assert all(float(x[0]) == 3.0 for x in ok)
    else:
        assert "CollectiveArgumentError" in {r["type"] for r in res}, res
    _destroy(members, name)


@pytest.mark.parametrize("case", ["on", "refused", "off", "thresholds"])
def test_allreduce_reading_the_peers_memory(members, case):
    """The shm allreduce that reads the peers' tensors in place (process_vm_readv): every
    size (below the member count, not divisible by it, several 4 KiB chunks), dtype and op.
    The path of a call never depends on one member's settings: one member that cannot read
    its peers, or has it off, keeps every member on the segment; different size thresholds
    become the largest (else the members would run different protocols and hang)."""
    name = f"cma-{case}"
    used = zray.get([m.init_cma.remote(3, i, name, refuse=case == "refused" and i == 1,
                                       enabled=not (case == "off" and i == 2),
                                       min_bytes=16384 if case == "thresholds" and i else 0)
                     for i, m in enumerate(members)], timeout=60)
    assert len(set(used)) == 1, used              # decided alike from one table
    if case in ("refused", "off"):
        assert used[0][0] is False, used
    if case == "thresholds":
        assert used[0][1] == 16384, used
    sizes = [1, 2, 3, 1000, 3 * 1024 + 1, 40_000]
    assert zray.get([m.allreduce_sizes.remote(name, sizes) for m in members],
                    timeout=120) == [[], [], []]
    _destroy(members, name)


def test_destroyed_group_can_be_recreated_and_two_groups_run_at_once(members):
    _form(members, "again")
    _destroy(members, "again")
    _form(members, "again")
    _form(members[:2], "pair")
    res = zray.get([m.two_groups.remote(["again", "pair"], 1000) for m in members[:2]] +
                   [members[2].allreduce.remote("again", n=1000)], timeout=60)
    assert res[0] == res[1] == [3.0, 4.0]
    assert float(res[2][0]) == 3.0
    _destroy(members, "again")
    _destroy(members[:2], "pair")


def test_timeout_when_a_member_never_calls(members):
    _form(members[:2], "late")
    t0 = time.monotonic()
    res = zray.get(members[0].allreduce.remote("late", timeout_ms=300), timeout=30)
    assert res["type"] == "CollectiveTimeoutError" and res["peer"] == 1, res
    assert time.monotonic() - t0 < 10
    _destroy(members[:2], "late")


@pytest.mark.parametrize("path", ["shm", "net", "net-large", "mpi"])
def test_member_killed_mid_allreduce_fails_the_others(cluster, path):
    """net-large: 8 MiB, so the members' messages are zero-copy ones in flight."""
    if path == "mpi" and not _mpi_ok():
        pytest.skip("mpi4py is not installed")
    ms = [Member.remote() for _ in range(3)]
    name = f"killed-{path}"
    _form(ms, name, force_network=path.startswith("net"),
          backend="mpi" if path == "mpi" else "gloo")
    n = 1 << 20 if path == "net-large" else 1000
    pending = [m.allreduce.remote(name, n=n, timeout_ms=60_000) for m in ms[:2]]
    ms[2].sleep.remote(60)
    time.sleep(0.5)
    t0 = time.monotonic()
    zray.kill(ms[2])
    res = zray.get(pending, timeout=30)
    assert time.monotonic() - t0 < 15
    for r in res:
        assert isinstance(r, dict) and r["type"] == "PeerDiedError", res
        assert name in r["msg"]
    for m in ms[:2]:
        zray.kill(m)


def test_create_collective_group_from_the_driver(cluster):
    ms = [Member.remote() for _ in range(4)]
    zray.get([m.pid.remote() for m in ms], timeout=60)        # actors up
    t0 = time.perf_counter()
    col.create_collective_group(ms, 4, [3, 2, 1, 0], backend="gloo", group_name="declared")
    created_s = time.perf_counter() - t0
    res = zray.get([m.allreduce.remote("declared", n=16) for m in ms], timeout=60)
    first_op_s = time.perf_counter() - t0
    assert all(float(x[0]) == 4.0 for x in res), res
    print(f"create_collective_group: {created_s * 1000:.1f} ms; with the first allreduce "
          f"{first_op_s * 1000:.1f} ms")
    zray.get([m.destroy.remote("declared") for m in ms], timeout=30)
    for m in ms:
        zray.kill(m)
