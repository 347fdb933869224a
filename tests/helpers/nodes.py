"""`zray start` nodes that live under their own ZRAY_TMPDIR (one per simulated host): asking
them, starting several on loopback, and driver processes attached to one of them."""
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time

from zray.node import local_node


@contextlib.contextmanager
def zray_tmpdir(path):
    old = os.environ.get("ZRAY_TMPDIR")
    os.environ["ZRAY_TMPDIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ZRAY_TMPDIR", None)
        else:
            os.environ["ZRAY_TMPDIR"] = old


def status_of(path):
    """`zray status` data of the node under `path`, or None."""
    with zray_tmpdir(path):
        return local_node.status()


def node_file_of(path):
    """The node file of the one node under `path`, or None."""
    with zray_tmpdir(path):
        nodes = local_node.read_node_files()
    return nodes[0] if nodes else None


def seconds_until(condition, timeout, interval=0.1):
    """Seconds it took until condition() held, or None after the timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(interval)
    return None


# -- several `zray start` nodes on loopback, one ZRAY_TMPDIR each -----------------------------------
def cli(tmp, *args, check=True, env_extra=None, timeout=60, wrap=()):
    """Run `zray ARGS` as the node under `tmp` would see it (`wrap`: an argv prefix, such as
    `ip netns exec NS`)."""
    env = dict(os.environ, ZRAY_TMPDIR=str(tmp), **(env_extra or {}))
    return subprocess.run([*wrap, sys.executable, "-m", "zray.scripts.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=check)


class Cluster:
    """n nodes on 127.0.0.1: node 0 listens on a free port, the others join it with its secret.
    `env` (one dict for all, or a list with one per node) reaches each node's daemon. `hosts`:
    one (argv prefix, IP) per node instead of loopback, e.g. (["ip", "netns", "exec", ns],
    "10.79.0.1") for a node in a network namespace."""

    def __init__(self, tmp_path, n, num_cpus=1, object_store_memory=None, env=None, hosts=None):
        self.tmp_path = tmp_path
        self.dirs = []
        self.hosts = list(hosts) if hosts else [((), "127.0.0.1")] * n
        self.port = local_node.free_port("127.0.0.1")
        self.secret = None
        envs = env if isinstance(env, list) else [env] * n
        for i in range(n):
            self.add_node(num_cpus, object_store_memory=object_store_memory, env=envs[i])

    def add_node(self, num_cpus=1, resources=None, object_store_memory=None, env=None):
        """Start one more node (the first one seeds the mesh); returns its index."""
        i = len(self.dirs)
        d = self.tmp_path / f"node{i}"
        d.mkdir()
        args = ["start", "--num-cpus", str(num_cpus)]
        if resources:
            args += ["--resources", json.dumps(resources)]
        if object_store_memory:
            args += ["--object-store-memory", str(object_store_memory)]
        while len(self.hosts) <= i:
            self.hosts.append(((), "127.0.0.1"))
        wrap, ip = self.hosts[i]
        if self.secret is None:
            cli(d, *args, "--port", str(self.port), "--node-ip-address", ip,
                env_extra=env, wrap=wrap)
            self.secret = node_file_of(d)["secret_file"]
        else:
            cli(d, *args, "--address", f"{self.hosts[0][1]}:{self.port}", "--secret-file",
                str(self.secret), "--node-ip-address", ip, env_extra=env, wrap=wrap)
        self.dirs.append(d)
        return i

    def status(self, i):
        return status_of(self.dirs[i])

    def states(self, i):
        st = self.status(i)
        return {n["NodeID"]: n.get("State", "ALIVE") for n in st["cluster"]["nodes"]}

    def node_info(self, i):
        return self.status(i)["node"]

    def store_stats(self, i):
        return self.status(i)["store"]

    def objects(self, i):
        """The objects in node i's store: `zray list objects --this-node --detail -f type=STORE
        --format json` (Ray's field names; the refs its processes hold are left out)."""
        return json.loads(cli(self.dirs[i], "list", "objects", "--this-node", "--detail",
                              "-f", "type=STORE", "--format", "json").stdout)

    def wait(self, condition, timeout):
        return seconds_until(condition, timeout)

    def wait_converged(self, timeout=15):
        n = len(self.dirs)
        return self.wait(lambda: all(list(self.states(i).values()).count("ALIVE") == n
                                     for i in range(n)), timeout)

    def wait_mesh_ready(self, timeout=15):
        """Every node sees every other alive, and every node's resources (they ride on gossip
        refreshed once a second)."""
        n = len(self.dirs)
        assert self.wait_converged(timeout) is not None, "the mesh did not converge"
        took = self.wait(lambda: all(len(self.status(i)["cluster"]["nodes"]) == n and all(
            node["Resources"] for node in self.status(i)["cluster"]["nodes"]) for i in range(n)), timeout)
        assert took is not None, "the resource views did not converge"

    def node_id(self, i):
        return self.node_info(i)["node_id"]

    def alive_count(self, i):
        return list(self.states(i).values()).count("ALIVE")

    def kill9(self, i):
        os.kill(self.node_info(i)["pid"], signal.SIGKILL)

    def run_driver(self, i, code, timeout=90):
        """Run a driver program attached to node i to its end; returns the CompletedProcess."""
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                             env=dict(os.environ, ZRAY_TMPDIR=str(self.dirs[i])),
                             capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, out.stdout + out.stderr
        return out

    def start_driver(self, i, code):
        """A driver program attached to node i, left running (stdin, stdout, stderr are pipes)."""
        return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                                env=dict(os.environ, ZRAY_TMPDIR=str(self.dirs[i])),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def stop_all(self):
        for i, d in enumerate(self.dirs):
            cli(d, "stop", check=False, wrap=self.hosts[i][0])


# -- a driver process attached to one of those nodes, driven line by line -------------------------
_DRIVER_LOOP = r"""
import json, sys
import zray
zray.init(address="auto")
ns = {"zray": zray}
print(json.dumps({"ok": True, "result": "ready"}), flush=True)
for line in sys.stdin:
    ns.pop("result", None)
    try:
        exec(json.loads(line), ns)
        out = {"ok": True, "result": ns.get("result")}
    except BaseException as exc:
        out = {"ok": False, "type": type(exc).__name__, "error": str(exc)}
    print(json.dumps(out, default=str), flush=True)
"""


class DriverError(Exception):
    def __init__(self, type_name, message):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


class Driver:
    """`zray.init(address="auto")` in a process of its own, under the ZRAY_TMPDIR of one node.
    `run(code)` executes code there (it may set `result` to something JSON can carry) and
    returns that result, or raises DriverError with the remote exception's type and message.
    Every read has a deadline; the process's stderr is kept in `log`."""

    def __init__(self, tmp, log, timeout=60, wrap=()):
        self.log = log
        self._err = open(log, "w")
        self.proc = subprocess.Popen([*wrap, sys.executable, "-c", _DRIVER_LOOP], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err,
                                     env=dict(os.environ, ZRAY_TMPDIR=str(tmp)))
        self._buf = b""
        self._receive(timeout)

    def send(self, code):
        self.proc.stdin.write((json.dumps(code) + "\n").encode())
        self.proc.stdin.flush()

    def receive(self, timeout=60):
        out = self._receive(timeout)
        if not out["ok"]:
            raise DriverError(out["type"], out["error"])
        return out["result"]

    def run(self, code, timeout=60):
        self.send(code)
        return self.receive(timeout)

    def _receive(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"driver gave no answer in {timeout}s; its log:\n{self.stderr()}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"driver exited ({self.proc.poll()}); its log:\n{self.stderr()}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def stderr(self):
        self._err.flush()
        with open(self.log) as f:
            return f.read()[-3000:]

    def close(self, timeout=30):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc.stdout.close()
        self._err.close()
