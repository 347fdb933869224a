"""Hosts in network namespaces for multi-host tests (root only).

Three "hosts" zh1..zh3, each with its own address 10.77.0.N/24 on eth0, joined by a bridge that
lives in a fourth namespace (the switch), so nothing touches the machine's own network.
Partitions cut a host's port on the switch. Unix socket paths are not namespaced, so a test in
the root namespace can still reach each node's ipc endpoint.
"""
import os
import shutil
import subprocess

SUBNET = "10.77.0"


def available():
    return os.geteuid() == 0 and shutil.which("ip") is not None and _can_create()


def _can_create():
    probe = f"ztprobe{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ok


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Hosts:
    def __init__(self, n, tag):
        self.n = n
        self.tag = tag
        self.switch = f"zsw{tag}"
        self.names = [f"zh{tag}x{i}" for i in range(1, n + 1)]
        self.addresses = [f"{SUBNET}.{i}" for i in range(1, n + 1)]

    def __enter__(self):
        try:
            _ip("netns", "add", self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for i, (ns, addr) in enumerate(zip(self.names, self.addresses), start=1):
                _ip("netns", "add", ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                # Made in the machine's namespace first: tagged, so that concurrent users of
                # this helper (other tests, other checkouts) never collide.
                host_end, switch_end = f"zv{self.tag}x{i}h", self._switch_end(i - 1)
                _ip("link", "add", host_end, "type", "veth", "peer", "name", switch_end)
                _ip("link", "set", host_end, "netns", ns)
                _ip("link", "set", switch_end, "netns", self.switch)
                _ip("-n", ns, "link", "set", host_end, "name", "eth0")
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", self.switch, "link", "set", switch_end, "master", "br0")
                _ip("-n", self.switch, "link", "set", switch_end, "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for ns in self.names + [self.switch]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for i in range(1, self.n + 1):     # a pair made but not yet moved (a failed setup)
            subprocess.run(["ip", "link", "del", f"zv{self.tag}x{i}h"], capture_output=True)

    def run(self, index, argv, env=None, **kwargs):
        """Run argv inside host `index` (0-based)."""
        return subprocess.run(["ip", "netns", "exec", self.names[index], *argv], env=env, **kwargs)

    def _switch_end(self, index):
        return f"zv{self.tag}x{index + 1}s"

    def cut(self, index):
        _ip("-n", self.switch, "link", "set", self._switch_end(index), "down")

    def heal(self, index):
        _ip("-n", self.switch, "link", "set", self._switch_end(index), "up")


class VethPair:
    """Two hosts joined by one veth pair and nothing else: namespaces zp<tag>a and zp<tag>b,
    addresses 10.79.0.1 and 10.79.0.2 on eth0. Every name made in the machine's own namespace
    carries the tag, so concurrent users (other tests, benchmarks) do not collide.

        with VethPair(tag=os.getpid()) as hosts:
            subprocess.run(hosts.wrap(0) + ["ping", "-c1", hosts.addresses[1]])
    """

    def __init__(self, tag, mtu=None):
        tag = str(tag)[-8:]
        self.names = [f"zp{tag}a", f"zp{tag}b"]
        self.links = [f"zp{tag}a", f"zp{tag}b"]      # <= 15 characters
        self.addresses = ["10.79.0.1", "10.79.0.2"]
        self.mtu = mtu

    def __enter__(self):
        try:
            for ns in self.names:
                _ip("netns", "add", ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            _ip("link", "add", self.links[0], "type", "veth", "peer", "name", self.links[1])
            for ns, link, addr in zip(self.names, self.links, self.addresses):
                _ip("link", "set", link, "netns", ns)
                _ip("-n", ns, "link", "set", link, "name", "eth0")
                if self.mtu:
                    _ip("-n", ns, "link", "set", "eth0", "mtu", str(self.mtu))
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for ns in self.names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.links[0]], capture_output=True)

    def wrap(self, index):
        """The argv prefix that runs a command on host `index`."""
        return ["ip", "netns", "exec", self.names[index]]
