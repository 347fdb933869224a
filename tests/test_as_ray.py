"""`ray` as an alias of zray: install_as_ray() and `python -m zray.as_ray app.py`.

Each check runs in a fresh interpreter: the alias changes sys.modules for good, and it must be
opt-in (a plain `import zray` leaves `ray` alone)."""
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(args, cwd=None, timeout=180):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("RAY_ADDRESS", None)
    env.pop("ZRAY_ADDRESS", None)
    return subprocess.run([sys.executable] + args, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def run_code(code, **kwargs):
    return run_python(["-c", textwrap.dedent(code)], **kwargs)


def test_import_zray_does_not_make_ray_importable():
    out = run_code("""
        import sys, zray
        try:
            import ray
        except ModuleNotFoundError:
            print("no ray")
        else:
            print("ray is", ray.__file__)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no ray"


def test_every_ray_name_is_the_zray_module_object():
    out = run_code("""
        import sys
        import zray
        import zray.util.queue                      # loaded before: reachable as ray.util.queue
        assert zray.install_as_ray() is zray
        import ray
        import ray.util.collective, ray.train, ray.tune, ray.data, ray.serve, ray.rllib
        import ray.util.multiprocessing, ray.exceptions, ray.util.scheduling_strategies
        from ray.util.queue import Queue
        from ray.util.collective import allreduce
        from ray.air import session
        assert ray is zray
        assert sys.modules["ray.util.queue"] is zray.util.queue
        assert ray.util.collective is zray.util.collective
        assert allreduce is zray.util.collective.allreduce
        for lib in ("train", "tune", "data", "serve", "rllib"):
            assert sys.modules["ray." + lib] is getattr(zray, lib), lib
        assert ray.exceptions.RayTaskError is zray.exceptions.RayTaskError
        assert ray.util.multiprocessing.Pool is zray.util.multiprocessing.Pool
        assert session is zray.train.session
        assert Queue is zray.util.queue.Queue
        # The modules keep their own identity (names and specs are zray's).
        assert zray.__spec__.name == "zray" and zray.data.__spec__.name == "zray.data"
        assert ray.data.__name__ == "zray.data"
        zray.install_as_ray()                        # idempotent
        print("ok")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_names_being_built_elsewhere_resolve_when_they_exist():
    # ray.job_submission and ray.util.state map to zray.job_submission / zray.util.state.
    out = run_code("""
        import importlib.util, zray
        zray.install_as_ray()
        for ray_name, zray_name in (("ray.job_submission", "zray.job_submission"),
                                    ("ray.util.state", "zray.util.state")):
            if importlib.util.find_spec(zray_name) is None:
                try:
                    importlib.import_module(ray_name)
                except ModuleNotFoundError as exc:
                    assert ray_name in str(exc) and zray_name in str(exc), exc
                    print(ray_name, "missing")
                else:
                    raise AssertionError(ray_name)
            else:
                assert importlib.import_module(ray_name) is importlib.import_module(zray_name)
                print(ray_name, "same")
    """.replace("importlib.util, zray", "importlib, importlib.util, zray"))
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split("\n")) >= 2


def test_unknown_ray_module_raises_module_not_found():
    out = run_code("""
        import zray
        zray.install_as_ray()
        try:
            import ray.no_such_library
        except ModuleNotFoundError as exc:
            assert exc.name == "ray.no_such_library", exc.name
            print("missing:", exc)
        import ray
        ray.init(num_cpus=1)
        print(ray.get(ray.put(5)))
        ray.shutdown()
    """)
    assert out.returncode == 0, out.stderr
    assert "missing: No module named 'ray.no_such_library'" in out.stdout
    assert out.stdout.strip().endswith("5")


def test_refuses_when_a_real_ray_is_already_imported():
    out = run_code("""
        import sys, types, zray
        sys.modules["ray"] = types.ModuleType("ray")     # stands for a real Ray, imported first
        try:
            zray.install_as_ray()
        except RuntimeError as exc:
            print("refused:", exc)
        del sys.modules["ray"]
        zray.install_as_ray()
        import ray
        assert ray is zray
    """)
    assert out.returncode == 0, out.stderr
    assert "refused: install_as_ray(): a module named 'ray' is already imported" in out.stdout


def test_lazy_libraries_after_import_zray():
    out = run_code("""
        import sys, zray
        assert "zray.data" not in sys.modules and "zray.tune" not in sys.modules
        assert "zray.util.multiprocessing" not in sys.modules
        assert zray.data.__name__ == "zray.data" and "zray.data" in sys.modules
        assert zray.tune is sys.modules["zray.tune"]
        assert zray.util.multiprocessing.Pool is not None
        try:
            zray.no_such_thing
        except AttributeError:
            print("ok")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


APP = """
import sys
import ray
from ray.util.queue import Queue

@ray.remote
def square(x):
    return x * x

@ray.remote
class Counter:
    def __init__(self):
        self.n = 0
    def add(self, k):
        self.n += k
        return self.n

if __name__ == "__main__":
    ray.init(num_cpus=1)
    assert ray.__name__ == "zray"
    print("argv", sys.argv[1:])
    print("squares", ray.get([square.remote(i) for i in range(4)]))
    c = Counter.remote()
    print("counter", ray.get([c.add.remote(1), c.add.remote(2)]))
    ray.shutdown()
    sys.exit(int(sys.argv[-1]))
"""


def test_python_m_zray_as_ray_runs_an_unchanged_ray_program(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(APP)
    out = run_python(["-m", "zray.as_ray", str(app), "--flag", "3"], cwd=str(tmp_path))
    assert out.returncode == 3, out.stderr        # the app's exit code is ours
    assert "argv ['--flag', '3']" in out.stdout
    assert "squares [0, 1, 4, 9]" in out.stdout
    assert "counter [1, 3]" in out.stdout


def test_python_m_zray_as_ray_runs_a_module(tmp_path):
    (tmp_path / "rayapp.py").write_text(APP)
    out = run_python(["-m", "zray.as_ray", "-m", "rayapp", "0"], cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "squares [0, 1, 4, 9]" in out.stdout


@pytest.mark.parametrize("args, text", [([], "usage"), (["/no/such/app.py"], "no such file"),
                                        (["-m"], "usage")])
def test_python_m_zray_as_ray_bad_usage(args, text):
    out = run_python(["-m", "zray.as_ray"] + args)
    assert out.returncode == 2
    assert text in out.stderr
