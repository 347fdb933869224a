"""The amplab Ray 0.x API (zray/legacy): start_ray_local, typed @remote, direct calls."""
import os
import subprocess
import sys

import numpy as np
import pytest

import zray
from zray.exceptions import RayTaskError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The seed's Monte Carlo pi example, only its print made Python 3 (and `ray` the alias).
SEED_PI = '''
import ray
import numpy as np

# Start a scheduler, an object store, and some workers.
ray.services.start_ray_local(num_workers=10)

# Define a remote function for estimating pi.
@ray.remote([int], [float])
def estimate_pi(n):
  x = np.random.uniform(size=n)
  y = np.random.uniform(size=n)
  return 4 * np.mean(x ** 2 + y ** 2 < 1)

# Launch 10 tasks, each of which estimates pi.
results = []
for _ in range(10):
  results.append(estimate_pi(100))

# Fetch the results of the tasks and print their average.
estimate = np.mean([ray.get(ref) for ref in results])
print("Pi is approximately {}.".format(estimate))
'''


def test_the_seeds_pi_example_runs(tmp_path):
    app = tmp_path / "pi.py"
    app.write_text(SEED_PI)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "zray.as_ray", str(app)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("Pi is approximately ")
    assert 2.5 < float(line.split()[-1].rstrip(".")) < 3.8


@pytest.fixture(scope="module")
def cluster():
    zray.services.start_ray_local(num_workers=2)
    yield
    zray.shutdown()


@zray.remote([int, str], [str])
def repeat(n, text):
    return text * n


@zray.remote([int], [int, float])
def split(n):
    return n, n / 2


@zray.remote([int], [int])
def lies(n):
    return "not an int"


@zray.remote([float], [float])
def half(x):
    return x / 2


def test_start_ray_local_starts_a_cluster_with_its_workers(cluster):
    assert zray.is_initialized()
    assert zray.cluster_resources()["CPU"] == 2


def test_direct_call_returns_a_ref(cluster):
    ref = repeat(3, "ab")
    assert isinstance(ref, zray.ObjectRef)
    assert zray.get(ref) == "ababab"
    assert zray.get(repeat.remote(2, "x")) == "xx"


def test_several_return_types_give_several_refs(cluster):
    refs = split(5)
    assert isinstance(refs, list) and len(refs) == 2
    assert zray.get(refs) == [5, 2.5]


def test_refs_as_arguments_are_checked_when_the_task_runs(cluster):
    assert zray.get(half(split(5)[0])) == 2.5    # an int's ref where a float is declared
    with pytest.raises(TypeError, match="argument 0 must be of type float"):
        zray.get(half(repeat(1, "x")))


def test_numpy_scalars_pass_as_numbers(cluster):
    assert zray.get(half(np.float32(3.0))) == 1.5
    assert zray.get(repeat(np.int64(2), "y")) == "yy"


def test_wrong_argument_types_raise_at_the_call(cluster):
    with pytest.raises(TypeError, match="argument 0 must be of type int"):
        repeat("3", "ab")
    with pytest.raises(TypeError, match="argument 0 must be of type int"):
        repeat(True, "ab")
    with pytest.raises(TypeError, match="takes 2 arguments, got 1"):
        repeat(3)
    with pytest.raises(TypeError, match="positional arguments only"):
        repeat(3, text="a")
    assert zray.get(repeat(1, "still works")) == "still works"


def test_wrong_return_type_raises_at_get(cluster):
    with pytest.raises(TypeError, match="return value 0 must be of type int") as info:
        zray.get(lies(1))
    assert isinstance(info.value, RayTaskError)


def test_bad_declarations_raise_at_decoration():
    with pytest.raises(TypeError, match="2 argument types declared for a function of 1"):
        zray.remote([int, int], [int])(lambda n: n)
    with pytest.raises(TypeError, match="is not a type"):
        zray.remote(["int"], [int])(lambda n: n)
    with pytest.raises(TypeError, match="at least one return type"):
        zray.remote([int], [])(lambda n: n)
    with pytest.raises(TypeError, match="positional arguments only"):
        zray.remote([int], [int])(lambda *n: n)


def test_start_ray_local_bad_num_workers():
    with pytest.raises(ValueError, match="num_workers"):
        zray.services.start_ray_local(num_workers=-1)
