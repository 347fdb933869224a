"""The mpi backend over the job's COMM_WORLD, under a real `mpiexec -n 2` (no zray cluster)."""
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mpi4py")

SCRIPT = textwrap.dedent('''
    import os
    import sys
    import numpy as np
    import zray.util.collective as col
    from zray.util.collective.backends.mpi import MpiGroup
    if os.environ.get("NO_PERSISTENT"):     # an MPI without persistent collectives
        MpiGroup._persistent_verify = lambda self: False
    from zray.util.collective.backends import mpi as mpi_backend
    mpi_backend.RING_MIN_BYTES_WORLD = 256 << 10    # the ring at this test's sizes
    try:
        import torch
    except ImportError:
        torch = None

    rank, n = col.init_collective_group_from_world("mpi", "world")
    assert (col.get_rank("world"), col.get_collective_group_size("world")) == (rank, n)
    libs = ["numpy"] + (["torch"] if torch is not None else [])

    def T(lib, a):
        a = np.ascontiguousarray(a)
        return torch.from_numpy(a.copy()) if lib == "torch" else a.copy()

    def N(t):
        return t if isinstance(t, np.ndarray) else t.numpy()

    for lib in libs:
        x = T(lib, np.arange(6.0) + rank); col.allreduce(x, "world")
        assert (N(x) == sum(np.arange(6.0) + k for k in range(n))).all(), x
        x = T(lib, np.full(3, rank + 1.0)); col.allreduce(x, "world", col.ReduceOp.AVG)
        assert (N(x) == (n + 1) / 2).all()
        for op, want in (("MIN", 1), ("MAX", n), ("PRODUCT", np.prod(range(1, n + 1)))):
            x = T(lib, np.full(3, rank + 1, np.int64))
            col.allreduce(x, "world", getattr(col.ReduceOp, op)); assert (N(x) == want).all()
        x = T(lib, np.full(3, float(rank))); col.broadcast(x, n - 1, "world")
        assert (N(x) == n - 1).all()
        x = T(lib, np.full(3, rank + 1.0)); col.reduce(x, 0, "world")
        assert (N(x) == (sum(range(1, n + 1)) if rank == 0 else rank + 1)).all()
        outs = [T(lib, np.zeros(3)) for _ in range(n)]
        col.allgather(outs, T(lib, np.full(3, float(rank))), "world")
        assert all((N(o) == k).all() for k, o in enumerate(outs))
        t = T(lib, np.zeros(3))
        col.reducescatter(t, [T(lib, np.full(3, 10.0 * k + rank)) for k in range(n)], "world")
        assert (N(t) == sum(10.0 * rank + k for k in range(n))).all()
        outs = [T(lib, np.zeros(3)) for _ in range(n)] if rank == 0 else None
        col.gather(outs, T(lib, np.full(3, 3.0 * rank)), 0, "world")
        assert rank != 0 or all((N(o) == 3.0 * k).all() for k, o in enumerate(outs))
        t = T(lib, np.zeros(3))
        col.scatter(t, [T(lib, np.full(3, 5.0 * k)) for k in range(n)] if rank == 1 else None,
                    1, "world")
        assert (N(t) == 5.0 * rank).all()
        outs = [T(lib, np.zeros(3)) for _ in range(n)]
        col.alltoall(outs, [T(lib, np.full(3, 100.0 * rank + k)) for k in range(n)], "world")
        assert all((N(o) == 100.0 * k + rank).all() for k, o in enumerate(outs))
        col.barrier("world", timeout_ms=10_000)
        if rank == 0:
            col.send(T(lib, np.full(3, 42.0)), 1, "world")
        elif rank == 1:
            t = T(lib, np.zeros(3)); col.recv(t, 0, "world"); assert (N(t) == 42).all()
        w = col.allreduce(T(lib, np.ones(3)), "world", async_op=True)
        assert w.wait(30) and w.is_completed()
    # large: the ring over point-to-point (>= RING_MIN_BYTES_WORLD), an odd length
    for dtype, op in ((np.float32, "SUM"), (np.float64, "AVG"), (np.int64, "MAX")):
        big = np.arange(300_001).astype(dtype) + rank
        col.allreduce(big, "world", getattr(col.ReduceOp, op))
        base = np.arange(300_001).astype(np.float64)
        want = {"SUM": n * base + sum(range(n)), "AVG": base + (n - 1) / 2,
                "MAX": base + n - 1}[op]
        assert np.array_equal(big, want.astype(dtype)), (op, big[:4])
    # mismatched shapes: an argument error on every rank, and the group still works
    try:
        col.allreduce(np.ones(3 + rank), "world")
    except col.CollectiveArgumentError as exc:
        assert "world" in str(exc)
    else:
        raise AssertionError("no error for mismatched shapes")
    x = np.ones(2); col.allreduce(x, "world"); assert (x == n).all()
    col.new_group([1, 0], "sub", "world")
    assert col.get_rank("sub") == 1 - rank
    col.destroy_collective_group("sub")
    col.destroy_collective_group("world")
    sys.stdout.write(f"RANK-OK {rank}\\n"); sys.stdout.flush()   # one write: ranks share a pipe
''')


def _run_ranks(tmp_path, source, n, **extra_env):
    """`source` under `mpiexec -n n`; asserts every rank printed its RANK-OK line."""
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("no mpiexec")
    script = tmp_path / "ranks.py"
    script.write_text(source)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))] +
        [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]), **extra_env)
    out = subprocess.run([mpiexec, "-n", str(n), sys.executable, str(script)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    # The ranks share stdout through mpiexec: read whole tokens, not lines.
    assert sorted(re.findall(r"RANK-OK \d", out.stdout)) == [f"RANK-OK {r}" for r in range(n)]


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent-verify", "iallreduce-verify"])
def test_every_op_under_mpiexec(tmp_path, persistent):
    _run_ranks(tmp_path, SCRIPT, 2, **({} if persistent else {"NO_PERSISTENT": "1"}))


RING3 = textwrap.dedent('''
    import sys
    import numpy as np
    import zray.util.collective as col
    from zray.util.collective.backends import mpi as mpi_backend
    mpi_backend.RING_MIN_BYTES_WORLD = 256 << 10    # the ring at this test's sizes
    rank, n = col.init_collective_group_from_world("mpi", "w3")
    for length in (300_001, 65_536 * 3 + 2, 1 << 20):
        x = np.full(length, rank + 1.0, np.float32)
        x[::7] += rank
        col.allreduce(x, "w3")
        want = np.full(length, n * (n + 1) / 2, np.float32)
        want[::7] += n * (n - 1) / 2
        assert np.array_equal(x, want), (length, x[:8])
    try:
        col.allreduce(np.ones(300_000 + rank), "w3")
    except col.CollectiveArgumentError:
        pass
    else:
        raise AssertionError("no error for mismatched large shapes")
    x = np.ones(300_000); col.allreduce(x, "w3"); assert (x == n).all()
    sys.stdout.write(f"RANK-OK {rank}\\n"); sys.stdout.flush()
''')


def test_large_allreduce_rings_over_three_ranks(tmp_path):
    _run_ranks(tmp_path, RING3, 3)
