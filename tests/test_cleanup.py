"""Nothing zray starts outlives it: after shutdown(), a normal exit, or kill -9 of the driver."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

import zray
from helpers.cleanup import cluster_footprint, store_memfds, wait_gone

DRIVER = textwrap.dedent("""
    import json, sys, time
    import zray
    zray.init(num_cpus=2)
    @zray.remote
    def f(x):
        return x + 1
    assert zray.get(f.remote(1)) == 2
    ref = zray.put(b"x" * (1 << 20))   # something in the shared-memory store
    core = zray.api._runtime()
    print(json.dumps({"info": core.cluster_info(), "session": core.context.session_dir}), flush=True)
    if sys.argv[1] == "sleep":
        time.sleep(600)
    elif sys.argv[1] == "raise":
        raise RuntimeError("the driver crashed")
""")


def _start_driver(mode):
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"driver failed: {proc.stderr.read()}")
    data = json.loads(line)
    return proc, cluster_footprint(data["info"], data["session"])


def test_shutdown_leaves_nothing():
    zray.init(num_cpus=2)
    try:
        @zray.remote
        def f():
            return os.getpid()
        assert zray.get(f.remote()) != os.getpid()
        zray.put(b"y" * (1 << 20))
        core = zray.api._runtime()
        footprint = cluster_footprint(core.cluster_info(), core.context.session_dir)
        assert os.path.isdir(footprint["session_dir"])
        assert store_memfds(), "the store should be a memfd while the cluster runs"
    finally:
        zray.shutdown()
    assert wait_gone(footprint, exclude_pid=os.getpid()) is None
    assert not zray.is_initialized()


@pytest.mark.parametrize("mode", ["exit", "raise"])
def test_driver_exit_without_shutdown_leaves_nothing(mode):
    proc, footprint = _start_driver(mode)
    proc.wait(timeout=30)
    assert wait_gone(footprint) is None


def test_kill_9_of_the_driver_leaves_nothing():
    proc, footprint = _start_driver("sleep")
    assert len(footprint["pids"]) >= 3     # daemon, zygote and at least one worker
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert wait_gone(footprint) is None


def test_kill_9_of_the_node_daemon_fails_waits_instead_of_hanging():
    zray.init(num_cpus=1)
    try:
        @zray.remote
        def slow():
            import time
            time.sleep(60)
        ref = slow.remote()
        core = zray.api._runtime()
        footprint = cluster_footprint(core.cluster_info(), core.context.session_dir)
        os.kill(footprint["pids"][0], signal.SIGKILL)
        with pytest.raises(zray.exceptions.RayError) as info:
            zray.get(ref, timeout=30)
    finally:
        zray.shutdown()
    # The crashed node's logs are kept (and named in the error); nothing else is.
    session_dir = footprint["session_dir"]
    assert os.path.join(session_dir, "logs") in str(info.value)
    assert sorted(os.listdir(session_dir)) == ["logs"]
    shutil.rmtree(session_dir)
    assert wait_gone(footprint, exclude_pid=os.getpid()) is None


def test_init_again_after_shutdown():
    for _ in range(2):
        zray.init(num_cpus=1)
        assert zray.get(zray.put(3)) == 3
        zray.shutdown()
