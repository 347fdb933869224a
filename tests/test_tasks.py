"""Remote functions: declaring, options, arguments, returns, resources, context and output."""
import os
import time

import numpy as np
import pytest

import zray
from zray import ObjectRef


# -- @remote and .options() -----------------------------------------------------------------------
def test_bare_remote(shared_cluster):
    @zray.remote
    def add(a, b):
        return a + b

    ref = add.remote(1, 2)
    assert isinstance(ref, ObjectRef)
    assert zray.get(ref) == 3
    assert zray.get([add.remote(i, i) for i in range(10)]) == [2 * i for i in range(10)]


def test_remote_keeps_function_metadata(shared_cluster):
    @zray.remote
    def documented():
        """The doc."""
        return 1

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "The doc."


@pytest.mark.parametrize("options", [
    {"num_cpus": 1},
    {"num_cpus": 0.5},
    {"num_cpus": 0},
    {"num_gpus": 0},
    {"resources": {}},
    {"num_returns": 1},
    {"max_retries": 2},
    {"max_retries": -1},
    {"retry_exceptions": True},
    {"retry_exceptions": False},
    {"retry_exceptions": [ValueError, KeyError]},
    {"name": "custom_name", "memory": 0},
    {"num_cpus": 1, "max_retries": 0, "retry_exceptions": [ValueError], "num_returns": 1},
])
def test_remote_with_options(shared_cluster, options):
    @zray.remote(**options)
    def f(x):
        return x * 2

    assert zray.get(f.remote(21)) == 42
    # The same options given through .options() on a bare function.
    @zray.remote
    def g(x):
        return x * 3

    assert zray.get(g.options(**options).remote(2)) == 6


def test_options_override_and_do_not_mutate(shared_cluster):
    @zray.remote(num_returns=2)
    def pair():
        return 1, 2

    a, b = pair.remote()
    assert zray.get([a, b]) == [1, 2]

    @zray.remote
    def triple():
        return 1, 2, 3

    r1, r2, r3 = triple.options(num_returns=3).remote()
    assert zray.get([r3, r2, r1]) == [3, 2, 1]
    # .options() made a new caller; the function itself still has num_returns=1.
    assert zray.get(triple.remote()) == (1, 2, 3)


def test_options_name_is_task_name(shared_cluster):
    @zray.remote
    def f():
        return zray.get_runtime_context().get_task_name()

    assert zray.get(f.remote()).endswith("f")
    assert zray.get(f.options(name="renamed").remote()) == "renamed"


def test_positional_and_keyword_args(shared_cluster):
    @zray.remote
    def f(a, b, c=3, *rest, d, e=5, **extra):
        return (a, b, c, rest, d, e, extra)

    assert zray.get(f.remote(1, 2, d=4)) == (1, 2, 3, (), 4, 5, {})
    assert zray.get(f.remote(1, 2, 30, 40, 50, d=4, e=6, z=7)) == (1, 2, 30, (40, 50), 4, 6, {"z": 7})
    assert zray.get(f.remote(b=2, a=1, d=0)) == (1, 2, 3, (), 0, 5, {})


def test_missing_argument_is_a_task_error(shared_cluster):
    @zray.remote
    def f(a, b):
        return a + b

    with pytest.raises(TypeError, match="b"):
        zray.get(f.remote(1))
    assert zray.get(f.remote(1, 2)) == 3


def test_num_returns_2_and_3(shared_cluster):
    @zray.remote(num_returns=2)
    def two(x):
        return x, x + 1

    @zray.remote(num_returns=3)
    def three(x):
        return [x, x * 2, x * 3]

    refs = two.remote(5)
    assert isinstance(refs, list) and len(refs) == 2
    assert all(isinstance(r, ObjectRef) for r in refs)
    assert zray.get(refs) == [5, 6]
    a, b, c = three.remote(2)
    assert zray.get(c) == 6 and zray.get(a) == 2 and zray.get(b) == 4


