"""Tests for the zray._native C extension: Allocator and parallel_copy."""
import bisect
import os
import random

import pytest

# Deliberately not importorskip: a missing/broken build must fail loudly.
from zray._native import Allocator, parallel_copy

MiB = 1 << 20


# --------------------------------------------------------------------------
# Allocator: basics
# --------------------------------------------------------------------------


def test_attributes_and_initial_state():
    a = Allocator(1 << 20)
    assert a.capacity == 1 << 20
    assert a.alignment == 64
    assert a.used == 0
    assert a.num_allocations == 0
    assert a.largest_free() == 1 << 20
    assert a.num_free_blocks == 1
    a._check()
    assert "capacity=1048576" in repr(a)
    for name in ("capacity", "alignment", "used", "num_allocations"):
        with pytest.raises(AttributeError):
            setattr(a, name, 5)


@pytest.mark.parametrize("alignment", [1, 8, 64, 4096, 1 << 21])
def test_alignment_and_rounding(alignment):
    a = Allocator(64 * MiB, alignment=alignment)
    sizes = [1, 3, alignment - 1 or 1, alignment, alignment + 1, 1000, 12345]
    for s in sizes:
        off = a.alloc(s)
        assert off >= 0
        assert off % alignment == 0
        rounded = -(-s // alignment) * alignment
        assert a.size_of(off) == rounded
    a._check()


def test_rounding_reported_in_used_and_free():
    a = Allocator(4096, alignment=64)
    off = a.alloc(65)
    assert a.used == 128
    assert a.size_of(off) == 128
    assert a.free(off) == 128
    assert a.used == 0


def test_capacity_not_multiple_of_alignment():
    a = Allocator(1000, alignment=64)  # usable: 960
    assert a.largest_free() == 960
    assert a.alloc(961) == -1
    off = a.alloc(960)
    assert off == 0
    assert a.alloc(1) == -1


def test_capacity_smaller_than_alignment():
    a = Allocator(10, alignment=64)
    assert a.largest_free() == 0
    assert a.alloc(1) == -1
    a._check()


def test_exhaustion_returns_minus_one():
    a = Allocator(64 * 16, alignment=64)
    offs = [a.alloc(64) for _ in range(16)]
    assert sorted(offs) == [i * 64 for i in range(16)]
    assert a.used == a.capacity
    assert a.largest_free() == 0
    assert a.alloc(1) == -1
    assert a.alloc(10**12) == -1  # larger than capacity: also -1, not an error
    assert a.num_allocations == 16
    a._check()


def test_free_and_coalesce_allows_full_alloc_again():
    cap = 1 << 20
    a = Allocator(cap, alignment=64)
    offs = [a.alloc(1000) for _ in range(cap // 1024)]
    assert all(o >= 0 for o in offs)
    assert a.alloc(cap) == -1
    # Free in a scrambled order so every coalescing case (left, right, both)
    # is exercised.
    rng = random.Random(1)
    rng.shuffle(offs)
    for o in offs:
        a.free(o)
        a._check()
    assert a.used == 0
    assert a.num_allocations == 0
    assert a.num_free_blocks == 1
    assert a.largest_free() == cap
    assert a.alloc(cap) == 0


def test_coalesce_both_sides():
    a = Allocator(64 * 3, alignment=64)
    x, y, z = a.alloc(64), a.alloc(64), a.alloc(64)
    a.free(x)
    a.free(z)
    assert a.num_free_blocks == 2
    assert a.largest_free() == 64
    a.free(y)  # merges with both neighbours
    assert a.num_free_blocks == 1
    assert a.largest_free() == 192
    a._check()


def test_best_fit_prefers_smallest_hole():
    a = Allocator(64 * 100, alignment=64)
    blocks = [a.alloc(64 * n) for n in (4, 1, 2, 1, 8, 1)]
    a.free(blocks[0])  # hole of 4 units at 0
    a.free(blocks[2])  # hole of 2 units
    a.free(blocks[4])  # hole of 8 units
    assert a.alloc(64 * 2) == blocks[2]
    assert a.alloc(64 * 3) == blocks[0]
    assert a.alloc(64 * 5) == blocks[4]
    a._check()


def test_double_free_and_unknown_offset_raise_keyerror():
    a = Allocator(1 << 16)
    off = a.alloc(100)
    other = a.alloc(100)
    assert a.free(off) == 128
    with pytest.raises(KeyError):
        a.free(off)
    with pytest.raises(KeyError):
        a.free(off + 64)  # inside a free block
    with pytest.raises(KeyError):
        a.free(other + 64)  # inside a live block, not its start
    with pytest.raises(KeyError):
        a.free(-1)  # the alloc() failure sentinel
    with pytest.raises(KeyError):
        a.size_of(off)
    # State was not corrupted by the failed frees.
    a._check()
    assert a.num_allocations == 1
    assert a.size_of(other) == 128
    assert a.free(other) == 128
    assert a.largest_free() == 1 << 16


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(capacity=0), ValueError),
        (dict(capacity=-5), ValueError),
        (dict(capacity=1 << 70), OverflowError),
        (dict(capacity=1.5), TypeError),
        (dict(capacity="1024"), TypeError),
        (dict(capacity=None), TypeError),
        (dict(capacity=1024, alignment=0), ValueError),
        (dict(capacity=1024, alignment=-64), ValueError),
        (dict(capacity=1024, alignment=48), ValueError),
        (dict(capacity=1024, alignment=64.0), TypeError),
        (dict(capacity=1024, alignment=1 << 80), OverflowError),
    ],
)
def test_constructor_bad_input(kwargs, exc):
    with pytest.raises(exc):
        Allocator(**kwargs)


