"""Resources as Ray programs use them (issue 13, item 7): the memory resource, reserved names,
GPU and CPU tasks in separate workers, OMP_NUM_THREADS, an actor's assigned resources, and
workers that tasks may fork."""
import os
import sys

import pytest

import zray
from zray.scheduling.local_scheduler import uses_gpu

MB = 1 << 20


@pytest.fixture(scope="module")
def _module_end():
    yield
    if zray.is_initialized():
        zray.shutdown()


@pytest.fixture
def cluster(_module_end):
    """One cluster with a (pretend) GPU and 300 MiB of memory, kept across the tests that
    use it; started again after a test that needed a cluster of its own."""
    if zray.is_initialized() and zray.cluster_resources().get("memory") != 300 * MB:
        zray.shutdown()
    if not zray.is_initialized():
        zray.init(num_cpus=2, num_gpus=1, _memory=300 * MB)
    yield zray


def test_the_node_has_a_memory_resource_that_memory_requests_use(cluster):
    assert zray.cluster_resources()["memory"] == 300 * MB

    @zray.remote(memory=200 * MB)
    class Hungry:
        def ping(self):
            return "fed"

    first = Hungry.options(num_cpus=0).remote()
    assert zray.get(first.ping.remote(), timeout=60) == "fed"
    assert zray.available_resources().get("memory", 0) == 100 * MB
    second = Hungry.options(num_cpus=0).remote()          # does not fit beside the first
    ready, _ = zray.wait([second.ping.remote()], timeout=1.0)
    assert ready == []
    zray.kill(first)
    assert zray.get(second.ping.remote(), timeout=60) == "fed"
    zray.kill(second)

    @zray.remote(memory=50 * MB)
    def small():
        return zray.get_runtime_context().get_assigned_resources().get("memory")
    assert zray.get(small.remote(), timeout=60) == 50 * MB


def test_a_memory_resource_from_the_allocation_by_default(zray_cluster):
    zray_cluster(num_cpus=1, object_store_memory=64 * MB)
    assert zray.cluster_resources().get("memory", 0) > 0


@pytest.mark.parametrize("name", ["bundle", "memory", "object_store_memory"])
def test_reserved_resource_names_are_refused(name):
    with pytest.raises(ValueError, match="reserved"):
        zray.remote(resources={name: 1})(lambda: 1)
    with pytest.raises(ValueError, match="reserved"):
        zray.remote(resources={name: 1})(type("Actor", (), {}))


def test_bad_memory_for_init_is_refused():
    if zray.is_initialized():
        zray.shutdown()
    with pytest.raises(ValueError, match="_memory"):
        zray.init(_memory=-5)
    assert not zray.is_initialized()


def test_gpu_and_cpu_tasks_never_share_a_worker(cluster):
    assert uses_gpu({"GPU": 5000}) and uses_gpu({"GPU_group_ab": 10_000})
    assert not uses_gpu({"CPU": 10_000}) and not uses_gpu({"GPU": 0})

    @zray.remote(num_gpus=1)
    def on_gpu():
        return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")

    @zray.remote
    def on_cpu():
        return os.getpid()
    for _ in range(3):
        gpu_pids = {pid for pid, _ in zray.get([on_gpu.remote() for _ in range(3)])}
        cpu_pids = set(zray.get([on_cpu.remote() for _ in range(6)]))
        assert not gpu_pids & cpu_pids
    assert zray.get(on_gpu.remote())[1] == "0"


def test_omp_num_threads_follows_num_cpus(cluster):
    @zray.remote
    def omp():
        return os.environ.get("OMP_NUM_THREADS")

    @zray.remote
    class Actor:
        def omp(self):
            return os.environ.get("OMP_NUM_THREADS")
    assert zray.get([omp.options(num_cpus=2).remote(), omp.remote(), omp.options(num_cpus=0).remote()]) \
        == ["2", "1", "1"]
    assert zray.get(Actor.options(num_cpus=2).remote().omp.remote()) == "2"


def test_an_actor_shows_the_resources_it_holds(cluster):
    @zray.remote
    class Where:
        def resources(self):
            return zray.get_runtime_context().get_assigned_resources()
    assert zray.get(Where.options(num_cpus=1).remote().resources.remote()) == {"CPU": 1.0}
    assert zray.get(Where.remote().resources.remote()) == {}      # placed with 1 CPU, holds none


def test_a_task_may_fork(cluster):
    @zray.remote
    def forks(how):
        import multiprocessing
        refs = [zray.put(i) for i in range(50)]
        if how == "pool":
            with multiprocessing.get_context("fork").Pool(2) as pool:
                return sum(pool.map(abs, range(-5, 5)))
        pid = os.fork()
        if pid == 0:
            print("in the child")
            if how == "sys.exit":
                sys.exit(3)             # unwinds into zray: the child leaves there
            if how == "raise":
                raise RuntimeError("the child fails")
            return "the child returned"      # into zray too
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), len(zray.get(refs))
    assert zray.get(forks.remote("pool"), timeout=60) == 25
    assert zray.get(forks.remote("sys.exit"), timeout=60) == (3, 50)
    assert zray.get(forks.remote("raise"), timeout=60) == (1, 50)
    assert zray.get(forks.remote("return"), timeout=60) == (0, 50)


def test_gpu_actors_keep_their_own_devices(zray_cluster):
    zray_cluster(num_cpus=2, num_gpus=2)

    @zray.remote(num_gpus=2)
    def both():
        return zray.get_gpu_ids()

    @zray.remote(num_gpus=1)
    class OnGpu:
        def ids(self):
            return zray.get_gpu_ids()
    assert sorted(zray.get(both.remote())) == [0, 1]      # a GPU worker that ran a 2-GPU task
    actors = [OnGpu.remote(), OnGpu.remote()]
    ids = zray.get([a.ids.remote() for a in actors], timeout=60)
    assert sorted(ids[0] + ids[1]) == [0, 1]               # each its own, whatever ran before
    zray.kill(actors[0])
    again = OnGpu.remote()                                 # the freed device is granted again
    assert zray.get(again.ids.remote(), timeout=60) == ids[0]
