"""The mesh across three hosts with their own addresses (network namespaces; root only):
membership, a task and an actor on each host, kill -9 of a node, a partition and its heal."""
import os
import signal
import sys
import textwrap

import pytest

import netns
from helpers.nodes import node_file_of, seconds_until, status_of

pytestmark = [pytest.mark.slow, pytest.mark.privileged,
              pytest.mark.skipif(not netns.available(), reason="needs root and ip netns")]

PORT = 7100


@pytest.fixture
def mesh(tmp_path):
    with netns.Hosts(3, tag=os.getpid() % 1000) as hosts:
        dirs = [tmp_path / f"host{i}" for i in range(3)]
        for d in dirs:
            d.mkdir()

        def cli(i, *args, check=True):
            env = dict(os.environ, ZRAY_TMPDIR=str(dirs[i]))
            return hosts.run(i, [sys.executable, "-m", "zray.scripts.cli", *args], env=env,
                             capture_output=True, text=True, timeout=60, check=check)

        cli(0, "start", "--num-cpus", "1", "--port", str(PORT), "--node-ip-address", hosts.addresses[0])
        secret = node_file_of(dirs[0])["secret_file"]
        for i in (1, 2):
            cli(i, "start", "--num-cpus", "1", "--port", str(PORT), "--node-ip-address",
                hosts.addresses[i], "--address", f"{hosts.addresses[0]}:{PORT}",
                "--secret-file", str(secret))
        try:
            yield hosts, dirs, cli
        finally:
            for i in range(3):
                cli(i, "stop", check=False)


def states(dirs, i):
    st = status_of(dirs[i])
    if st is None:
        return {}
    return {n.get("NodeManagerAddress"): n.get("State", "ALIVE") for n in st["cluster"]["nodes"]}


wait = seconds_until


def all_alive(dirs, hosts, among=(0, 1, 2)):
    return all(sorted(a for a, s in states(dirs, i).items() if s == "ALIVE") ==
               sorted(hosts.addresses[j] for j in among) for i in among)


def test_membership_tasks_and_actors_on_each_host(mesh):
    hosts, dirs, cli = mesh
    assert wait(lambda: all_alive(dirs, hosts), 15) is not None
    driver = textwrap.dedent("""
        import socket, zray
        zray.init(address="auto")
        @zray.remote
        def where():
            import os
            return os.environ.get("ZRAY_TMPDIR")
        @zray.remote
        class Counter:
            def __init__(self):
                self.n = 0
            def incr(self):
                self.n += 1
                return self.n
        c = Counter.remote()
        print(zray.get(where.remote()) is not None, zray.get([c.incr.remote() for _ in range(3)]),
              zray.cluster_resources()["CPU"])
    """)
    for i in range(3):
        out = hosts.run(i, [sys.executable, "-c", driver], env=dict(os.environ, ZRAY_TMPDIR=str(dirs[i])),
                        capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["True", "[1,", "2,", "3]", "3.0"]


def test_one_driver_runs_tasks_actors_and_objects_on_every_host_over_tcp(mesh):
    hosts, dirs, cli = mesh
    assert wait(lambda: all_alive(dirs, hosts), 15) is not None
    ids = [node_file_of(d)["node_id"] for d in dirs]
    driver = textwrap.dedent(f"""
        import zray
        from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
        zray.init(address="auto")
        ids = {ids!r}

        @zray.remote
        def host_of(x):
            import socket
            return zray.get_runtime_context().get_node_id(), x + 1

        @zray.remote
        class Box:
            def __init__(self):
                self.items = []
            def add(self, item):
                self.items.append(item)
                return len(self.items)
            def node(self):
                return zray.get_runtime_context().get_node_id()

        tasks = zray.get([host_of.options(scheduling_strategy=On(n, soft=False)).remote(i)
                          for i, n in enumerate(ids)])
        print("TASKS", tasks == [(n, i + 1) for i, n in enumerate(ids)])
        boxes = [Box.options(scheduling_strategy=On(n, soft=False)).remote() for n in ids]
        print("ACTORS", zray.get([b.node.remote() for b in boxes]) == ids,
              [zray.get([b.add.remote(k) for k in range(3)])[-1] for b in boxes])

        import numpy as np
        data = np.arange(4_000_000, dtype=np.int64)       # 32 MB: pulled across, in chunks
        ref = zray.put(data)

        @zray.remote
        def total(a):
            return zray.get_runtime_context().get_node_id(), int(a.sum()), a * 0 + 1

        made = [total.options(scheduling_strategy=On(n, soft=False)).remote(ref) for n in ids[1:]]
        results = zray.get(made)
        print("OBJECTS", [r[0] for r in results] == ids[1:],
              all(r[1] == int(data.sum()) for r in results),
              all(int(r[2].sum()) == len(data) for r in results))
    """)
    out = hosts.run(0, [sys.executable, "-c", driver], env=dict(os.environ, ZRAY_TMPDIR=str(dirs[0])),
                    capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "TASKS True" in out.stdout, out.stdout + out.stderr
    assert "ACTORS True [3, 3, 3]" in out.stdout, out.stdout + out.stderr
    assert "OBJECTS True True True" in out.stdout, out.stdout + out.stderr


def test_kill_9_of_a_host_node_is_detected(mesh):
    hosts, dirs, cli = mesh
    assert wait(lambda: all_alive(dirs, hosts), 15) is not None
    os.kill(node_file_of(dirs[2])["pid"], signal.SIGKILL)
    victim = hosts.addresses[2]
    took = wait(lambda: states(dirs, 0).get(victim) == "DEAD" and states(dirs, 1).get(victim) == "DEAD", 15)
    assert took is not None and took < 5.0, took


def test_partition_then_heal(mesh):
    hosts, dirs, cli = mesh
    assert wait(lambda: all_alive(dirs, hosts), 15) is not None
    hosts.cut(2)
    lonely = hosts.addresses[2]

    def split():
        return (states(dirs, 0).get(lonely) == "DEAD" and states(dirs, 1).get(lonely) == "DEAD" and
                states(dirs, 2).get(hosts.addresses[0]) == "DEAD" and
                states(dirs, 2).get(hosts.addresses[1]) == "DEAD")
    took = wait(split, 20)
    assert took is not None and took < 8.0, took
    hosts.heal(2)
    assert wait(lambda: all_alive(dirs, hosts), 30) is not None
