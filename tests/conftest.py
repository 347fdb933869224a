"""Fixtures that start real zray clusters (a node daemon and its worker processes).

- `zray_cluster(**init_kwargs)`: a factory; starts a private cluster for one test.
- `ray_start`: a private `zray.init(num_cpus=2)` for one test; parametrize it indirectly with a
  dict of init() arguments to change that.
- `shared_cluster`: one `zray.init(num_cpus=2)` kept for every test of a module that asks for it,
  for cheap tests that leave the cluster as they found it (no killed workers, no cancels).

zray is one cluster per process, so a test that wants a private cluster first stops the shared
one; the next test that asks for the shared one starts it again. Every cluster is shut down
after its test(s), even when the test failed, and its daemon must have exited.
"""
import os
import time

import pytest

import zray
from zray import api as _api

_shared = {"on": False}


def _daemon_pid():
    state = _api._state
    proc = getattr(state, "daemon_proc", None) if state is not None else None
    return proc.pid if proc is not None else None


def _shutdown_and_check():
    pid = _daemon_pid()
    zray.shutdown()
    if pid is None:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:   # the daemon is our child: reap it if shutdown() did not
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            return
        time.sleep(0.02)
    raise AssertionError(f"the node daemon (pid {pid}) is still alive after zray.shutdown()")


def _stop_any():
    if zray.is_initialized():
        _shutdown_and_check()
    _shared["on"] = False


@pytest.fixture
def zray_cluster():
    """Factory: zray_cluster(num_cpus=4, resources={...}) starts a private cluster."""
    started = []

    def start(**kwargs):
        _stop_any()
        kwargs.setdefault("num_cpus", 2)
        zray.init(**kwargs)
        started.append(True)
        return zray

    yield start
    if started:
        _stop_any()


@pytest.fixture
def ray_start(request, zray_cluster):
    """A private cluster; `@pytest.mark.parametrize("ray_start", [{...}], indirect=True)`."""
    params = dict(getattr(request, "param", None) or {})
    yield zray_cluster(**params)


@pytest.fixture(scope="module")
def _shared_module():
    yield
    if _shared["on"]:
        _stop_any()


@pytest.fixture
def shared_cluster(_shared_module):
    """The module's shared `zray.init(num_cpus=2)`, started on first use."""
    if not (_shared["on"] and zray.is_initialized()):
        _stop_any()
        zray.init(num_cpus=2)
        _shared["on"] = True
    yield zray


def wait_for(predicate, timeout=10.0, interval=0.02):
    """Poll until predicate() is true; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture
def poll():
    return wait_for