def test_num_returns_0_still_runs(shared_cluster, tmp_path):
    marker = tmp_path / "ran"

    @zray.remote(num_returns=0)
    def side_effect(path):
        with open(path, "w") as f:
            f.write("yes")

    assert side_effect.remote(str(marker)) is None
    deadline = time.monotonic() + 10
    # Until the content is there, not the file: the worker creates it, then writes (a CI
    # rehearsal read it empty in between).
    while not (marker.exists() and marker.read_text() == "yes") and \
            time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.read_text() == "yes"


def test_large_args_and_returns(shared_cluster):
    @zray.remote
    def total(arr, scale=1):
        return float(arr.sum()) * scale, np.ones(300_000, dtype=np.uint8)

    arr = np.arange(200_000, dtype=np.int64)      # 1.6 MB: goes through the store
    s, big = zray.get(total.remote(arr, scale=2))
    assert s == float(arr.sum()) * 2
    assert big.shape == (300_000,) and int(big.sum()) == 300_000


# -- the README example: parallelism ----------------------------------------------------------------
@pytest.mark.parametrize("ray_start", [{"num_cpus": 4}], indirect=True)
def test_readme_four_sleeps_run_in_parallel(ray_start):
    @zray.remote
    def f():
        start = time.time()
        time.sleep(1)
        return start, time.time()

    spans = zray.get([f.remote() for _ in range(4)])
    # In parallel: every task started before any of them ended (no wall-clock bound, which a
    # loaded machine would break).
    assert max(start for start, _ in spans) < min(end for _, end in spans)


# -- ObjectRef arguments ----------------------------------------------------------------------------
def test_top_level_refs_are_resolved(shared_cluster):
    @zray.remote
    def slow(x):
        time.sleep(0.3)
        return x

    @zray.remote
    def kind_and_value(v, *, kw):
        return type(v).__name__, v, type(kw).__name__, kw

    pending = slow.remote(7)                 # still running when the next task is submitted
    put = zray.put({"a": 1})
    assert zray.get(kind_and_value.remote(pending, kw=put)) == ("int", 7, "dict", {"a": 1})


def test_chain_of_tasks(shared_cluster):
    @zray.remote
    def h():
        time.sleep(0.1)
        return 1

    @zray.remote
    def g(x):
        return x + 10

    @zray.remote
    def f(x):
        return x * 2

    assert zray.get(f.remote(g.remote(h.remote()))) == 22
    ref = h.remote()
    for _ in range(5):
        ref = g.remote(ref)
    assert zray.get(ref) == 51


def test_nested_refs_arrive_as_refs(shared_cluster):
    @zray.remote
    def value(x):
        time.sleep(0.1)
        return x

    @zray.remote
    def use(container):
        refs = container["refs"] if isinstance(container, dict) else container
        assert all(isinstance(r, ObjectRef) for r in refs), [type(r) for r in refs]
        return sum(zray.get(list(refs)))

    refs = [value.remote(i) for i in range(3)] + [zray.put(10)]
    assert zray.get(use.remote(refs)) == 13
    assert zray.get(use.remote({"refs": refs})) == 13


# -- resources --------------------------------------------------------------------------------------
def _intervals_overlap_max(intervals):
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda t: (t[0], t[1]))
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def test_cpus_limit_concurrency(shared_cluster):
    @zray.remote(num_cpus=1)
    def span():
        start = time.time()
        time.sleep(0.3)
        return start, time.time()

    zray.get([span.remote(), span.remote()])    # both workers up
    spans = zray.get([span.remote() for _ in range(6)])
    assert _intervals_overlap_max(spans) == 2


def test_custom_resource_serializes(zray_cluster):
    zray_cluster(num_cpus=2, resources={"foo": 1})
    assert zray.cluster_resources()["foo"] == 1

    @zray.remote(resources={"foo": 1}, num_cpus=0)
    def span():
        start = time.time()
        time.sleep(0.2)
        return start, time.time()

    spans = zray.get([span.remote() for _ in range(3)])
    assert _intervals_overlap_max(spans) == 1


