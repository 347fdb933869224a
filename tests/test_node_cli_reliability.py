"""`zray start` / `zray stop` under faults (issue 10: defects 3, 8, 10)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest


def _cli(env, *args, timeout=60, check=False):
    return subprocess.run([sys.executable, "-m", "zray.scripts.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=check)


def _wait_node_file(tmp_path, timeout=60):
    """The node file a `zray start` under tmp_path writes (<root>/nodes/<session>.json)."""
    nodes = tmp_path / f"zray-{os.getuid()}" / "nodes"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(nodes.glob("*.json")) if nodes.exists() else []
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no node file appeared")


@pytest.fixture
def env(tmp_path):
    return dict(os.environ, ZRAY_TMPDIR=str(tmp_path))


def test_stop_never_signals_a_process_that_reused_the_nodes_pid(env, tmp_path):
    """A node file left by a crash names a pid that now belongs to someone else."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        root = tmp_path / f"zray-{os.getuid()}"
        root.mkdir(mode=0o700)
        session = root / "s1-abcdef"
        session.mkdir()
        nodes = root / "nodes"
        nodes.mkdir(mode=0o700)
        node_file = nodes / "s1-abcdef.json"
        node_file.write_text(json.dumps({
            "session": str(session), "address": f"ipc://{session}/sock/node",
            "pid": bystander.pid, "start_time": 1, "node_id": "x"}))
        out = _cli(env, "stop")
        assert out.returncode == 0, out.stderr
        assert "no zray node was running" in out.stdout
        time.sleep(0.2)
        assert bystander.poll() is None, "zray stop signalled an unrelated process"
        assert not node_file.exists()     # the stale file is gone
        # Without a recorded start time (an older node file) the command line decides.
        nodes.mkdir(mode=0o700, parents=True, exist_ok=True)
        node_file.write_text(json.dumps({
            "session": str(session), "address": "x", "pid": bystander.pid, "node_id": "x"}))
        _cli(env, "stop")
        time.sleep(0.2)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_start_block_reports_its_daemons_death(env, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "zray.scripts.cli", "start", "--block",
                             "--num-cpus", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        node_file = _wait_node_file(tmp_path)
        pid = json.loads(node_file.read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode != 0
        assert f"the node daemon (pid {pid}) was killed by signal 9 (SIGKILL)" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _cli(env, "stop")


def test_start_block_then_stop_is_a_clean_exit(env, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "zray.scripts.cli", "start", "--block",
                             "--num-cpus", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        node_file = _wait_node_file(tmp_path)
        assert _cli(env, "stop").stdout.strip() == "1 zray node stopped"
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_join_that_reaches_nobody_fails_with_the_cause(env, tmp_path):
    """An unreachable seed (and a wrong secret, which looks the same): an error naming the
    seed and the likely causes, a non-zero exit, and no node left running."""
    from zray.node import local_node
    port = local_node.free_port("127.0.0.1")       # nobody listens there
    secret = tmp_path / "secret"
    secret.write_text("a" * 64)
    secret.chmod(0o600)
    out = _cli(dict(env, ZRAY_JOIN_TIMEOUT_S="3"), "start", "--num-cpus", "1", "--address",
               f"127.0.0.1:{port}", "--secret-file", str(secret), timeout=120)
    assert out.returncode != 0
    assert f"could not join the mesh through 127.0.0.1:{port}" in out.stderr
    assert "secret" in out.stderr
    assert "zray node started" not in out.stdout
    assert _cli(env, "status").returncode != 0      # nothing runs


def test_a_seed_listens_on_the_hosts_address_and_says_so(env):
    from zray.node import local_node
    out = _cli(env, "start", "--num-cpus", "1", "--port", str(local_node.free_port("0.0.0.0")))
    try:
        assert out.returncode == 0, out.stderr
        assert "Listening for other nodes on" in out.stdout
    finally:
        _cli(env, "stop")