def test_constructor_arity():
    with pytest.raises(TypeError):
        Allocator()
    with pytest.raises(TypeError):
        Allocator(1024, 64, 3)


@pytest.mark.parametrize(
    "arg, exc",
    [
        (0, ValueError),
        (-1, ValueError),
        (-(1 << 62), ValueError),
        (1 << 64, OverflowError),
        (-(1 << 64), OverflowError),
        (1.0, TypeError),
        ("8", TypeError),
        (None, TypeError),
        (b"x", TypeError),
    ],
)
def test_alloc_bad_input(arg, exc):
    a = Allocator(1 << 16)
    with pytest.raises(exc):
        a.alloc(arg)
    a._check()
    assert a.used == 0


def test_alloc_huge_but_valid_size_returns_minus_one():
    a = Allocator(1 << 16, alignment=64)
    assert a.alloc((1 << 63) - 1) == -1  # rounding must not overflow
    a = Allocator(1 << 16, alignment=1 << 62)
    assert a.alloc(1) == -1
    a._check()


@pytest.mark.parametrize(
    "arg, exc",
    [
        (1 << 64, OverflowError),
        (1.0, TypeError),
        ("0", TypeError),
        (None, TypeError),
    ],
)
def test_free_and_size_of_bad_input(arg, exc):
    a = Allocator(1 << 16)
    a.alloc(64)
    with pytest.raises(exc):
        a.free(arg)
    with pytest.raises(exc):
        a.size_of(arg)
    a._check()
    assert a.num_allocations == 1


def test_index_protocol_accepted():
    class Idx:
        def __init__(self, v):
            self.v = v

        def __index__(self):
            return self.v

    a = Allocator(Idx(4096), alignment=Idx(64))
    off = a.alloc(Idx(100))
    assert a.size_of(Idx(off)) == 128
    assert a.free(Idx(off)) == 128


def test_many_allocations_grow_internal_tables():
    # Enough live blocks to force several pool and hash-table growths.
    n = 50_000
    a = Allocator(n * 64, alignment=64)
    offs = [a.alloc(64) for _ in range(n)]
    assert len(set(offs)) == n and min(offs) >= 0
    assert a.alloc(64) == -1
    a._check()
    for o in offs[::2]:
        a.free(o)
    a._check()
    assert a.num_free_blocks == n // 2
    for o in offs[1::2]:
        a.free(o)
    assert a.num_free_blocks == 1
    assert a.alloc(n * 64) == 0


# --------------------------------------------------------------------------
# Allocator: randomized stress against a Python model
# --------------------------------------------------------------------------


class Model:
    """Trivially-correct model: sorted list of live [start, end) ranges."""

    def __init__(self, usable):
        self.usable = usable
        self.starts = []
        self.ends = {}

    def add(self, off, size):
        i = bisect.bisect_left(self.starts, off)
        assert 0 <= off and off + size <= self.usable, "block outside region"
        if i > 0:
            prev = self.starts[i - 1]
            assert self.ends[prev] <= off, "overlaps previous live block"
        if i < len(self.starts):
            assert off + size <= self.starts[i], "overlaps next live block"
        self.starts.insert(i, off)
        self.ends[off] = off + size

    def remove(self, off):
        i = bisect.bisect_left(self.starts, off)
        assert self.starts[i] == off
        del self.starts[i]
        return self.ends.pop(off) - off

    def used(self):
        return sum(e - s for s, e in self.ends.items())

    def largest_gap(self):
        best, pos = 0, 0
        for s in self.starts:
            best = max(best, s - pos)
            pos = self.ends[s]
        return max(best, self.usable - pos)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alignment", [1, 64, 4096])
