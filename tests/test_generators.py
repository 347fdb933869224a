"""Generator tasks: streaming ObjectRefGenerators and generators with a fixed num_returns."""
import time

import pytest

import zray
from zray import ObjectRef, ObjectRefGenerator


def test_generator_function_streams_by_default(shared_cluster):
    @zray.remote
    def count(n):
        for i in range(n):
            yield i * 10

    gen = count.remote(5)
    assert isinstance(gen, ObjectRefGenerator)
    refs = list(gen)
    assert all(isinstance(r, ObjectRef) for r in refs)
    assert zray.get(refs) == [0, 10, 20, 30, 40]


def test_streaming_explicit_and_items_arrive_before_the_end(shared_cluster):
    @zray.remote(num_returns="streaming")
    def slow_count(n):
        for i in range(n):
            yield i
            time.sleep(0.3)

    start = time.monotonic()
    gen = slow_count.remote(4)
    first = next(gen)
    assert zray.get(first) == 0
    assert time.monotonic() - start < 1.0       # did not wait for the whole generator
    assert [zray.get(r) for r in gen] == [1, 2, 3]
    with pytest.raises(StopIteration):
        next(gen)


def test_streaming_via_options(shared_cluster):
    @zray.remote
    def letters():
        yield from "abc"

    gen = letters.options(num_returns="streaming").remote()
    assert isinstance(gen, ObjectRefGenerator)
    assert [zray.get(r) for r in gen] == ["a", "b", "c"]


def test_empty_generator(shared_cluster):
    @zray.remote
    def nothing():
        return
        yield

    assert list(nothing.remote()) == []


def test_exception_in_the_middle(shared_cluster):
    @zray.remote
    def breaks():
        yield 1
        yield 2
        raise ValueError("generator broke")

    gen = breaks.remote()
    r1, r2, r3 = next(gen), next(gen), next(gen)
    assert zray.get([r1, r2]) == [1, 2]
    with pytest.raises(ValueError, match="generator broke") as info:
        zray.get(r3)
    assert isinstance(info.value, zray.exceptions.RayTaskError)
    with pytest.raises(StopIteration):
        next(gen)


def test_generator_with_fixed_num_returns(shared_cluster):
    @zray.remote(num_returns=3)
    def three():
        for i in range(3):
            yield i + 1

    refs = three.remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert zray.get(refs) == [1, 2, 3]


def test_generator_with_fixed_num_returns_wrong_count(shared_cluster):
    @zray.remote(num_returns=2)
    def three():
        yield from range(3)

    a, b = three.remote()
    # As Ray 2.60 does: the first num_returns items; a surplus fails nothing (a shortfall
    # fails the missing returns: test_ray_compat_generators.py).
    assert zray.get([a, b]) == [0, 1]


def test_generator_yielding_large_values_and_refs(shared_cluster):
    import numpy as np

    @zray.remote
    def square(x):
        return x * x

    @zray.remote
    def mixed():
        yield np.full(200_000, 7, dtype=np.int64)      # in the store
        yield square.remote(9)                          # a ref inside the stream

    gen = mixed.remote()
    big = zray.get(next(gen))
    assert big.shape == (200_000,) and int(big[0]) == 7
    inner = zray.get(next(gen))
    assert isinstance(inner, ObjectRef)
    assert zray.get(inner) == 81


def test_many_generators_interleaved(shared_cluster):
    @zray.remote
    def gen(tag, n):
        for i in range(n):
            yield f"{tag}{i}"

    a, b = gen.remote("a", 20), gen.remote("b", 20)
    out_a, out_b = [], []
    for ra, rb in zip(a, b):
        out_a.append(zray.get(ra))
        out_b.append(zray.get(rb))
    assert out_a == [f"a{i}" for i in range(20)]
    assert out_b == [f"b{i}" for i in range(20)]


def test_generator_ref_passed_to_task(shared_cluster):
    @zray.remote
    def numbers():
        yield from range(3)

    @zray.remote
    def plus_one(x):
        return x + 1

    refs = [plus_one.remote(r) for r in numbers.remote()]
    assert zray.get(refs) == [1, 2, 3]


def test_get_of_generator_is_an_error(shared_cluster):
    @zray.remote
    def g():
        yield 1

    gen = g.remote()
    with pytest.raises(TypeError):
        zray.get(gen)
    assert [zray.get(r) for r in gen] == [1]


def test_non_generator_with_streaming_is_an_error(shared_cluster):
    @zray.remote(num_returns="streaming")
    def plain():
        return 5

    gen = plain.remote()
    with pytest.raises(TypeError, match="generator"):
        for ref in gen:
            zray.get(ref)


def test_async_iteration(shared_cluster):
    import asyncio

    @zray.remote
    def g():
        yield from range(3)

    async def consume():
        return [await ref async for ref in g.remote()]

    assert asyncio.run(consume()) == [0, 1, 2]


def test_dropping_a_generator_early(shared_cluster):
    @zray.remote
    def long():
        for i in range(50):
            yield i

    gen = long.remote()
    assert zray.get(next(gen)) == 0
    del gen
    assert zray.get([r for r in long.remote()][-1]) == 49


def test_generator_retried_after_worker_death(ray_start, tmp_path):
    import os
    counter = str(tmp_path / "attempts")

    @zray.remote(max_retries=2)
    def dies_midway():
        with open(counter, "a") as f:
            f.write("x")
        attempt = len(open(counter).read())
        for i in range(4):
            yield i
            time.sleep(0.05)
            if i == 1 and attempt == 1:
                os._exit(1)

    gen = dies_midway.remote()
    values = [zray.get(r, timeout=30) for r in gen]
    assert values == [0, 1, 2, 3]
    assert len(open(counter).read()) == 2


def test_generator_worker_death_without_retries(ray_start):
    import os

    @zray.remote(max_retries=0)
    def dies():
        yield 1
        time.sleep(0.1)
        os._exit(1)

    gen = dies.remote()
    assert zray.get(next(gen), timeout=30) == 1
    with pytest.raises(zray.exceptions.WorkerCrashedError):
        for ref in gen:
            zray.get(ref, timeout=30)


def test_generator_retried_on_exception(shared_cluster, tmp_path):
    counter = str(tmp_path / "attempts")

    @zray.remote(retry_exceptions=True, max_retries=2)
    def flaky_stream():
        with open(counter, "a") as f:
            f.write("x")
        attempt = len(open(counter).read())
        for i in range(4):
            if i == 2 and attempt == 1:
                raise RuntimeError("first attempt fails midway")
            yield i

    assert [zray.get(r, timeout=30) for r in flaky_stream.remote()] == [0, 1, 2, 3]
    assert len(open(counter).read()) == 2


def test_generator_exception_after_retries_exhausted(shared_cluster, tmp_path):
    counter = str(tmp_path / "attempts")

    @zray.remote(retry_exceptions=[RuntimeError], max_retries=1)
    def always_fails():
        with open(counter, "a") as f:
            f.write("x")
        yield "first"
        raise RuntimeError("every attempt fails")

    gen = always_fails.remote()
    assert zray.get(next(gen), timeout=30) == "first"
    with pytest.raises(RuntimeError, match="every attempt fails"):
        zray.get(next(gen), timeout=30)
    with pytest.raises(StopIteration):
        next(gen)
    assert len(open(counter).read()) == 2
