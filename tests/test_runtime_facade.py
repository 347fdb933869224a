"""The runtime facade (zray/core/runtime.py) on a real cluster, replies that cannot be sent,
and the bootstrap's failure paths."""
import os
import sys
import threading
import time

import pytest

import zray
from zray import exceptions
from zray.core import runtime
from zray.node import bootstrap, session


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("this object refuses to be pickled")


@zray.remote
class _Replier:
    def lock(self):
        return threading.Lock()

    def refuses(self):
        return _Unpicklable()

    def fine(self):
        return 1


@zray.remote
class _AsyncReplier:
    async def refuses(self):
        return _Unpicklable()


@zray.remote
def _returns_lock():
    return threading.Lock()


def _double(x):
    return 2 * x


def test_unpicklable_replies_become_clear_errors_at_the_callers_get(shared_cluster):
    actor = _Replier.remote()
    with pytest.raises(Exception, match="lock"):
        zray.get(actor.lock.remote(), timeout=60)
    with pytest.raises(Exception, match="refuses to be pickled"):
        zray.get(actor.refuses.remote(), timeout=60)
    assert zray.get(actor.fine.remote(), timeout=60) == 1      # the actor lives on
    with pytest.raises(Exception, match="refuses to be pickled"):
        async_actor = _AsyncReplier.remote()
        zray.get(async_actor.refuses.remote(), timeout=60)
    with pytest.raises(Exception, match="lock"):
        zray.get(_returns_lock.remote(), timeout=60)


def test_facade_identity_and_objects(shared_cluster):
    rt = runtime.current()
    assert rt is runtime.current()
    assert not rt.is_worker and rt.current_task() is None and rt.current_actor() is None
    assert rt.job_id and rt.node_id and rt.address.startswith(("ipc://", "tcp://"))
    ref = rt.put({"a": 1})
    assert rt.get([ref], timeout=30) == [{"a": 1}]
    ready, not_ready = rt.wait([ref], num_returns=1, timeout=30)
    assert ready == [ref] and not_ready == []
    [doubled] = rt.submit(_double, (21,), name="double")
    assert rt.get([doubled], timeout=60) == [42]


def test_facade_inside_a_task_and_an_actor(shared_cluster):
    @zray.remote
    def where():
        rt = runtime.current()
        task = rt.current_task()
        return rt.is_worker, task.name, rt.current_actor()

    assert zray.get(where.options(name="named").remote(), timeout=60) == (True, "named", None)

    @zray.remote
    class Where:
        def info(self):
            actor = runtime.current().current_actor()
            return actor.class_name, actor.actor_id

    w = Where.remote()
    name, actor_id = zray.get(w.info.remote(), timeout=60)
    assert name == "Where" and actor_id == w._actor_id


def test_register_handlers_checks_the_range_and_duplicates(shared_cluster):
    rt = runtime.current()
    with pytest.raises(ValueError, match="outside the range"):
        rt.register_handlers(range(200, 210), {199: lambda s, p, f: None})
    handler = lambda s, p, f: None   # noqa: E731
    rt.register_handlers(range(250, 260), {250: handler})
    rt.register_handlers(range(250, 260), {250: handler})   # the same handler again: fine
    with pytest.raises(ValueError, match="already has a handler"):
        rt.register_handlers(range(250, 260), {250: lambda s, p, f: None})


def test_a_message_to_ourselves_reaches_our_handler_and_wait_until_sees_it(shared_cluster):
    rt = runtime.current()
    got = []
    rt.register_handlers(range(260, 270), {261: lambda sender, payload, frames: got.append(payload)})
    assert rt.wait_until(lambda: got, timeout=0.05) is False
    rt.send(rt.address, 261, ("hello",))
    assert rt.wait_until(lambda: got, timeout=30) is True
    assert got == [("hello",)]
    with pytest.raises(ValueError):
        rt.wait_until(lambda: True, timeout=None)


