"""The cpu backend's schedules on an in-memory network: no process, no socket."""
import numpy as np
import pytest

from zray.util.collective import algorithms as alg
from zray.util.collective.tensors import reducer
from zray.util.collective.types import ReduceOp

ADD = reducer(ReduceOp.SUM)
SENDS = {"copied": True}


@pytest.fixture(autouse=True, params=["copied", "zero-copy"])
def send_mode(request):
    """Every schedule runs twice: sends copied, and sends queued as views of the buffers (as
    the ZeroMQ transport sends a collective's large messages): a schedule that wrote a range
    it sent before the peer took it would give a wrong result in the second."""
    SENDS["copied"] = request.param == "copied"
    return request.param


def run(n, make_steps, inputs, chunk=7, inputs2=None):
    net = alg.MemoryNetwork(n, copy_sends=SENDS["copied"])
    works = [x.copy() for x in inputs]
    gens = []
    for r in range(n):
        bufs = {alg.WORK: works[r], alg.INPUT: inputs2[r] if inputs2 else works[r]}
        gens.append(alg.execute(make_steps(r), bufs, chunk, ADD))
    net.run(gens)
    return works, net


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("length", [1, 3, 10, 64])
@pytest.mark.parametrize("kind", ["ring", "tree"])
def test_allreduce_schedules_sum_everything(n, length, kind):
    rng = np.random.default_rng(n * 100 + length)
    inputs = [rng.integers(0, 100, length).astype(np.int64) for _ in range(n)]
    make = (lambda r: alg.ring_allreduce(r, n, length)) if kind == "ring" and n > 1 else \
        (lambda r: alg.tree_allreduce(r, n, length))
    works, net = run(n, make, inputs)
    for w in works:
        np.testing.assert_array_equal(w, sum(inputs))
    assert net.max_message_elems <= 7


def test_ring_allreduce_moves_2_n_minus_1_over_n_of_the_data():
    n, length = 4, 400
    _, net = run(n, lambda r: alg.ring_allreduce(r, n, length), [np.ones(length)] * n, chunk=1000)
    assert net.sent_elems == [2 * (n - 1) * length // n] * n


def test_chunks_never_exceed_the_limit():
    n, length = 3, 1000
    _, net = run(n, lambda r: alg.ring_allreduce(r, n, length), [np.ones(length)] * n, chunk=64)
    assert net.max_message_elems == 64


@pytest.mark.parametrize("n", [2, 3, 5, 7])
@pytest.mark.parametrize("root", [0, 1, "last"])
def test_tree_reduce_and_broadcast_from_any_root(n, root):
    root = n - 1 if root == "last" else root
    inputs = [np.full(5, r + 1.0) for r in range(n)]
    works, _ = run(n, lambda r: alg.tree_reduce(r, n, 5, root), inputs)
    np.testing.assert_array_equal(works[root], sum(inputs))
    inputs = [np.full(5, float(r)) for r in range(n)]
    works, _ = run(n, lambda r: alg.tree_broadcast(r, n, 5, root), inputs)
    for w in works:
        np.testing.assert_array_equal(w, np.full(5, float(root)))


@pytest.mark.parametrize("n", [2, 3, 4])
def test_ring_reduce_large_lands_at_the_root(n):
    inputs = [np.arange(20.0) * (r + 1) for r in range(n)]
    works, _ = run(n, lambda r: alg.ring_reduce(r, n, 20, n - 1), inputs)
    np.testing.assert_array_equal(works[n - 1], sum(inputs))


@pytest.mark.parametrize("n", [2, 3, 4])
def test_reducescatter_gives_rank_r_segment_r(n):
    segs = alg.bounds(12 * n, n)
    inputs = [np.arange(12.0 * n) + r for r in range(n)]
    works, _ = run(n, lambda r: alg.ring_reducescatter(r, n, segs), inputs)
    total = sum(inputs)
    for r in range(n):
        a, b = segs[r]
        np.testing.assert_array_equal(works[r][a:b], total[a:b])


@pytest.mark.parametrize("n", [2, 3, 4])
def test_allgather_gather_scatter(n):
    m = 3
    inputs = [np.zeros(n * m) for _ in range(n)]
    for r in range(n):
        inputs[r][r * m:(r + 1) * m] = r + 1
    expected = np.repeat(np.arange(1.0, n + 1), m)
    works, _ = run(n, lambda r: alg.ring_allgather(r, n, alg.bounds(n * m, n)), inputs)
    for w in works:
        np.testing.assert_array_equal(w, expected)
    works, _ = run(n, lambda r: alg.direct_gather(r, n, m, 1), inputs)
    np.testing.assert_array_equal(works[1], expected)
    src = [expected.copy() if r == 0 else np.zeros(n * m) for r in range(n)]
    works, _ = run(n, lambda r: alg.direct_scatter(r, n, m, 0), src)
    for r in range(n):
        np.testing.assert_array_equal(works[r][r * m:(r + 1) * m], r + 1)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_pairwise_alltoall(n):
    m = 2
    ins = [np.array([100.0 * r + j for j in range(n) for _ in range(m)]) for r in range(n)]
    outs = [np.zeros(n * m) for _ in range(n)]
    for r in range(n):
        outs[r][r * m:(r + 1) * m] = ins[r][r * m:(r + 1) * m]
    works, _ = run(n, lambda r: alg.pairwise_alltoall(r, n, m), outs, inputs2=ins)
    for r in range(n):
        np.testing.assert_array_equal(works[r], np.repeat([100.0 * k + r for k in range(n)], m))


def test_mismatched_schedules_are_reported_not_hung():
    n = 2
    with pytest.raises((alg.DeadlockError, ValueError)):
        run(n, lambda r: alg.tree_allreduce(r, n, 4 if r == 0 else 5), [np.ones(5)] * n)
    with pytest.raises(alg.DeadlockError):
        run(n, lambda r: alg.tree_reduce(r, n, 4, root=r), [np.ones(4)] * n)


def test_zero_copy_mode_catches_a_range_written_before_the_peer_took_it(send_mode):
    """The check above can fail: rank 0 sends its range, then overwrites it with rank 2's
    data while rank 1 still waits for rank 2 first."""
    T, S = alg.Transfer, alg.Step
    steps = {0: [S(sends=(T(1, 0, 1),)), S(recvs=(T(2, 0, 1),))],
             1: [S(recvs=(T(2, 0, 1),)), S(recvs=(T(0, 1, 2),))],
             2: [S(sends=(T(0, 0, 1), T(1, 0, 1)))]}
    works, _ = run(3, steps.__getitem__, [np.array([10, 0]), np.array([0, 0]), np.array([2, 0])])
    assert works[1][1] == (10 if send_mode == "copied" else 2)


def test_choice_by_size():
    assert alg.choose_allreduce(0, 4, 100, 400, 1024) == alg.tree_allreduce(0, 4, 100)
    assert alg.choose_allreduce(0, 4, 10**6, 4 * 10**6, 1024) == alg.ring_allreduce(0, 4, 10**6)
    assert alg.choose_allreduce(0, 1, 10, 40, 0) == []
