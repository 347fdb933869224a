"""zray.util.joblib: joblib's Parallel on zray through register_ray()."""
import os

import pytest

joblib = pytest.importorskip("joblib")

import zray  # noqa: E402
from zray.util.joblib import register_ray  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    zray.init(num_cpus=2)
    register_ray()
    yield
    zray.shutdown()


def _where(x):
    return x * x, os.getpid()


def _fails(x):
    if x == 3:
        raise ZeroDivisionError("x is 3")
    return x


def test_parallel_runs_on_zray_processes(cluster):
    with joblib.parallel_backend("ray"):
        out = joblib.Parallel(n_jobs=2)(joblib.delayed(_where)(i) for i in range(20))
    assert [v for v, _ in out] == [i * i for i in range(20)]
    pids = {pid for _, pid in out}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_all_cpus_and_parallel_config(cluster):
    with joblib.parallel_config(backend="zray", n_jobs=-1):
        parallel = joblib.Parallel()
        out = parallel(joblib.delayed(_where)(i) for i in range(6))
    assert [v for v, _ in out] == [i * i for i in range(6)]
    assert parallel._effective_n_jobs() == 2


def test_a_failing_call_raises_its_exception_and_the_backend_goes_on(cluster):
    with joblib.parallel_backend("ray"):
        with pytest.raises(ZeroDivisionError, match="x is 3"):
            joblib.Parallel(n_jobs=2)(joblib.delayed(_fails)(i) for i in range(6))
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(_fails)(i) for i in range(3)) == [0, 1, 2]


def test_more_jobs_than_cpus_raises(cluster):
    with joblib.parallel_backend("ray"):
        with pytest.raises(ValueError, match="only 2 CPUs"):
            joblib.Parallel(n_jobs=5)(joblib.delayed(_fails)(i) for i in range(3))