def test_infeasible_task_warns_once_and_stays_pending(ray_start, capfd):
    @zray.remote(num_cpus=100)
    def huge():
        return 1

    refs = [huge.remote() for _ in range(3)]
    ready, not_ready = zray.wait(refs, timeout=0.5)
    assert ready == [] and len(not_ready) == 3

    @zray.remote
    def small():
        return 2

    assert zray.get(small.remote()) == 2      # a feasible task is not blocked behind it
    deadline = time.monotonic() + 5
    err = ""
    while time.monotonic() < deadline:
        err += capfd.readouterr().err
        if "huge" in err:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    err += capfd.readouterr().err
    warnings = [line for line in err.splitlines() if "huge" in line]
    assert len(warnings) == 1, err
    assert "100" in warnings[0] and "CPU" in warnings[0]


GPU_PROBES = """
import os
import zray
from zray.core.gpus import device_indices

def probe():
    return zray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"), device_indices()
"""


def _gpu_probes():
    ns = {}
    exec(GPU_PROBES, ns)
    probe = ns["probe"]

    @zray.remote(num_gpus=1)
    def one_gpu():
        return probe()

    @zray.remote(num_gpus=2)
    def two_gpus():
        return probe()

    @zray.remote
    def no_gpu():
        return probe()

    @zray.remote(num_gpus=1)
    class GpuActor:
        def probe(self):
            return probe()
    return one_gpu, two_gpus, no_gpu, GpuActor


@pytest.mark.parametrize("ray_start", [{"num_cpus": 2, "num_gpus": 2}], indirect=True)
def test_workers_see_the_nodes_gpus_and_get_gpu_ids_is_the_assignment(ray_start):
    """No per-worker masking (Ray #61073): CUDA_VISIBLE_DEVICES is the node's list in every
    worker, get_gpu_ids() the granted ids, device_indices() where they are in that list."""
    one_gpu, two_gpus, no_gpu, GpuActor = _gpu_probes()
    ids, env, idx = zray.get(one_gpu.remote())
    assert len(ids) == 1 and ids[0] in (0, 1) and env == "0,1" and idx == ids
    ids, env, idx = zray.get(two_gpus.remote())
    assert sorted(ids) == [0, 1] and env == "0,1" and sorted(idx) == [0, 1]
    ids, env, idx = zray.get(no_gpu.remote())
    assert ids == [] and env == "0,1" and idx == []
    # Two actors holding one GPU each: different ids, both see the whole node.
    actors = [GpuActor.remote(), GpuActor.remote()]
    (ids_a, env_a, _), (ids_b, env_b, _) = zray.get([a.probe.remote() for a in actors])
    assert sorted(ids_a + ids_b) == [0, 1] and env_a == env_b == "0,1"
    assert zray.cluster_resources()["GPU"] == 2


def test_a_nodes_gpu_list_comes_from_its_environment_and_indices_follow_it(zray_cluster,
                                                                          monkeypatch):
    # A node started with devices 4 and 6 (e.g. Slurm's grant): slot i is device list[i].
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    zray_cluster(num_cpus=2, num_gpus=2)
    one_gpu, two_gpus, _, _ = _gpu_probes()
    ids, env, idx = zray.get(one_gpu.remote())
    assert ids[0] in (4, 6) and env == "4,6" and idx == [[4, 6].index(ids[0])]
    ids, env, idx = zray.get(two_gpus.remote())
    assert sorted(ids) == [4, 6] and sorted(idx) == [0, 1]


def test_masking_is_still_there_for_whoever_asks(zray_cluster, monkeypatch):
    monkeypatch.setenv("ZRAY_MASK_GPUS", "1")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    zray_cluster(num_cpus=2, num_gpus=2)
    one_gpu, _, no_gpu, _ = _gpu_probes()
    ids, env, idx = zray.get(one_gpu.remote())
    assert len(ids) == 1 and env == str(ids[0]) and idx == [0]
    ids, env, idx = zray.get(no_gpu.remote())
    assert ids == [] and env == ""


