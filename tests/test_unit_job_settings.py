"""A worker's view of its job's settings (core/context.py, core/job_info.py)."""
from zray.core.context import ProcessContext


def _worker_context(answers):
    ctx = ProcessContext("worker", "ipc:///nowhere", "job1", None, None, None, "/tmp")
    ctx.load_job = lambda: answers.pop(0)
    return ctx


def test_a_miss_before_the_driver_published_is_not_kept():
    # Seen in CI: a worker of the job asked before its driver's init() had published, kept
    # the miss, and an actor then reported namespace None.
    ctx = _worker_context([{}, {"namespace": "ns", "default_actor_lifetime": "detached"}])
    assert ctx.namespace is None
    assert ctx.namespace == "ns"
    assert ctx.job_settings()["default_actor_lifetime"] == "detached"


def test_published_settings_are_read_once():
    ctx = _worker_context([{"namespace": "ns"}])
    assert ctx.namespace == "ns" and ctx.namespace == "ns"    # a second load would pop nothing
