"""When a node warms up (zray/node/warmup.py), without processes: the policy on virtual time,
and the reading of /proc/stat."""
import pytest

from zray.node import warmup
from zray.node.bootstrap import NodeSpec

STAT_BEFORE = """cpu  100 0 50 1000 10 0 0 0 0 0
cpu0 50 0 25 500 5 0 0 0 0 0
cpu1 50 0 25 500 5 0 0 0 0 0
intr 1 2 3
"""
# 100 jiffies later: cpu0 was idle all along, cpu1 busy all along
STAT_AFTER = """cpu  200 0 50 1100 10 0 0 0 0 0
cpu0 50 0 25 600 5 0 0 0 0 0
cpu1 150 0 25 500 5 0 0 0 0 0
"""


def test_now_has_nothing_left_to_do():
    policy = warmup.WarmupPolicy(warmup.NOW)
    policy.ready(0.0)
    assert not policy.waiting and not policy.due(100.0, 8.0)


@pytest.mark.parametrize("mode", [warmup.IDLE, warmup.LAZY])
def test_a_later_mode_waits_for_the_node_to_serve_then_for_a_spare_cpu(mode):
    policy = warmup.WarmupPolicy(mode, max_delay_s=3.0)
    assert not policy.waiting and not policy.due(0.0, 2.0)     # not serving yet
    policy.ready(10.0)
    assert policy.waiting
    assert not policy.due(10.2, None)          # the first sample says nothing
    assert not policy.due(10.4, 0.5)           # the host is busy
    assert policy.due(10.6, 0.9)               # a CPU to spare: once
    assert not policy.waiting and not policy.due(10.8, 2.0)


def test_a_busy_host_warms_up_after_the_delay():
    policy = warmup.WarmupPolicy(warmup.IDLE, max_delay_s=3.0)
    policy.ready(10.0)
    policy.ready(11.0)                          # the first time counts
    assert not policy.due(12.9, 0.0)
    assert policy.due(13.0, 0.0)


def test_a_bad_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="warm-up mode must be one of now, idle, lazy"):
        warmup.WarmupPolicy("soon")
    with pytest.raises(ValueError, match="warmup must be one of"):
        NodeSpec(session_dir="/tmp/x", num_cpus=1, object_store_memory=1 << 20, warmup="soon")
    with pytest.raises(SystemExit):
        from zray.node.daemon import parse_args
        parse_args(["--session", "/tmp/x", "--num-cpus", "1", "--object-store-memory", "1048576",
                    "--warmup", "soon"])


def test_the_node_command_names_a_later_mode_only():
    spec = NodeSpec(session_dir="/tmp/x", num_cpus=1, object_store_memory=1 << 20)
    assert "--warmup" not in spec.command()
    lazy = NodeSpec(session_dir="/tmp/x", num_cpus=1, object_store_memory=1 << 20, warmup="lazy")
    assert lazy.command()[-2:] == ["--warmup", "lazy"]


def test_each_mode_has_its_zygote_mode():
    assert [warmup.zygote_mode(m) for m in warmup.MODES] == ["eager", "core", "lazy"]


def test_idle_cpus_over_the_cpus_this_process_may_use():
    before = warmup.parse_cpu_times(STAT_BEFORE, {0, 1})
    after = warmup.parse_cpu_times(STAT_AFTER, {0, 1})
    assert before == {0: (505, 580), 1: (505, 580)}
    assert warmup.idle_between(before, after) == pytest.approx(1.0)
    only_busy = warmup.parse_cpu_times(STAT_AFTER, {1})
    assert warmup.idle_between(warmup.parse_cpu_times(STAT_BEFORE, {1}), only_busy) == 0.0


def test_nothing_to_say_without_two_samples_of_a_common_cpu():
    assert warmup.idle_between({}, {0: (1, 2)}) is None
    same = warmup.parse_cpu_times(STAT_BEFORE, {0})
    assert warmup.idle_between(same, same) is None             # no time passed
    assert warmup.parse_cpu_times("cpu0 garbage\ncpuX 1 2 3 4 5\n", {0}) == {}


def test_host_idle_samples_the_real_proc_stat(tmp_path):
    sampler = warmup.HostIdle()
    assert sampler.sample(0.0) is None
    idle = sampler.sample(0.1)
    assert idle is None or 0.0 <= idle <= len(sampler.cpus)
    gone = warmup.HostIdle(str(tmp_path / "missing"))
    assert gone.sample(0.0) is None and gone.sample(1.0) is None


def test_a_busy_node_waits_even_with_a_spare_cpu():
    policy = warmup.WarmupPolicy(warmup.LAZY, max_delay_s=3.0)
    policy.ready(0.0)
    assert not policy.due(0.4, 2.0, busy=True)      # a worker starting: not now
    assert policy.due(0.6, 2.0, busy=False)
    late = warmup.WarmupPolicy(warmup.IDLE, max_delay_s=3.0)
    late.ready(0.0)
    assert late.due(3.0, 0.0, busy=True)             # busy for as long as the delay: anyway
