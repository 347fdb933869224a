"""The mpi backend's small allreduce in C (zray._mpi_hot): results, late peers, mismatches
and MPI errors under a real `mpiexec`; the module's own argument checks without MPI."""
import subprocess
import sys
import textwrap

import pytest

from test_collective_mpi_world import _run_ranks

pytest.importorskip("mpi4py")

HOT = textwrap.dedent('''
    import sys
    import time
    import numpy as np
    import zray.util.collective as col
    from zray.util.collective import collective as api

    rank, n = col.init_collective_group_from_world("mpi", "hot")
    col.init_collective_group_from_world(
        "mpi", "unverified", config=col.CollectiveConfig(verify_calls=False))
    impl = api._groups["hot"].impl
    seen = []                                   # the C path's early returns, by code
    finish = impl._hot_finish
    impl._hot_finish = lambda rc, *a: (seen.append(rc), finish(rc, *a))[1]
    unverified = api._groups["unverified"].impl
    seen_unverified = []
    finish_unverified = unverified._hot_finish
    unverified._hot_finish = lambda rc, *a: (seen_unverified.append(rc),
                                             finish_unverified(rc, *a))[1]
    col.allreduce(np.ones(4), "hot")            # the first call makes the C path's slots
    col.allreduce(np.ones(4), "unverified")
    assert impl._hot_state is not None, "the C path is off"
    assert unverified._hot_state is not None and unverified._hot_state[1] == 0

    # every dtype the backend's hot path takes, every op, odd lengths; results equal numpy's
    base = np.arange(1, 1001) % 7 + 1
    for dtype in (np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8, np.int8):
        for op in ("SUM", "PRODUCT", "MIN", "MAX", "AVG"):
            if op == "AVG" and np.dtype(dtype).kind != "f":
                continue
            mine = ((base + rank) % 3 + 1).astype(dtype)
            every = [((base + k) % 3 + 1).astype(dtype) for k in range(n)]
            want = {"SUM": sum(every[1:], every[0].copy()), "MIN": np.min(every, axis=0),
                    "MAX": np.max(every, axis=0), "PRODUCT": np.prod(every, axis=0),
                    "AVG": sum(every[1:], every[0].copy()) / n}[op].astype(dtype)
            for length in (1, 3, 1000):
                x = mine[:length].copy()
                col.allreduce(x, "hot", getattr(col.ReduceOp, op))
                assert np.array_equal(x, want[:length]), (dtype, op, length, x[:5])
    # a large one below the ring's threshold: the C path polls it longer (by its size)
    big = np.arange(300_001, dtype=np.float32) + rank
    col.allreduce(big, "hot")
    want = n * np.arange(300_001, dtype=np.float64) + sum(range(n))
    assert np.array_equal(big, want.astype(np.float32)), big[:4]
    plans = len(impl._hot_plans)
    assert plans >= 20, plans                   # they went through the C path
    assert seen.count(2) == 0 and all(rc > 0 for rc in seen), seen

    # a late peer: the verification (verified group) or the data (unverified) is pending
    # when the C path's polls end; the wait goes on in Python and the result is right
    for group in ("hot", "unverified"):
        if rank == 1:
            time.sleep(0.2)
        x = np.full(5, rank + 1.0)
        col.allreduce(x, group)
        assert (x == n * (n + 1) / 2).all(), x
    if rank == 0:
        assert 1 in seen and 3 in seen_unverified, (seen, seen_unverified)

    # mismatches through the C path: an argument error on every rank, the group goes on
    for mine in (np.ones(3 + rank), np.ones(4, np.float32 if rank else np.float64)):
        col.allreduce(np.ones(2), "hot")        # the shapes' plans exist: the C path
        try:
            col.allreduce(mine, "hot")
        except col.CollectiveArgumentError as exc:
            assert "mismatched allreduce" in str(exc) and "'hot'" in str(exc), exc
        else:
            raise AssertionError("no error for mismatched allreduces")
        x = np.ones(2); col.allreduce(x, "hot"); assert (x == n).all()

    # the kept (persistent) data request: made when every rank repeats its previous call,
    # started while every rank's kept request serves the call, replaced when all repeat
    # another; calls that only some ranks repeat take an Iallreduce. Results stay right.
    KEPT, KEPT_BUF = 9, 11
    a, b = np.zeros(1000), np.zeros(1000)
    for step in range(12):
        # a, a, a, b, b, b, a, ...: ranks switch together; from step 8 on, rank 0 switches
        # buffers every call and the others every third (the repeat flags then differ)
        use = (b if (step // 3) % 2 else a) if (step < 8 or rank) else (a if step % 2 else b)
        use[:] = rank + step
        col.allreduce(use, "hot")
        assert (use == sum(range(n)) + n * step).all(), (step, use[:3])
        if step in (1, 2, 4, 5):
            assert impl._hot_state[KEPT] == 1, (step, impl._hot_state)
            assert impl._hot_state[KEPT_BUF] == use.ctypes.data, step
    for late in (False, False, True):           # kept on `a`; then a late peer's call on it
        if late and rank == 1:
            time.sleep(0.2)
        seen.clear()
        a[:] = rank + 1
        col.allreduce(a, "hot")
        assert (a == n * (n + 1) / 2).all(), a[:3]
        assert impl._hot_state[KEPT] == 1 and impl._hot_state[KEPT_BUF] == a.ctypes.data
    # rank 0 waited for the verification in Python, then data() started the kept request
    # (and, if it was not done within its polls, waited for it in Python too: 3)
    assert rank != 0 or (seen[0] == 1 and set(seen) <= {1, 3}), seen

    # an MPI error inside the C call (a datatype handle that is none): a negative code,
    # raised by the backend as a CollectiveError naming the group; nothing was started
    from zray import _mpi_hot
    state = impl._hot_state.copy(); state[1] = 0
    plan = bytearray(impl._hot_plans[(2, np.dtype(np.float64), col.ReduceOp.SUM)])
    plan[88:96] = (0).to_bytes(8, "little")
    rc = _mpi_hot.allreduce(state, np.ones(2), bytes(plan))
    assert rc < 0, rc
    try:
        impl._hot_finish(rc, np.ones(2), col.ReduceOp.SUM, bytes(plan),
                         time.monotonic() + 10)
    except col.CollectiveError as exc:
        assert "MPI error" in str(exc) and "'hot'" in str(exc), exc
    else:
        raise AssertionError("no error for an MPI error code")
    x = np.ones(2); col.allreduce(x, "hot"); assert (x == n).all()
    col.destroy_collective_group("hot")
    col.destroy_collective_group("unverified")
    sys.stdout.write(f"RANK-OK {rank}\\n"); sys.stdout.flush()
''')


