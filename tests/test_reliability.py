"""Regression tests of the reliability issue (issue 10): each fails before its fix.

Cheap checks share one cluster; the ones that kill or break processes start their own.
"""
import os
import threading
import time

import pytest

import zray
from zray import exceptions, options


# -- 7: num_returns is bounded ------------------------------------------------------------------------
def test_num_returns_is_bounded_with_a_clear_error():
    with pytest.raises(ValueError, match="num_returns must be at most"):
        @zray.remote(num_returns=2 ** 32)
        def f():
            pass

    @zray.remote
    def g():
        pass
    with pytest.raises(ValueError, match="at most"):
        g.options(num_returns=options.MAX_NUM_RETURNS + 1)


# -- 12: messages -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_resources_are_a_clear_value_error(value):
    with pytest.raises(ValueError, match="finite"):
        zray.remote(num_cpus=value)(lambda: None)
    with pytest.raises(ValueError, match="finite"):
        zray.remote(resources={"x": value})(lambda: None)
    with pytest.raises(ValueError, match="finite"):
        zray.init(num_cpus=value)
    assert not zray.is_initialized()


def test_call_shape_checks_like_python():
    def f(a, b=1, *, c, d=2):
        pass
    shape = options.call_shape(f)
    options.check_call(shape, (1,), {"c": 3}, "f")
    for args, kwargs, words in [((), {"c": 1}, "missing 1 required positional argument: 'a'"),
                                ((1, 2, 3), {"c": 1}, "takes 2 positional arguments but 3"),
                                ((1,), {}, "missing 1 required keyword-only argument: 'c'"),
                                ((1,), {"c": 1, "e": 2}, "unexpected keyword argument 'e'"),
                                ((1,), {"a": 1, "c": 1}, "multiple values for argument 'a'")]:
        with pytest.raises(TypeError, match=words):
            options.check_call(shape, args, kwargs, "f")
    options.check_call(options.call_shape(lambda *a, **k: None), (1, 2), {"x": 1}, "g")
    assert options.call_shape(len) is None or True      # builtins: checked if they have one