def test_gpu_ids_unit():
    from zray.core import gpus
    assert gpus.node_gpu_ids({}, 2) == ["0", "1"]
    assert gpus.node_gpu_ids({"CUDA_VISIBLE_DEVICES": "3,5,7"}, 2) == ["3", "5"]
    assert gpus.node_gpu_ids({"CUDA_VISIBLE_DEVICES": "3"}, 2) == ["0", "1"]   # too few listed
    assert gpus.node_gpu_ids({"CUDA_VISIBLE_DEVICES": "0"}, 0) == []
    assert gpus.assigned_ids([1], ["GPU-ab", "GPU-cd"]) == ["GPU-cd"]
    assert gpus.visible_devices(["2", "3"], [3], mask=False) == "2,3"
    assert gpus.visible_devices(["2", "3"], [3], mask=True) == "3"
    assert gpus.visible_devices([], [], mask=False) is None
    assert gpus.device_indices([3], {"CUDA_VISIBLE_DEVICES": "2,3"}) == [1]
    assert gpus.device_indices(["GPU-cd"], {"CUDA_VISIBLE_DEVICES": "GPU-ab,GPU-cd"}) == [1]
    assert gpus.device_indices([1], {}) == [1]
    assert gpus.masking({"ZRAY_MASK_GPUS": "1"}) and not gpus.masking({})


def test_runtime_context(shared_cluster):
    ctx = zray.get_runtime_context()
    assert ctx.get_task_id() is None
    driver = (ctx.get_job_id(), ctx.get_node_id(), ctx.get_worker_id())
    assert all(driver)

    @zray.remote
    def inside():
        c = zray.get_runtime_context()
        return c.get_job_id(), c.get_node_id(), c.get_worker_id(), c.get_task_id(), os.getpid()

    job, node, worker, task, pid = zray.get(inside.remote())
    assert job == driver[0] and node == driver[1]
    assert worker and worker != driver[2]
    assert isinstance(task, str) and task
    _, _, _, task2, _ = zray.get(inside.remote())
    assert task2 != task
    assert pid != os.getpid()


def test_cluster_and_available_resources(shared_cluster):
    total = zray.cluster_resources()
    assert total["CPU"] == 2
    deadline = time.monotonic() + 5
    while zray.available_resources().get("CPU") != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert zray.available_resources()["CPU"] == 2


# -- worker output ----------------------------------------------------------------------------------
def test_print_reaches_driver_with_prefix(shared_cluster, capfd):
    @zray.remote
    def speaker(word):
        print(word)
        return os.getpid()

    pid = zray.get(speaker.remote("hello"))
    deadline = time.monotonic() + 5
    out = ""
    while time.monotonic() < deadline:
        out += capfd.readouterr().out
        if "hello" in out:
            break
        time.sleep(0.05)
    assert f"(speaker pid={pid}) hello" in out.splitlines(), out


def test_stderr_and_multiline_output_reach_driver(shared_cluster, capfd):
    import sys

    @zray.remote
    def noisy():
        print("line one\nline two")
        print("to stderr", file=sys.stderr)
        return os.getpid()

    pid = zray.get(noisy.remote())
    out = err = ""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        captured = capfd.readouterr()
        out, err = out + captured.out, err + captured.err
        if "line two" in out and "to stderr" in err:
            break
        time.sleep(0.05)
    assert f"(noisy pid={pid}) line one" in out.splitlines(), out
    assert f"(noisy pid={pid}) line two" in out.splitlines(), out
    assert f"(noisy pid={pid}) to stderr" in err.splitlines(), err


def test_auto_init_on_remote_call():
    if zray.is_initialized():
        zray.shutdown()

    @zray.remote
    def f():
        return 5

    try:
        assert zray.get(f.remote()) == 5
        assert zray.is_initialized()
    finally:
        zray.shutdown()


def test_retry_after_a_large_result_was_stored_keeps_working(tmp_path, zray_cluster):
    """The worker stores a large result, then dies before reporting it: the retry finds the
    object already stored under the same id and the task still completes."""
    import os
    import numpy as np
    import zray
    from zray.objects import serialization
    from zray.objects.ids import return_object_id
    zray_cluster(num_cpus=1)
    marker = tmp_path / "stored-once"

    @zray.remote(max_retries=2)
    def big_then_die(path):
        value = np.ones(1 << 20, dtype=np.uint8)
        if not os.path.exists(path):
            open(path, "w").close()
            core = zray.api._runtime()
            spec = core.executor.running_task
            core.store.put(return_object_id(spec.task_id, 0), serialization.serialize(value),
                           spec.owner)
            os._exit(1)
        return value

    assert zray.get(big_then_die.remote(str(marker))).sum() == 1 << 20
