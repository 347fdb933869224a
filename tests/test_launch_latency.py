"""What keeps `python -m zray.launch` fast (benchmarks/launch.py measures it): the package's API
loads lazily, so the launcher and the node daemon start without it; concurrent queries of one
process to its node each get their own reply (the launcher's watcher and serving loop)."""
import os
import subprocess
import sys
import threading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_daemon_and_the_launcher_do_not_import_the_driver_api():
    out = _python("import sys, zray.node.daemon, zray.launch.launcher; "
                  "print(sorted(m for m in ('zray.api', 'zray.actor', 'zray.util', 'asyncio') "
                  "if m in sys.modules))")
    assert out.strip() == "[]"


def test_the_lazy_api_is_the_whole_api():
    out = _python(
        "import zray, zray.api, zray.objects.object_ref as o\n"
        "assert zray.init is zray.api.init and zray.remote is zray.api.remote\n"
        "assert zray.ObjectRef is o.ObjectRef and zray.method.__module__ == 'zray.actor'\n"
        "assert zray.util.ActorPool and zray.exceptions.RayTaskError\n"
        "from zray import get, put, wait, ObjectRefGenerator\n"
        "assert set(zray.__all__) <= set(dir(zray))\n"
        "ns = {}; exec('from zray import *', ns)\n"
        "assert all(name in ns for name in zray.__all__)\n"
        "try:\n    zray.no_such_thing\nexcept AttributeError as e:\n    print('ERR', e)\n")
    assert "ERR module 'zray' has no attribute 'no_such_thing'" in out


def test_a_forked_worker_has_the_api_already(zray_cluster):
    """The zygote loads the whole API once (worker_main.preload): a task's `zray.get` does not
    import it again in each worker."""
    zray = zray_cluster(num_cpus=1)

    @zray.remote
    def loaded():
        return "zray.api" in sys.modules and "zray.util.actor_pool" in sys.modules

    assert zray.get(loaded.remote(), timeout=60) is True


def test_threads_of_one_process_query_its_node_at_once(zray_cluster):
    import zray.api
    from zray.node import local_node
    from zray.transport import wire
    zray_cluster(num_cpus=1)
    session_dir = zray.api._state.session_dir
    info = local_node.find_node(os.path.join(session_dir, "node.json"))
    errors, answers = [], []

    def ask():
        for _ in range(8):
            try:
                answers.append(local_node.query(wire.CLUSTER_INFO, info, timeout=5.0)["nodes"])
            except Exception as exc:       # a reply sent to another thread's socket: a timeout
                errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(answers) == 32
    leftovers = [f for f in os.listdir(os.path.join(session_dir, "sock"))
                 if f.startswith("q")]
    assert leftovers == []


def test_subpackages_are_attributes_as_before():
    out = _python("import zray\n"
                  "print(zray.api.init is zray.init, zray.objects.object_ref.ObjectRef is "
                  "zray.ObjectRef, hasattr(zray, '__wrapped__'), hasattr(zray, 'no_such'))")
    assert out.split() == ["True", "True", "False", "False"]