def test_wrong_arguments_raise_type_error_at_remote(shared_cluster):
    @zray.remote
    def f(a, b):
        return a + b

    @zray.remote
    class A:
        def __init__(self, x):
            self.x = x

        def m(self, y):
            return self.x + y

        @staticmethod
        def s(y):
            return y

    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        f.remote(1)
    with pytest.raises(TypeError, match="takes 2 positional arguments but 3"):
        f.options(name="x").remote(1, 2, 3)
    with pytest.raises(TypeError, match="missing 1 required"):
        A.remote()
    a = A.remote(1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        a.m.remote(z=1)
    assert zray.get(a.m.remote(2), timeout=60) == 3
    assert zray.get(a.s.remote(5), timeout=60) == 5
    assert zray.get(f.remote(1, b=2), timeout=60) == 3


def test_get_of_a_non_ref_is_a_value_error(shared_cluster):
    with pytest.raises(ValueError):
        zray.get(1)
    with pytest.raises(ValueError):
        zray.get([zray.put(1), 2])


def test_actor_died_error_never_ends_in_none(zray_cluster):
    zray_cluster(num_cpus=1)

    @zray.remote(max_restarts=1)
    class A:
        def pid(self):
            return os.getpid()

        def hang(self):
            time.sleep(300)

    a = A.remote()
    pid = zray.get(a.pid.remote(), timeout=60)
    ref = a.hang.remote()
    time.sleep(0.5)
    os.kill(pid, 9)
    with pytest.raises(exceptions.ActorDiedError) as info:
        zray.get(ref, timeout=60)
    text = str(info.value)
    assert not text.rstrip().endswith("None"), text
    assert "SIGKILL" in text, text


def test_worker_crashed_error_names_the_signal_and_the_exit_code(shared_cluster):
    @zray.remote(max_retries=0)
    def die(how):
        if how == "signal":
            os.kill(os.getpid(), 9)
        os._exit(7)

    with pytest.raises(exceptions.WorkerCrashedError, match=r"killed by signal 9 \(SIGKILL\)"):
        zray.get(die.remote("signal"), timeout=60)
    with pytest.raises(exceptions.WorkerCrashedError, match="exited with code 7"):
        zray.get(die.remote("exit"), timeout=60)


# -- 9: log loss never fails user code ----------------------------------------------------------------
def test_print_on_a_full_disk_does_not_fail_the_task(shared_cluster):
    @zray.remote(max_retries=0)
    def noisy():
        full = os.open("/dev/full", os.O_WRONLY)
        saved = os.dup(1)
        os.dup2(full, 1)
        try:
            for i in range(3):
                print("line", i)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(full)
        return "ok"

    assert zray.get(noisy.remote(), timeout=60) == "ok"


# -- e: futures complete on the callback path, no thread per completion -------------------------------
def test_futures_do_not_start_a_thread_each(shared_cluster, monkeypatch):
    @zray.remote
    def one(i):
        return i

    zray.get(one.remote(0), timeout=60)
    started = []
    original = threading.Thread.start

    def counting_start(self):
        started.append(self.name)
        return original(self)
    monkeypatch.setattr(threading.Thread, "start", counting_start)
    refs = [one.remote(i) for i in range(20)] + [zray.put(i) for i in range(20)]
    futures = [r.future() for r in refs]
    assert [f.result(timeout=60) for f in futures] == list(range(20)) * 2
    assert started == [], started


def test_await_ref_and_futures_of_stored_values(shared_cluster):
    import asyncio
    import numpy as np
    big = zray.put(np.arange(1_000_000))

    async def main():
        return await big, await zray.put(3)
    array, three = asyncio.run(main())
    assert array[-1] == 999_999 and three == 3
    assert big.future().result(timeout=60)[0] == 0

    @zray.remote
    def fail():
        raise KeyError("k")
    with pytest.raises(KeyError):
        fail.remote().future().result(timeout=60)


# -- c: async generator methods stream ----------------------------------------------------------------
def test_async_generator_method_streams(shared_cluster):
    @zray.remote
    class A:
        async def gen(self, n):
            for i in range(n):
                yield i

        async def broken(self):
            yield "first"
            raise ValueError("after one")

    a = A.remote()
    assert [zray.get(r, timeout=30) for r in a.gen.remote(3)] == [0, 1, 2]
    got = []
    with pytest.raises(ValueError, match="after one"):
        for r in a.broken.remote():
            got.append(zray.get(r, timeout=30))
    assert got == ["first"]


# -- a, b: an actor's death and its calls, whatever order the notices come in -------------------------
def test_kill_then_call_always_raises(shared_cluster):
    @zray.remote
    class C:
        def ping(self):
            return 1

    for _ in range(5):
        c = C.remote()
        assert zray.get(c.ping.remote(), timeout=60) == 1
        zray.kill(c)
        with pytest.raises(exceptions.ActorDiedError, match="killed by `ray.kill`"):
            zray.get(c.ping.remote(), timeout=60)


def test_terminate_after_queued_calls_keeps_their_results(shared_cluster):
    @zray.remote
    class C:
        def __init__(self):
            self.n = 0

        def incr(self):
            self.n += 1
            return self.n

    for _ in range(5):
        c = C.remote()
        refs = [c.incr.remote() for _ in range(10)]
        c.__ray_terminate__.remote()
        assert zray.get(refs, timeout=60) == list(range(1, 11))
        with pytest.raises(exceptions.RayActorError):
            zray.get(c.incr.remote(), timeout=60)


# -- 1: get of a ref whose owner is dead (or never was) ----------------------------------------------
def test_get_after_the_owner_died_raises_owner_died(zray_cluster):
    zray_cluster(num_cpus=2)

    @zray.remote
    class Maker:
        def make(self):
            return [zray.put("owned by the actor")]

    m = Maker.remote()
    (inner,) = zray.get(m.make.remote(), timeout=60)
    zray.kill(m)
    time.sleep(1.0)       # the death is announced before the first get of `inner`
    with pytest.raises(exceptions.OwnerDiedError):
        zray.get(inner, timeout=30)

    @zray.remote
    def read(refs):
        try:
            return zray.get(refs[0], timeout=30)
        except exceptions.OwnerDiedError:
            return "owner died"
    assert zray.get(read.remote([inner]), timeout=60) == "owner died"


def test_get_of_a_fabricated_ref_fails(shared_cluster):
    from zray.objects.object_ref import ObjectRef
    session = zray.get_runtime_context()
    ref = ObjectRef(os.urandom(16), "ipc:///nonexistent/zray/sock/dnobody")
    with pytest.raises(exceptions.OwnerDiedError):
        zray.get(ref, timeout=30)
    del session


# -- 4: every failure path of the executor ends in a reported error ----------------------------------
class _Unspeakable(Exception):
    """Cannot be pickled, and its __str__ (and repr) raise."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()      # unpicklable

    def __str__(self):
        raise RuntimeError("no str")

    def __repr__(self):
        raise RuntimeError("no repr")


def test_an_exception_that_neither_pickles_nor_prints_is_reported(shared_cluster):
    @zray.remote(max_retries=0)
    def bad():
        raise _Unspeakable()

    @zray.remote
    class A:
        def bad(self):
            raise _Unspeakable()

    with pytest.raises(exceptions.RayError, match="_Unspeakable"):
        zray.get(bad.remote(), timeout=60)
    a = A.remote()
    with pytest.raises(exceptions.RayError, match="_Unspeakable"):
        zray.get(a.bad.remote(), timeout=60)

    @zray.remote
    def ok():
        return 1
    assert zray.get([ok.remote() for _ in range(4)], timeout=60) == [1] * 4


def test_a_worker_that_dies_after_finishing_never_leaves_its_owner_waiting():
    """The scheduler's part: a death after TASK_FINISHED fails the task it last finished (the
    owner ignores that when the result did arrive)."""
    from zray.scheduling.local_scheduler import Dispatch, Failed, LocalScheduler, Task
    from zray.scheduling.task_spec import TaskSpec
    scheduler = LocalScheduler({"CPU": 10_000})
    spec = TaskSpec(b"t" * 12, "job", "f", b"fn", [], [], 1, {"CPU": 10_000}, 0, False, "owner")
    scheduler.handle_worker_started("w", "job", "addr", 1)
    actions = scheduler.handle_task_submitted(Task(spec, []))
    assert any(isinstance(a, Dispatch) for a in actions)
    scheduler.handle_task_finished("w")
    died = scheduler.handle_worker_died("w")
    assert [type(a) for a in died if isinstance(a, Failed)] == [Failed]


# -- 2: the worker cap: actors do not count, the limit is named ---------------------------------------
def test_many_actors_leave_room_for_tasks_and_the_cap_is_named(tmp_path):
    import subprocess
    import sys
    code = (
        "import time, zray\n"
        "zray.init(num_cpus=4)\n"
        "@zray.remote(num_cpus=0)\n"
        "class A:\n"
        "    def ping(self):\n"
        "        return 1\n"
        "actors = [A.remote() for _ in range(3)]\n"
        "assert zray.get([a.ping.remote() for a in actors], timeout=120) == [1, 1, 1]\n"
        "@zray.remote\n"
        "def slow(t):\n"
        "    time.sleep(t)\n"
        "    return t\n"
        "print(zray.get([slow.remote(0.5), slow.remote(0.5)], timeout=120))\n"
        "zray.shutdown()\n")
    env = dict(os.environ, ZRAY_MAX_WORKERS="1", ZRAY_TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[0.5,", "0.5]"]
    assert "maximum of 1 task worker processes" in out.stderr
    assert "ZRAY_MAX_WORKERS" in out.stderr


# -- 11: a worker forked as its zygote dies does not outlive it ---------------------------------------
def test_a_worker_whose_zygote_died_before_it_was_armed_exits():
    import subprocess
    import sys
    code = (
        "import os, time\n"
        "from zray.node.zygote import start_child\n"
        "r, w = os.pipe()\n"
        "zygote = os.fork()\n"
        "if zygote == 0:\n"
        "    parent = os.getpid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(0.5)          # the zygote dies in this window\n"
        "        os.write(w, b'lives' if start_child(parent) else b'exits')\n"
        "        os._exit(0)\n"
        "    os._exit(0)\n"
        "os.waitpid(zygote, 0)\n"
        "os.close(w)\n"
        "print(os.read(r, 10).decode())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert out.stdout.strip() == "exits", out.stderr


def test_a_crashed_node_keeps_its_logs_and_says_where(zray_cluster, capfd):
    """Issue 10, defect 5: the session directory, logs included, must not go with a node
    daemon that crashed; the sockets, spill files and secret go."""
    import shutil
    import signal
    from zray import api
    zray_cluster(num_cpus=1)
    node = api._state.daemon_proc
    session_dir = node.spec.session_dir

    @zray.remote
    def hello():
        print("a line in a worker's log")
        return 1
    assert zray.get(hello.remote()) == 1
    os.kill(node.pid, signal.SIGKILL)
    node.proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while not node.crashed and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        capfd.readouterr()
        zray.shutdown()
        logs = os.path.join(session_dir, "logs")
        assert sorted(os.listdir(session_dir)) == ["logs"]
        assert any(name.startswith("node") for name in os.listdir(logs))
        err = capfd.readouterr().err      # the user-facing warning
        assert logs in err and "died" in err, err
    finally:
        shutil.rmtree(session_dir, ignore_errors=True)


def test_a_clean_shutdown_leaves_no_session(zray_cluster):
    from zray import api
    zray_cluster(num_cpus=1)
    session_dir = api._state.daemon_proc.spec.session_dir
    zray.shutdown()
    assert not os.path.exists(session_dir)


def test_a_stale_node_file_of_a_crashed_zray_start_node_keeps_its_logs(tmp_path):
    import shutil
    import signal
    from helpers.nodes import cli, node_file_of
    d = tmp_path / "n"
    d.mkdir()
    cli(d, "start", "--num-cpus", "1")
    info = node_file_of(d)
    os.kill(info["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{info['pid']}") and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        out = cli(d, "status", check=False)
        assert sorted(os.listdir(info["session"])) == ["logs"], out.stderr
        assert os.path.join(info["session"], "logs") in out.stderr
    finally:
        shutil.rmtree(info["session"], ignore_errors=True)
