"""Resources from the allocation (zray/launch/allocation.py), on fake cgroup trees."""
import pytest

from zray.launch import allocation as alloc

GIB = 1 << 30


def test_cpu_list_syntax():
    assert alloc.parse_cpu_list("0-3,8,10-11") == {0, 1, 2, 3, 8, 10, 11}
    assert alloc.parse_cpu_list("5\n") == {5}


def test_cpu_max_and_cfs():
    assert alloc.parse_cpu_max("max 100000") is None
    assert alloc.parse_cpu_max("150000 100000") == 1.5
    assert alloc.parse_cfs("-1", "100000") is None
    assert alloc.parse_cfs("200000", "100000") == 2.0


def test_memory_limit_unlimited_forms():
    assert alloc.parse_memory_limit("max") is None
    assert alloc.parse_memory_limit("9223372036854771712") is None   # cgroup v1's "none"
    assert alloc.parse_memory_limit("1073741824\n") == GIB


@pytest.mark.parametrize("text, node, expected", [
    ("2(x3),1", 0, 2), ("2(x3),1", 2, 2), ("2(x3),1", 3, 1), ("4", 0, 4)])
def test_tasks_per_node(text, node, expected):
    assert alloc.parse_tasks_per_node(text, node) == expected


def test_tasks_per_node_rejects_garbage():
    with pytest.raises(ValueError, match="SLURM_TASKS_PER_NODE"):
        alloc.parse_tasks_per_node("two", 0)


def test_proc_cgroup_v1_and_v2():
    paths = alloc.parse_proc_cgroup("12:cpu,cpuacct:/slurm/uid_0/job_5\n0::/user.slice/a\n")
    assert paths == {"cpu": "/slurm/uid_0/job_5", "cpuacct": "/slurm/uid_0/job_5",
                     "v2": "/user.slice/a"}


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_quota_of_an_ancestor_applies(tmp_path):
    _write(tmp_path / "job" / "cpu.max", "250000 100000\n")
    _write(tmp_path / "job" / "step" / "cpu.max", "max 100000\n")
    _write(tmp_path / "job" / "step" / "memory.max", "max\n")
    _write(tmp_path / "job" / "memory.max", f"{3 * GIB}\n")
    a = alloc.detect(env={}, root=str(tmp_path), affinity=16, physical_memory=64 * GIB,
                     cgroup_text="0::/job/step\n")
    assert (a.cpus, a.memory_bytes) == (3, 3 * GIB)       # 2.5 CPUs round up
    assert a.sources == {"cpus": "cgroup CPU quota 2.5", "memory": "cgroup memory limit",
                         "gpus": "none"}


def test_v1_quota_and_memory(tmp_path):
    _write(tmp_path / "cpu,cpuacct" / "slurm" / "cpu.cfs_quota_us", "100000")
    _write(tmp_path / "cpu,cpuacct" / "slurm" / "cpu.cfs_period_us", "100000")
    _write(tmp_path / "memory" / "slurm" / "memory.limit_in_bytes", str(2 * GIB))
    a = alloc.detect(env={}, root=str(tmp_path), affinity=8, physical_memory=64 * GIB,
                     cgroup_text="4:cpu,cpuacct:/slurm\n3:memory:/slurm\n")
    assert (a.cpus, a.memory_bytes) == (1, 2 * GIB)


def test_affinity_wins_over_a_looser_quota(tmp_path):
    _write(tmp_path / "cpu.max", "800000 100000")
    a = alloc.detect(env={}, root=str(tmp_path), affinity=2, physical_memory=GIB,
                     cgroup_text="0::/\n")
    assert (a.cpus, a.sources["cpus"]) == (2, "affinity mask")


def test_slurm_step_share(tmp_path):
    env = {"SLURM_CPUS_ON_NODE": "8", "SLURM_STEP_ID": "0", "SLURM_NODEID": "1",
           "SLURM_STEP_TASKS_PER_NODE": "1,4", "SLURM_MEM_PER_CPU": "1024"}
    a = alloc.detect(env=env, root=str(tmp_path), affinity=64, physical_memory=256 * GIB,
                     cgroup_text="")
    assert a.cpus == 2 and a.sources["cpus"] == "SLURM_CPUS_ON_NODE=8 / 4 tasks"
    assert a.memory_bytes == 2 * GIB and a.sources["memory"] == "SLURM_MEM_PER_CPU"


def test_slurm_cpus_per_task_in_a_step(tmp_path):
    env = {"SLURM_CPUS_ON_NODE": "2", "SLURM_CPUS_PER_TASK": "1", "SLURM_STEP_ID": "3",
           "SLURM_MEM_PER_NODE": "512"}
    a = alloc.detect(env=env, root=str(tmp_path), affinity=2, physical_memory=8 * GIB,
                     cgroup_text="")
    assert (a.cpus, a.memory_bytes) == (1, 512 << 20)


def test_gpus_from_slurm_then_cuda(tmp_path):
    assert alloc.gpu_ids({"SLURM_STEP_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": "0,1"}) == (
        ("2", "3"), "SLURM_STEP_GPUS")
    assert alloc.gpu_ids({"CUDA_VISIBLE_DEVICES": ""}) == ((), "CUDA_VISIBLE_DEVICES")
    assert alloc.gpu_ids({}) == ((), None)


def test_detect_on_this_machine_is_sane():
    a = alloc.detect()
    assert 1 <= a.cpus <= __import__("os").cpu_count()
    assert a.memory_bytes > 0
    assert "CPUs" in a.describe()