def test_current_without_init_raises_and_autostart_starts():
    if zray.is_initialized():
        zray.shutdown()
    with pytest.raises(exceptions.RaySystemError, match="not initialized"):
        runtime.current()
    try:
        rt = runtime.current(autostart=True)
        assert zray.is_initialized() and rt.node_id
    finally:
        zray.shutdown()


def _spec(**kwargs):
    session_dir = session.create_session_dir()
    return bootstrap.NodeSpec(session_dir=session_dir, num_cpus=1,
                              object_store_memory=64 << 20, **kwargs)


def test_bootstrap_aborted_start_kills_the_daemon_and_names_the_reason():
    spec = _spec()
    try:
        with pytest.raises(bootstrap.NodeStartError, match="aborted: rank 3 failed"):
            bootstrap.start_node(spec, timeout=60, abort=lambda: "rank 3 failed")
    finally:
        session.remove_session_dir(spec.session_dir)


def test_bootstrap_a_daemon_that_exits_is_an_error_with_its_stderr():
    spec = _spec(resources={"bad": "not a number"})
    try:
        with pytest.raises(bootstrap.NodeStartError, match="exit code"):
            bootstrap.start_node(spec, timeout=60)
    finally:
        session.remove_session_dir(spec.session_dir)


def test_bootstrap_starts_a_node_that_stops_with_its_driver_gone():
    spec = _spec(driver_pid=os.getpid())
    node = bootstrap.start_node(spec, timeout=60)
    try:
        assert node.alive()
        assert os.path.exists(node.address[len("ipc://"):])
    finally:
        node.proc.terminate()
        node.stop()
        session.remove_session_dir(spec.session_dir)
    assert not node.alive()


@pytest.mark.parametrize("bad", [dict(num_cpus=-1), dict(port=70000), dict(object_store_memory=10)])
def test_node_spec_checks_its_bounds(bad):
    fields = dict(session_dir="/tmp/x", num_cpus=1, object_store_memory=64 << 20)
    fields.update(bad)
    with pytest.raises(ValueError):
        bootstrap.NodeSpec(**fields)


def test_node_spec_command_line():
    spec = bootstrap.NodeSpec(session_dir="/s", num_cpus=2, object_store_memory=1 << 30,
                              port=6380, join="h:1", job_id="j", prestart=2)
    cmd = spec.command(7)
    assert cmd[:3] == [sys.executable, "-m", "zray.node.daemon"]
    text = " ".join(cmd)
    for part in ("--session /s", "--num-cpus 2", "--port 6380", "--join h:1", "--job-id j",
                 "--prestart 2", "--ready-fd 7", "--remove-session-on-exit"):
        assert part in text
    assert "--driver-pid" not in text and "--secret-file" not in text


def test_import_zray_stays_light():
    import subprocess
    code = ("import sys, time; t = time.perf_counter(); import zray; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'psutil', 'zray.node.daemon', 'zray.util.queue')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
                             os.path.abspath(zray.__file__)))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_driver_logs_go_to_the_session_and_warnings_to_stderr_once(tmp_path):
    import subprocess
    script = tmp_path / "drv.py"
    script.write_text(
        "import logging, os, zray\n"
        "zray.init(num_cpus=1)\n"
        "@zray.remote(num_cpus=100)\n"
        "def huge():\n    return 1\n"
        "refs = [huge.remote() for _ in range(3)]\n"
        "import time; time.sleep(3)\n"
        "logging.getLogger('zray.core').info('core says hi')\n"
        "print('SESSION', zray.api._state.session_dir, os.getpid(), flush=True)\n"
        "print('LOG', open(os.path.join(zray.api._state.session_dir, 'logs', "
        "f'driver-{os.getpid()}.log')).read(), flush=True)\n"
        "zray.shutdown()\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(zray.__file__))))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if "huge" in line]
    assert len(warnings) == 1 and warnings[0].startswith("zray: WARNING:"), out.stderr
    assert "core says hi" in out.stdout and "zray.core" in out.stdout