def test_randomized_stress_against_model(seed, alignment):
    rng = random.Random(seed * 1000 + alignment)
    cap = 256 * alignment * 64 + alignment // 2  # not a multiple of alignment
    a = Allocator(cap, alignment=alignment)
    usable = cap - cap % alignment
    model = Model(usable)
    live = []
    for step in range(4000):
        if live and (rng.random() < 0.45 or a.used > usable * 0.9):
            off = live.pop(rng.randrange(len(live)))
            size = model.remove(off)
            assert a.size_of(off) == size
            assert a.free(off) == size
            if rng.random() < 0.05:
                with pytest.raises(KeyError):
                    a.free(off)
        else:
            # Mix of tiny, medium and occasionally huge requests.
            r = rng.random()
            if r < 0.6:
                req = rng.randint(1, 4 * alignment)
            elif r < 0.95:
                req = rng.randint(1, 64 * alignment)
            else:
                req = rng.randint(1, usable)
            off = a.alloc(req)
            rounded = -(-req // alignment) * alignment
            if off == -1:
                # -1 must mean that really no gap is large enough.
                assert model.largest_gap() < rounded
            else:
                assert off % alignment == 0
                assert a.size_of(off) == rounded
                model.add(off, rounded)
                live.append(off)
        assert a.used == model.used()
        assert a.num_allocations == len(live)
        a._check()  # O(n) walk of every internal invariant
        if step % 50 == 0:
            assert a.largest_free() == model.largest_gap()
    a._check()
    for off in live:
        a.free(off)
    assert a.used == 0 and a.num_allocations == 0
    assert a.largest_free() == usable
    assert a.alloc(usable) == 0


def test_dealloc_releases_memory():
    # Smoke test: creating and dropping many allocators must not leak or crash.
    for _ in range(200):
        a = Allocator(1 << 30)
        for _ in range(100):
            a.alloc(1000)
        del a


# --------------------------------------------------------------------------
# parallel_copy
# --------------------------------------------------------------------------


def test_parallel_copy_small():
    src = bytes(range(256)) * 10
    dst = bytearray(len(src) + 7)
    assert parallel_copy(dst, src) == len(src)
    assert bytes(dst[: len(src)]) == src
    assert bytes(dst[len(src):]) == b"\0" * 7


def test_parallel_copy_empty():
    assert parallel_copy(bytearray(0), b"") == 0
    assert parallel_copy(bytearray(4), b"") == 0


@pytest.mark.parametrize("threads", [0, 1, 3, 4, 100])
def test_parallel_copy_large(threads):
    n = 64 * MiB + 12345  # odd size: last chunk is not page-aligned
    src = os.urandom(n)
    dst = bytearray(n)
    assert parallel_copy(dst, src, threads=threads) == n
    assert dst == src


def test_parallel_copy_into_memoryview_slice_and_numpy():
    np = pytest.importorskip("numpy")
    src = np.arange(3 * MiB, dtype=np.int64)  # 24 MiB
    dst = np.zeros(4 * MiB, dtype=np.int64)
    assert parallel_copy(memoryview(dst)[MiB:], src) == src.nbytes
    assert (dst[MiB:] == src).all()
    assert (dst[:MiB] == 0).all()


def test_parallel_copy_overlapping_buffers():
    buf = bytearray(os.urandom(20 * MiB))
    expected = bytes(buf[: 12 * MiB])
    mv = memoryview(buf)
    assert parallel_copy(mv[4 * MiB:], mv[: 12 * MiB]) == 12 * MiB
    assert bytes(buf[4 * MiB: 16 * MiB]) == expected


def test_parallel_copy_length_mismatch():
    with pytest.raises(ValueError):
        parallel_copy(bytearray(10), b"x" * 11)
    with pytest.raises(ValueError):
        parallel_copy(bytearray(9 * MiB), bytes(10 * MiB))


def test_parallel_copy_bad_arguments():
    with pytest.raises(TypeError):
        parallel_copy(b"readonly", b"x")  # dst not writable
    with pytest.raises(TypeError):
        parallel_copy(bytearray(4), "str is not a buffer")
    with pytest.raises(ValueError):
        parallel_copy(bytearray(4), b"x", threads=-1)
    with pytest.raises(TypeError):
        parallel_copy(bytearray(4), b"x", threads=1.5)
    with pytest.raises(TypeError):
        parallel_copy(memoryview(bytearray(8)).toreadonly(), b"x")
    with pytest.raises(ValueError):
        parallel_copy(bytearray(8), memoryview(b"abcdefgh")[::2])  # not contiguous
    with pytest.raises(ValueError):
        parallel_copy(memoryview(bytearray(8))[::2], b"x")
