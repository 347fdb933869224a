"""Generators as Ray runs them (issue 13, item 3): a static num_returns with a different count,
num_returns="dynamic", a consumer task that waits on a stream with one CPU, and an async
generator method that fails before its first item."""
import time

import pytest

import zray
from zray import exceptions


@pytest.fixture(scope="module")
def one_cpu():
    if zray.is_initialized():
        zray.shutdown()
    zray.init(num_cpus=1)
    yield zray
    zray.shutdown()


def values_or_errors(refs):
    out = []
    for ref in refs:
        try:
            out.append(zray.get(ref, timeout=60))
        except exceptions.RayTaskError as exc:
            out.append(type(exc.cause).__name__ if exc.cause is not None else "error")
    return out


@zray.remote(num_returns=3)
def yields_two():
    yield 1
    yield 2


@zray.remote(num_returns=2)
def yields_three():
    yield 1
    yield 2
    yield 3


@zray.remote(num_returns=3)
def fails_after_one():
    yield "kept"
    raise KeyError("the second")


def test_a_static_generator_that_yields_fewer_fails_only_the_missing(one_cpu):
    assert values_or_errors(yields_two.remote()) == [1, 2, "ValueError"]


def test_a_static_generator_that_yields_more_keeps_the_first_n(one_cpu):
    assert values_or_errors(yields_three.remote()) == [1, 2]


def test_values_yielded_before_an_exception_stay_readable(one_cpu):
    assert values_or_errors(fails_after_one.remote()) == ["kept", "KeyError", "KeyError"]


@zray.remote(num_returns="dynamic")
def dynamic(n):
    for i in range(n):
        yield i * 10


def test_dynamic_generators_give_one_ref_whose_value_holds_the_refs(one_cpu):
    ref = dynamic.remote(4)
    assert isinstance(ref, zray.ObjectRef)
    gen = zray.get(ref, timeout=60)
    assert isinstance(gen, zray.DynamicObjectRefGenerator) and len(gen) == 4
    assert [zray.get(r) for r in gen] == [0, 10, 20, 30]
    assert zray.get(dynamic.remote(0)).__len__() == 0

    @zray.remote
    def total(generator):
        return sum(zray.get(list(generator)))
    assert zray.get(total.remote(zray.get(dynamic.remote(3)))) == 30

    @zray.remote
    class Maker:
        @zray.method(num_returns="dynamic")
        def make(self, n):
            yield from range(n)
    gen = zray.get(Maker.remote().make.remote(3), timeout=60)
    assert [zray.get(r) for r in gen] == [0, 1, 2]


@zray.remote
def stream(n):
    for i in range(n):
        time.sleep(0.05)
        yield i


@zray.remote
def consume(n):
    return [zray.get(ref) for ref in stream.remote(n)]


def test_a_task_reading_a_stream_lends_its_cpu(one_cpu):
    # One CPU: the consumer holds it unless waiting on the stream lends it to the producer.
    assert zray.get(consume.remote(4), timeout=60) == [0, 1, 2, 3]


def test_an_async_generator_that_fails_before_its_first_item(one_cpu):
    @zray.remote
    class Source:
        async def items(self, fail):
            if fail:
                raise ValueError("no items at all")
            yield 1

    source = Source.remote()
    with pytest.raises(ValueError, match="no items at all"):
        for ref in source.items.remote(True):
            zray.get(ref, timeout=60)
    assert [zray.get(r) for r in source.items.remote(False)] == [1]
