"""What a user sees when a task or a call goes wrong, and that the cluster works afterwards."""
import os
import signal
import sys
import threading
import time

import pytest

import zray
from zray import exceptions


class MyError(Exception):
    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


class MyValueError(ValueError):
    pass


@zray.remote
def _ping():
    return "pong"


def _cluster_works():
    assert zray.get(_ping.remote(), timeout=30) == "pong"


def _bump(path):
    """Count attempts in a file: returns the attempt number, 1 first."""
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        return len(f.read())


# -- exceptions raised by the task ----------------------------------------------------------------
def test_task_exception_is_both_task_error_and_cause(shared_cluster):
    @zray.remote
    def raiser():
        x = 1
        raise ValueError(f"bad value {x}")

    ref = raiser.remote()
    with pytest.raises(ValueError) as info:
        zray.get(ref)
    err = info.value
    assert isinstance(err, exceptions.RayTaskError)
    assert isinstance(err, ValueError)
    text = str(err)
    assert "raiser" in text
    assert 'raise ValueError(f"bad value {x}")' in text
    assert "bad value 1" in text
    assert "Traceback" in text
    # The same error, caught as RayTaskError.
    with pytest.raises(exceptions.RayTaskError):
        zray.get(ref)
    _cluster_works()


def test_custom_exception_classes(shared_cluster):
    @zray.remote
    def custom():
        raise MyError("custom failure", code=42)

    @zray.remote
    def sub_value():
        raise MyValueError("sub")

    with pytest.raises(MyError) as info:
        zray.get(custom.remote())
    assert isinstance(info.value, exceptions.RayTaskError)
    assert info.value.code == 42
    assert "custom failure" in str(info.value)
    assert isinstance(info.value.cause, MyError)

    with pytest.raises(ValueError) as info:
        zray.get(sub_value.remote())
    assert isinstance(info.value, MyValueError)
    _cluster_works()


def test_exception_class_defined_inside_test(shared_cluster):
    class LocalError(RuntimeError):
        pass

    @zray.remote
    def local():
        raise LocalError("local class")

    with pytest.raises(RuntimeError, match="local class") as info:
        zray.get(local.remote())
    assert isinstance(info.value, exceptions.RayTaskError)
    _cluster_works()


class TwoArgError(Exception):
    def __init__(self, a, b):           # pickles, but cannot be rebuilt from its args
        super().__init__(f"{a}-{b}")


def test_exception_that_cannot_be_rebuilt(shared_cluster):
    @zray.remote
    def two_args():
        raise TwoArgError("left", "right")

    with pytest.raises(exceptions.RayTaskError) as info:
        zray.get(two_args.remote())
    assert "TwoArgError" in str(info.value) and "left-right" in str(info.value)
    _cluster_works()


def test_os_error_fields_survive(shared_cluster):
    @zray.remote
    def missing_file():
        open("/nonexistent/zray/file")

    with pytest.raises(FileNotFoundError) as info:
        zray.get(missing_file.remote())
    assert info.value.errno == 2
    assert info.value.filename == "/nonexistent/zray/file"


def test_unpicklable_exception_still_reported(shared_cluster):
    @zray.remote
    def bad_exception():
        class Unpicklable(Exception):
            def __init__(self):
                super().__init__("cannot travel")
                self.lock = threading.Lock()
        raise Unpicklable()

    with pytest.raises(exceptions.RayTaskError, match="cannot travel"):
        zray.get(bad_exception.remote())
    _cluster_works()


def test_failed_dependency_fails_downstream(shared_cluster):
    @zray.remote
    def raiser():
        raise KeyError("upstream")

    @zray.remote
    def downstream(x):
        return x

    with pytest.raises(KeyError) as info:
        zray.get(downstream.remote(raiser.remote()))
    assert "upstream" in str(info.value)
    _cluster_works()


def test_nested_task_error_keeps_cause(shared_cluster):
    @zray.remote
    def inner():
        raise ZeroDivisionError("inner boom")

    @zray.remote
    def outer():
        return zray.get(inner.remote())

    with pytest.raises(ZeroDivisionError) as info:
        zray.get(outer.remote())
    assert isinstance(info.value, exceptions.RayTaskError)
    assert "inner boom" in str(info.value)
    _cluster_works()


# -- retries ------------------------------------------------------------------------------------
def test_retry_exceptions_true(shared_cluster, tmp_path):
    counter = str(tmp_path / "count")

    @zray.remote(max_retries=3, retry_exceptions=True)
    def flaky():
        if _bump(counter) < 3:
            raise RuntimeError("not yet")
        return "ok"

    assert zray.get(flaky.remote()) == "ok"
    assert len(open(counter).read()) == 3