@pytest.mark.parametrize("ranks", [2, 3])
def test_small_allreduces_in_c_under_mpiexec(tmp_path, ranks):
    _run_ranks(tmp_path, HOT, ranks)


def test_c_path_argument_checks_without_mpi():
    """In a fresh interpreter (no MPI in it): unbound, a zero address, short buffers."""
    code = textwrap.dedent('''
        import numpy as np
        from zray import _mpi_hot
        state = np.zeros(_mpi_hot.SLOTS, np.int64)
        plan = bytes(8 * _mpi_hot.PLAN_WORDS)
        try:
            _mpi_hot.allreduce(state, np.ones(2), plan)
        except RuntimeError as exc:
            assert "bind() was not called" in str(exc), exc
        else:
            raise AssertionError("allreduce before bind")
        try:
            _mpi_hot.bind(0, 1, 1, 1, 1)
        except ValueError as exc:
            assert "address is 0" in str(exc)
        else:
            raise AssertionError("bind to address 0")
        import ctypes
        libc = ctypes.CDLL(None)
        _mpi_hot.bind(*[ctypes.cast(libc.abs, ctypes.c_void_p).value] * 5)
        for args, err in (((state[:3], np.ones(2), plan), "state: 24 bytes"),
                          ((state, np.ones(2), plan[:16]), "plan: 16 bytes"),
                          ((state, np.ones(2)), "takes 3 arguments")):
            try:
                _mpi_hot.allreduce(*args)
            except (ValueError, TypeError) as exc:
                assert err in str(exc), (err, exc)
            else:
                raise AssertionError(err)
        ro = np.ones(2); ro.flags.writeable = False
        try:
            _mpi_hot.allreduce(state, ro, plan)
        except (BufferError, ValueError, TypeError):
            pass
        else:
            raise AssertionError("a read-only buffer")
        print("OK")
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "OK", out.stdout + out.stderr
