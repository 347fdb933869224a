"""backends/shm.py's one-barrier path for small reductions (_reduce_small), between two
members in two threads of this process mapping one real segment: the results equal the
chunked path's bit for bit, a mismatch (one member small, the other chunked) raises on both
and leaves the segment usable, and the barriers work with the spin off."""
import threading
import time
import uuid

import numpy as np
import pytest

from zray.util.collective.backends import shm
from zray.util.collective.errors import CollectiveArgumentError
from zray.util.collective.tensors import reducer
from zray.util.collective.types import CollectiveConfig, ReduceOp


class _NoPeers:
    def check(self):
        pass


def _pair(**config):
    name = f"zraycoll-test-{uuid.uuid4().hex[:12]}"
    cfg = CollectiveConfig(shm_slot_bytes=256 << 10, **config)
    segs = [shm.ShmSegment(name, 2, r, cfg.shm_slot_bytes, "small", cfg, _NoPeers())
            for r in range(2)]
    segs[0].unlink()
    return segs


def _both(segs, fn):
    """fn(seg, rank) on both members at once; each result or exception by rank."""
    out = [None, None]

    def run(r):
        try:
            out[r] = fn(segs[r], r)
        except Exception as exc:     # noqa: BLE001 - returned to the test
            out[r] = exc
    threads = [threading.Thread(target=run, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    return out


def _allreduce(seg, flat, op):
    p = shm.Pieces([flat])
    avg = 2 if op is ReduceOp.AVG else 0
    seg.reduce_like("allreduce", p, (0, p), flat.dtype, reducer(op), avg, 0,
                    time.monotonic() + 30)
    return flat


@pytest.mark.parametrize("op,dtype", [
    (op, dtype) for op in (ReduceOp.SUM, ReduceOp.MAX, ReduceOp.AVG, ReduceOp.PRODUCT)
    for dtype in (np.float32, np.float64, np.int64)
    if op is not ReduceOp.AVG or dtype is not np.int64])       # AVG needs a floating dtype
def test_small_allreduce_equals_the_chunked_path(op, dtype, monkeypatch):
    rng = np.random.default_rng(7)
    inputs = [(rng.standard_normal(1000) * 10).astype(dtype) for _ in range(2)]
    segs = _pair()
    small = _both(segs, lambda s, r: _allreduce(s, inputs[r].copy(), op))
    monkeypatch.setattr(shm, "SMALL_BYTES", 0)          # the three-barrier path
    chunked = _both(segs, lambda s, r: _allreduce(s, inputs[r].copy(), op))
    assert small[0].tobytes() == small[1].tobytes() == chunked[0].tobytes()
    expect = {ReduceOp.SUM: inputs[0] + inputs[1], ReduceOp.MAX: np.maximum(*inputs),
              ReduceOp.PRODUCT: inputs[0] * inputs[1],
              ReduceOp.AVG: (inputs[0] + inputs[1]) / 2}[op]
    np.testing.assert_allclose(small[0], expect.astype(dtype), rtol=1e-6)


def test_small_reduce_and_reducescatter_fill_only_what_each_rank_wants():
    segs = _pair()
    dl = time.monotonic() + 30

    def reduce(seg, r):
        flat = np.full(64, r + 1, np.float32)
        p = shm.Pieces([flat])
        seg.reduce_like("reduce", p, (0, p) if r == 1 else None, flat.dtype,
                        reducer(ReduceOp.SUM), 0, 1, dl)
        return flat
    out = _both(segs, reduce)
    assert (out[1] == 3).all() and (out[0] == 1).all()     # root 1 only

    def reducescatter(seg, r):
        ins = [np.arange(8, dtype=np.int64) + 100 * k + r for k in range(2)]
        mine = np.zeros(8, np.int64)
        seg.reduce_like("reducescatter", shm.Pieces(ins), (r * 8, shm.Pieces([mine])),
                        np.int64, reducer(ReduceOp.SUM), 0, 0, dl)
        return mine
    out = _both(segs, reducescatter)
    for r in range(2):
        np.testing.assert_array_equal(out[r], 2 * (np.arange(8) + 100 * r) + 1)


def test_a_mismatch_between_a_small_and_a_chunked_call_raises_on_both_and_heals():
    segs = _pair()
    sizes = [100, 200_000]               # 400 B (one barrier) against 800 KB (chunked)
    out = _both(segs, lambda s, r: _allreduce(s, np.ones(sizes[r], np.float32), ReduceOp.SUM))
    assert all(isinstance(e, CollectiveArgumentError) for e in out), out
    assert "mismatched allreduce" in str(out[0])
    for size in (100, 200_000, 100):     # still in step: both paths, the right sums
        out = _both(segs, lambda s, r: _allreduce(s, np.full(size, r + 1.0, np.float32),
                                                  ReduceOp.SUM))
        assert (out[0] == 3).all() and (out[1] == 3).all()


def test_barriers_without_a_spin_sleep_and_still_meet():
    segs = _pair(spin_us=0)
    out = _both(segs, lambda s, r: [_allreduce(s, np.full(10, float(i + r), np.float64),
                                               ReduceOp.SUM)[0] for i in range(200)])
    assert out[0] == out[1] == [2.0 * i + 1 for i in range(200)]


def test_spin_us_is_checked():
    with pytest.raises(CollectiveArgumentError, match="spin_us"):
        CollectiveConfig(spin_us=-1)


def test_members_sharing_one_cpu_take_the_sleeping_path_and_still_meet():
    """Both threads pinned to one CPU: a waiter sees its late peer on its own CPU, skips the
    spin and sleeps (rank 1 also tries to move off, which a one-CPU mask forbids); every
    call completes with the right sum."""
    import os
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity here")
    cpu = min(os.sched_getaffinity(0))
    segs = _pair(spin_us=10_000)

    def pinned(seg, r):
        os.sched_setaffinity(0, {cpu})      # this thread only
        return [_allreduce(seg, np.full(4, float(i), np.float32), ReduceOp.SUM)[0]
                for i in range(300)]
    out = _both(segs, pinned)
    assert out[0] == out[1] == [2.0 * i for i in range(300)]


def test_moving_off_a_shared_cpu_gives_the_thread_its_mask_back():
    import os
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity here")
    from zray.util.collective.backends import futex
    segs = _pair()
    before = os.sched_getaffinity(0)
    segs[1]._move_off(futex.current_cpu())
    assert os.sched_getaffinity(0) == before
    assert segs[1]._next_move > time.monotonic()    # and not again before MOVE_EVERY_S