def test_retry_exceptions_gives_up_after_max_retries(shared_cluster, tmp_path):
    counter = str(tmp_path / "count")

    @zray.remote(max_retries=2, retry_exceptions=True)
    def always():
        _bump(counter)
        raise RuntimeError("always")

    with pytest.raises(RuntimeError, match="always"):
        zray.get(always.remote())
    assert len(open(counter).read()) == 3     # the first try and two retries


def test_exceptions_not_retried_by_default(shared_cluster, tmp_path):
    counter = str(tmp_path / "count")

    @zray.remote(max_retries=3)
    def once():
        _bump(counter)
        raise RuntimeError("no retry")

    with pytest.raises(RuntimeError):
        zray.get(once.remote())
    assert len(open(counter).read()) == 1


def test_retry_exceptions_list(shared_cluster, tmp_path):
    value_counter = str(tmp_path / "value")
    key_counter = str(tmp_path / "key")

    @zray.remote(max_retries=3, retry_exceptions=[ValueError])
    def value_then_ok():
        if _bump(value_counter) < 2:
            raise MyValueError("retried: a subclass of ValueError")
        return "ok"

    @zray.remote(max_retries=3, retry_exceptions=[ValueError])
    def key():
        _bump(key_counter)
        raise KeyError("not in the list")

    assert zray.get(value_then_ok.remote()) == "ok"
    assert len(open(value_counter).read()) == 2
    with pytest.raises(KeyError):
        zray.get(key.remote())
    assert len(open(key_counter).read()) == 1
    # The same through .options().
    os.remove(key_counter)
    with pytest.raises(KeyError):
        zray.get(key.options(retry_exceptions=[KeyError], max_retries=1).remote())
    assert len(open(key_counter).read()) == 2


def test_dead_worker_is_retried(ray_start, tmp_path):
    counter = str(tmp_path / "count")

    @zray.remote(max_retries=3)
    def die_twice():
        if _bump(counter) <= 2:
            os._exit(1)
        return os.getpid()

    pid = zray.get(die_twice.remote(), timeout=60)
    assert pid != os.getpid()
    assert len(open(counter).read()) == 3
    _cluster_works()


def test_sigkilled_worker_is_retried_by_default(ray_start, tmp_path):
    counter = str(tmp_path / "count")

    @zray.remote
    def killed_once():
        if _bump(counter) == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return "second try"

    assert zray.get(killed_once.remote(), timeout=60) == "second try"
    assert len(open(counter).read()) == 2
    _cluster_works()


def test_dead_worker_without_retries_shows_log_tail(ray_start, tmp_path):
    counter = str(tmp_path / "count")

    @zray.remote(max_retries=0)
    def crash():
        _bump(counter)
        print("last words before dying", file=sys.stderr, flush=True)
        os._exit(3)

    with pytest.raises(exceptions.WorkerCrashedError) as info:
        zray.get(crash.remote(), timeout=60)
    assert "last words before dying" in str(info.value)
    assert "crash" in str(info.value)
    assert len(open(counter).read()) == 1
    _cluster_works()


def test_dead_worker_retries_exhausted(ray_start, tmp_path):
    counter = str(tmp_path / "count")

    @zray.remote(max_retries=1)
    def always_dies():
        _bump(counter)
        os._exit(1)

    with pytest.raises(exceptions.WorkerCrashedError):
        zray.get(always_dies.remote(), timeout=60)
    assert len(open(counter).read()) == 2
    _cluster_works()


# -- serialization ------------------------------------------------------------------------------
def test_unpicklable_argument_raises_at_call_site(shared_cluster):
    @zray.remote
    def f(x, kw=None):
        return 1

    with pytest.raises(TypeError) as info:
        f.remote({"ok": 1, "culprit": threading.Lock()})
    text = str(info.value)
    assert "culprit" in text and "lock" in text.lower()
    with pytest.raises(TypeError, match="lock"):
        f.remote(1, kw=threading.Lock())
    _cluster_works()


def test_unpicklable_closure_raises_at_call_site(shared_cluster):
    lock = threading.Lock()

    @zray.remote
    def uses_lock():
        with lock:
            return 1

    with pytest.raises(TypeError, match="uses_lock"):
        uses_lock.remote()
    _cluster_works()


