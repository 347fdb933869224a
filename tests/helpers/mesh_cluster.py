"""A mesh of `zray start` nodes on loopback, one ZRAY_TMPDIR each (one per simulated host),
and drivers run as subprocesses attached to any of them."""
import json
import os
import signal
import subprocess
import sys
import textwrap

from helpers.nodes import seconds_until, status_of
from zray.node import local_node


def cli(tmp, *args, check=True, timeout=60):
    env = dict(os.environ, ZRAY_TMPDIR=str(tmp))
    return subprocess.run([sys.executable, "-m", "zray.scripts.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=check)


class MeshCluster:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.dirs = []
        self.port = local_node.free_port("127.0.0.1")
        self.secret = None

    def add_node(self, num_cpus=1, resources=None):
        """Start one more node (the first one seeds the mesh); returns its index."""
        i = len(self.dirs)
        d = self.tmp_path / f"node{i}"
        d.mkdir()
        args = ["start", "--num-cpus", str(num_cpus)]
        if resources:
            args += ["--resources", json.dumps(resources)]
        if self.secret is None:
            cli(d, *args, "--port", str(self.port))
            self.secret = str(next((d / f"zray-{os.getuid()}").glob("s*/cluster.secret")))
        else:
            cli(d, *args, "--address", f"127.0.0.1:{self.port}", "--secret-file", self.secret)
        self.dirs.append(d)
        return i

    def status(self, i):
        return status_of(self.dirs[i])

    def node_id(self, i):
        return self.status(i)["node"]["node_id"]

    def alive_count(self, i):
        st = self.status(i)
        return sum(1 for n in st["cluster"]["nodes"] if n.get("State", "ALIVE") == "ALIVE")

    def wait_converged(self, timeout=15):
        n = len(self.dirs)
        took = seconds_until(lambda: all(self.alive_count(i) == n for i in range(n)), timeout)
        assert took is not None, "the mesh did not converge"
        # Each node's resource view rides on gossip refreshed once a second.
        took = seconds_until(lambda: all(
            self.status(i)["cluster"]["total"].get("CPU", 0) >= n for i in range(n)), timeout)
        assert took is not None, "the resource views did not converge"

    def kill9(self, i):
        os.kill(self.status(i)["node"]["pid"], signal.SIGKILL)

    def driver(self, i, code, timeout=90, check=True):
        """Run a driver program attached to node i; returns the CompletedProcess."""
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                             env=dict(os.environ, ZRAY_TMPDIR=str(self.dirs[i])),
                             capture_output=True, text=True, timeout=timeout)
        if check:
            assert out.returncode == 0, out.stdout + out.stderr
        return out

    def start_driver(self, i, code):
        return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                                env=dict(os.environ, ZRAY_TMPDIR=str(self.dirs[i])),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop_all(self):
        for d in self.dirs:
            cli(d, "stop", check=False)
