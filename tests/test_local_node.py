"""A node started with `zray start` outlives its drivers: detached actors, address="auto",
`zray status`, `zray stop`."""
import os
import subprocess
import sys
import textwrap

import pytest


@pytest.fixture
def node(tmp_path):
    env = dict(os.environ, ZRAY_TMPDIR=str(tmp_path))

    def zray_cli(*args, check=True):
        return subprocess.run([sys.executable, "-m", "zray.scripts.cli", *args], env=env,
                              capture_output=True, text=True, timeout=60, check=check)

    def driver(code):
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    zray_cli("start", "--num-cpus", "2")
    yield zray_cli, driver, tmp_path
    zray_cli("stop", "--all", check=False)


def test_detached_actor_outlives_its_driver_and_is_found_by_name(node):
    zray_cli, driver, tmp = node
    out = driver("""
        import zray
        zray.init(address="auto", namespace="app")
        @zray.remote
        class Keeper:
            def __init__(self):
                self.n = 0
            def incr(self):
                self.n += 1
                return self.n
        k = Keeper.options(name="keeper", lifetime="detached").remote()
        print(zray.get(k.incr.remote()))
    """)
    assert out.split() == ["1"]
    out = driver("""
        import zray
        zray.init(address="auto", namespace="app")
        k = zray.get_actor("keeper")
        print(zray.get(k.incr.remote()))
    """)
    assert out.split() == ["2"]
    status = zray_cli("status").stdout
    assert "Keeper" in status and "ALIVE" in status and "keeper" in status
    driver("""
        import zray
        zray.init(address="auto", namespace="app")
        zray.kill(zray.get_actor("keeper"))
    """)
    out = driver("""
        import zray
        zray.init(address="auto", namespace="app")
        try:
            zray.get_actor("keeper")
        except ValueError:
            print("gone")
    """)
    assert out.split() == ["gone"]


def test_non_detached_actor_ends_with_its_driver(node):
    zray_cli, driver, tmp = node
    driver("""
        import zray
        zray.init(address="auto", namespace="app")
        @zray.remote
        class Temp:
            def ping(self):
                return 1
        t = Temp.options(name="temp").remote()
        assert zray.get(t.ping.remote()) == 1
    """)
    out = driver("""
        import zray, time
        zray.init(address="auto", namespace="app")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                zray.get_actor("temp")
            except ValueError:
                print("gone")
                break
            time.sleep(0.1)
    """)
    assert out.split() == ["gone"]


def test_two_drivers_share_the_node_and_options_are_rejected(node):
    zray_cli, driver, tmp = node
    out = driver("""
        import zray
        zray.init(address="auto")
        @zray.remote
        def f(x):
            return x * 3
        print(zray.get(f.remote(5)), zray.cluster_resources()["CPU"])
        try:
            zray.shutdown(); zray.init(address="auto", num_cpus=4)
        except ValueError as e:
            print("rejected")
    """)
    assert out.split() == ["15", "2.0", "rejected"]


def test_two_clusters_on_one_host_then_stop_cleans_up(node):
    """A second `zray start` is a second cluster: `auto` then names both, an address picks one,
    and `zray stop` stops exactly the one it is told."""
    zray_cli, driver, tmp = node
    from zray.node import local_node
    port = local_node.free_port("127.0.0.1")
    zray_cli("start", "--num-cpus", "1", "--port", str(port), "--node-ip-address", "127.0.0.1")
    ambiguous = zray_cli("status", check=False)
    assert ambiguous.returncode != 0 and "2 zray clusters run on this host" in ambiguous.stderr
    assert f"127.0.0.1:{port}" in ambiguous.stderr
    out = driver(f"""
        import zray
        zray.init(address="127.0.0.1:{port}")
        print(zray.cluster_resources()["CPU"])
    """)
    assert out.split() == ["1.0"]
    assert zray_cli("stop", "--address", f"127.0.0.1:{port}").stdout.strip() == "1 zray node stopped"
    assert zray_cli("stop").stdout.strip() == "1 zray node stopped"
    assert not os.path.exists(tmp / f"zray-{os.getuid()}")
    assert "found no running zray node" in zray_cli("status", check=False).stderr
    out = subprocess.run([sys.executable, "-c", "import zray; zray.init(address='auto')"],
                         env=dict(os.environ, ZRAY_TMPDIR=str(tmp)), capture_output=True, text=True)
    assert out.returncode != 0 and "zray start" in out.stderr


def test_zray_list_shows_nodes_actors_tasks_and_objects(node):
    import json
    zray_cli, driver, tmp = node
    script = """
        import zray, time, subprocess, sys, os, json
        zray.init(address="auto", namespace="app")
        @zray.remote
        class Holder:
            def ping(self):
                return 1
        @zray.remote
        def sleeper():
            time.sleep(30)
        h = Holder.options(name="holder").remote()
        zray.get(h.ping.remote())
        ref = zray.put(b"x" * (1 << 20))
        s = sleeper.remote()
        time.sleep(0.5)
        def listing(what):
            out = subprocess.run([sys.executable, "-m", "zray.scripts.cli", "list", what,
                                  "--format", "json"], capture_output=True, text=True,
                                 env=os.environ, check=True)
            return json.loads(out.stdout)
        print(json.dumps({w: listing(w) for w in ("nodes", "actors", "tasks", "objects")}))
        zray.cancel(s, force=True)
    """
    data = json.loads(driver(script).strip().splitlines()[-1])
    assert len(data["nodes"]) == 1 and data["nodes"][0]["state"] == "ALIVE"
    assert any(a["class_name"] == "Holder" and a["name"] == "holder" for a in data["actors"])
    assert any(t["name"] == "sleeper" and t["state"] == "RUNNING" for t in data["tasks"])
    assert any(o["object_size"] > (1 << 20) for o in data["objects"])
    table = zray_cli("list", "actors").stdout
    assert "CLASS_NAME" in table and "actors)" in table