def test_unpicklable_return_value(shared_cluster):
    @zray.remote
    def returns_lock():
        return {"fine": 1, "bad_lock": threading.Lock()}

    with pytest.raises(TypeError) as info:
        zray.get(returns_lock.remote())
    assert isinstance(info.value, exceptions.RayTaskError)
    assert "bad_lock" in str(info.value)
    assert "returns_lock" in str(info.value)
    _cluster_works()


def test_wrong_number_of_returns(shared_cluster):
    @zray.remote(num_returns=2)
    def three_things():
        return 1, 2, 3

    a, b = three_things.remote()
    with pytest.raises(ValueError, match="num_returns=2"):
        zray.get(a)
    with pytest.raises(ValueError):
        zray.get(b)
    _cluster_works()


# -- invalid use of the API ---------------------------------------------------------------------
def test_unknown_option_names(shared_cluster):
    with pytest.raises(TypeError) as info:
        @zray.remote(num_cpu=1)
        def f():
            pass
    text = str(info.value)
    assert "num_cpu" in text and "num_cpus" in text and "max_retries" in text

    @zray.remote
    def g():
        return 1

    with pytest.raises(TypeError) as info:
        g.options(retries=3)
    assert "retries" in str(info.value) and "max_retries" in str(info.value)
    assert zray.get(g.remote()) == 1


def test_calling_remote_function_directly(shared_cluster):
    @zray.remote
    def direct():
        return 1

    with pytest.raises(TypeError, match=r"\.remote\(\)"):
        direct()
    assert zray.get(direct.remote()) == 1


@pytest.mark.parametrize("options, error", [
    ({"num_cpus": -1}, ValueError),
    ({"num_gpus": -0.5}, ValueError),
    ({"num_returns": -1}, ValueError),
    ({"max_retries": -2}, ValueError),
    ({"num_cpus": "two"}, TypeError),
    ({"num_returns": "many"}, TypeError),
    ({"retry_exceptions": [1]}, TypeError),
    ({"retry_exceptions": "yes"}, TypeError),
    ({"resources": {"CPU": 1}}, ValueError),
    ({"resources": {"foo": -1}}, ValueError),
    ({"resources": ["foo"]}, TypeError),
    ({"num_cpus": 1.5}, ValueError),
])
def test_invalid_option_values(shared_cluster, options, error):
    with pytest.raises(error):
        zray.remote(**options)(lambda: 1)

    @zray.remote
    def h():
        return 2

    with pytest.raises(error):
        h.options(**options)
    assert zray.get(h.remote()) == 2


def test_remote_decorator_misuse(shared_cluster):
    with pytest.raises(TypeError):
        zray.remote(1, 2)
    with pytest.raises(TypeError):
        zray.remote(42)


@pytest.mark.parametrize("timeout, error", [(-1, ValueError), ("1", TypeError)])
def test_invalid_get_timeout(shared_cluster, timeout, error):
    ref = zray.put(1)
    with pytest.raises(error):
        zray.get(ref, timeout=timeout)
    assert zray.get(ref, timeout=5) == 1


def test_get_of_non_ref(shared_cluster):
    with pytest.raises(ValueError):     # as Ray (issue 10)
        zray.get(1)
    with pytest.raises(ValueError):
        zray.get([zray.put(1), 2])


def test_get_timeout(shared_cluster):
    @zray.remote
    def slow():
        time.sleep(1.0)
        return "done"

    ref = slow.remote()
    start = time.monotonic()
    with pytest.raises(exceptions.GetTimeoutError) as info:
        zray.get(ref, timeout=0.1)
    assert time.monotonic() - start < 0.9
    assert isinstance(info.value, TimeoutError)
    # timeout=0 polls.
    with pytest.raises(TimeoutError):
        zray.get([ref], timeout=0)
    assert zray.get(ref, timeout=30) == "done"


def test_worker_survives_task_exceptions(shared_cluster):
    @zray.remote
    def maybe(i):
        if i % 2:
            raise ValueError(i)
        return os.getpid()

    refs = [maybe.remote(i) for i in range(6)]
    for i, ref in enumerate(refs):
        if i % 2:
            with pytest.raises(ValueError):
                zray.get(ref)
        else:
            assert zray.get(ref) > 0


def test_system_exit_in_task(shared_cluster):
    @zray.remote(max_retries=0)
    def exits():
        sys.exit(5)

    with pytest.raises(exceptions.RayTaskError):
        zray.get(exits.remote(), timeout=30)
    _cluster_works()
