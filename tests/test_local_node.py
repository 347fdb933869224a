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
    zray_cli("stop", check=False)


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


def test_start_twice_fails_and_stop_cleans_up(node):
    zray_cli, driver, tmp = node
    again = zray_cli("start", check=False)
    assert again.returncode != 0 and "already running" in again.stderr
    assert zray_cli("stop").stdout.strip() == "zray node stopped"
    assert not os.path.exists(tmp / f"zray-{os.getuid()}")
    assert "no zray node" in zray_cli("status", check=False).stdout
    out = subprocess.run([sys.executable, "-c", "import zray; zray.init(address='auto')"],
                         env=dict(os.environ, ZRAY_TMPDIR=str(tmp)), capture_output=True, text=True)
    assert out.returncode != 0 and "zray start" in out.stderr
