"""`bootstrap.start_node(spec, fork=True)`: the node daemon forked from the calling process
(as `python -m zray.launch` starts its rank's node), not a second interpreter. Each case runs
in a fresh process (a fork needs one with a single thread)."""
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import os, sys, threading, time
from zray.node import bootstrap, local_node, session
from zray.node.processes import is_node_daemon, process_start_time
from zray.transport import wire

if sys.argv[1] == "thread":        # a second thread: forking is unsafe, so it is not done
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()
session_dir = session.create_session_dir()
spec = bootstrap.NodeSpec(session_dir=session_dir, num_cpus=1, object_store_memory=64 << 20,
                          node_file=local_node.node_file_for(session_dir), warmup="lazy",
                          driver_pid=os.getpid())
node = bootstrap.start_node(spec, timeout=60, fork=True)
info = local_node.find_node(spec.node_file)
with open(f"/proc/{node.pid}/comm") as f:
    comm = f.read().strip()
with open(f"/proc/{node.pid}/cmdline", "rb") as f:
    exec_d = b"zray.node.daemon" in f.read().split(b"\\0")
print("FORKED", type(node.proc).__name__ == "ForkedProcess", "EXECD", exec_d, "COMM", comm,
      "PARENT", os.getppid() != node.pid and open(f"/proc/{node.pid}/stat").read().split(")")[1].split()[1] == str(os.getpid()))
print("DAEMON", is_node_daemon(node.pid, process_start_time(node.pid), session_dir),
      "FOUND", info["pid"] == node.pid)
nodes = local_node.query(wire.CLUSTER_INFO, info, timeout=10)["nodes"]
print("SERVES", len(nodes))
node.proc.send_signal(15)
print("EXIT", node.proc.wait(timeout=30), node.alive())
print("SESSION_GONE", not os.path.exists(session_dir), not os.path.exists(spec.node_file))
"""


def _run(tmp_path, mode):
    env = dict(os.environ, PYTHONPATH=REPO, ZRAY_TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), mode],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return [line.split() for line in done.stdout.splitlines()]


def test_a_forked_node_serves_is_found_and_stops_clean(tmp_path):
    forked, daemon, serves, exit_, gone = _run(tmp_path, "plain")
    assert forked == ["FORKED", "True", "EXECD", "False", "COMM", "zray-node", "PARENT", "True"]
    assert daemon == ["DAEMON", "True", "FOUND", "True"]
    assert serves == ["SERVES", "1"]
    assert exit_ == ["EXIT", "0", "False"]
    assert gone == ["SESSION_GONE", "True", "True"]


def test_a_process_with_threads_starts_its_node_as_a_new_interpreter(tmp_path):
    forked, daemon, serves, exit_, gone = _run(tmp_path, "thread")
    assert forked[:6] == ["FORKED", "False", "EXECD", "True", "COMM", "zray-node"]
    assert daemon == ["DAEMON", "True", "FOUND", "True"]
    assert exit_ == ["EXIT", "0", "False"] and gone == ["SESSION_GONE", "True", "True"]


def test_a_launcher_that_is_not_a_node_is_not_taken_for_one(tmp_path):
    from zray.node.processes import is_node_daemon, process_start_time
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "zray.launch",
                             str(tmp_path)])
    try:
        start = process_start_time(proc.pid)
        assert is_node_daemon(proc.pid, start, str(tmp_path)) is False      # its name: python
        assert is_node_daemon(os.getpid(), None, str(tmp_path)) is False
    finally:
        proc.kill()
        proc.wait(timeout=10)
