"""The owner table (zray/core/owner_table.py) driven without processes or sockets: submission,
one retry budget, lineage, cancellation and generator items, as events in and records out."""
import pytest

from zray import exceptions
from zray.core import owner_table as ot
from zray.scheduling.task_spec import STREAMING, TaskSpec

_ids = iter(range(1, 10**6))


def _task(max_retries=0, num_returns=1, parent=b"p" * 12, actor=None):
    task_id = next(_ids).to_bytes(12, "big")
    spec = TaskSpec(task_id, "job", "f", b"fid", [], [], num_returns, {}, max_retries, False,
                    "ipc://owner")
    return ot.PendingTask(spec, [], [(b"arg" + task_id, "ipc://owner")], parent, actor)


def _submitted(table, **kwargs):
    task = _task(**kwargs)
    table.submitted(task)
    return task


def test_a_result_completes_the_task_and_finishing_releases_its_arguments():
    table = ot.OwnerTable()
    task = _submitted(table)
    assert table.result(task.spec.task_id, 0, retryable=False) == ot.Complete(task)
    release = table.finished(task, results_elsewhere=False)
    assert release == ot.Release((b"arg" + task.spec.task_id,))
    assert table.get(task.spec.task_id) is None


def test_a_reply_from_a_superseded_attempt_is_ignored():
    table = ot.OwnerTable()
    task = _submitted(table, max_retries=1)
    assert table.failed(task.spec.task_id, 0, "worker_died", "") == ot.Retry(task)
    assert table.result(task.spec.task_id, 0, retryable=False) is None   # attempt 0 is gone
    assert table.result(task.spec.task_id, 1, retryable=False) == ot.Complete(task)


def test_one_budget_is_spent_by_crashes_and_retryable_errors_alike():
    table = ot.OwnerTable()
    task = _submitted(table, max_retries=2)
    tid = task.spec.task_id
    assert isinstance(table.failed(tid, 0, "worker_died", ""), ot.Retry)
    assert isinstance(table.result(tid, 1, retryable=True), ot.Retry)
    assert table.result(tid, 2, retryable=True) == ot.Complete(task)    # budget spent
    assert task.spec.attempt == 2


def test_no_budget_left_fails_with_the_reason_and_the_count_of_retries():
    table = ot.OwnerTable()
    task = _submitted(table, max_retries=1)
    tid = task.spec.task_id
    table.failed(tid, 0, "worker_died", "")
    action = table.failed(tid, 1, "node_died", "node n1 is gone")
    assert isinstance(action, ot.Fail)
    assert isinstance(action.error, exceptions.NodeDiedError)
    assert "retried 1 times" in str(action.error) and "node n1 is gone" in str(action.error)
    crash = table.failed(_submitted(table).spec.task_id, 0, "worker_died", "segfault")
    assert isinstance(crash.error, exceptions.WorkerCrashedError)


def test_infinite_retries_never_run_out():
    table = ot.OwnerTable()
    task = _submitted(table, max_retries=-1)
    for attempt in range(50):
        assert isinstance(table.failed(task.spec.task_id, attempt, "worker_died", ""), ot.Retry)


def test_unschedulable_and_cancelled_failures_are_not_retried():
    table = ot.OwnerTable()
    task = _submitted(table, max_retries=5)
    action = table.failed(task.spec.task_id, 0, "unschedulable", "needs 100 CPU")
    assert isinstance(action.error, exceptions.TaskUnschedulableError)
    task = _submitted(table, max_retries=5)
    assert isinstance(table.failed(task.spec.task_id, 0, "cancelled", None).error,
                      exceptions.TaskCancelledError)


def test_a_cancelled_task_is_not_retried_even_when_retryable():
    table = ot.OwnerTable()
    task = _submitted(table, max_retries=3)
    table.mark_sent(task)
    assert table.cancel(task.spec.task_id, False, True) == ot.CancelSent(task, False, True)
    assert table.result(task.spec.task_id, 0, retryable=True) == ot.Complete(task)


def test_cancel_before_sending_fails_here_once_and_after_sending_asks_the_node():
    table = ot.OwnerTable()
    unsent = _submitted(table)
    assert table.cancel(unsent.spec.task_id) == ot.CancelUnsent(unsent)
    assert table.cancel(unsent.spec.task_id) is None          # the second cancel: nothing
    actor_call = _submitted(table, actor=object())
    assert table.cancel(actor_call.spec.task_id, force=False) == ot.CancelActorCall(actor_call, False)
    assert table.cancel(b"unknown task") is None


def test_dependencies_send_the_task_once_the_last_one_is_ready():
    table = ot.OwnerTable()
    task = _task()
    table.submitted(task, n_deps=2)
    assert table.dependency_resolved(task) is None
    assert table.dependency_resolved(task) == ot.Send(task)
    assert task.sent


def test_a_failed_dependency_fails_the_task_once():
    table = ot.OwnerTable()
    task = _task()
    table.submitted(task, n_deps=2)
    err = ValueError("bad argument")
    assert table.dependency_failed(task, err) == ot.Fail(task, err)
    assert table.dependency_failed(task, err) is None
    assert table.dependency_resolved(task) is None


def test_results_on_another_node_keep_lineage_and_a_lost_node_runs_the_task_again():
    table = ot.OwnerTable()
    task = _submitted(table, max_retries=1)
    tid = task.spec.task_id
    table.result(tid, 0, retryable=False)
    assert table.finished(task, results_elsewhere=True) == ot.Release(())    # arguments kept
    assert table.rebuild({tid}) == [ot.Retry(task)]
    assert table.get(tid) is task and task.spec.attempt == 1
    table.result(tid, 1, retryable=False)
    # The rebuild spent the budget: no lineage is kept for the next loss.
    assert table.finished(task, results_elsewhere=True).object_ids
    assert table.rebuild({tid}) == []


def test_lineage_goes_when_no_result_is_referenced():
    table = ot.OwnerTable()
    task = _submitted(table, max_retries=1)
    table.result(task.spec.task_id, 0, retryable=False)
    table.finished(task, results_elsewhere=True)
    assert table.lineage_unreferenced(task.spec.task_id, lambda ids: True) is None
    release = table.lineage_unreferenced(task.spec.task_id, lambda ids: False)
    assert release.object_ids == (b"arg" + task.spec.task_id,)
    assert not table.lineage


def test_tasks_without_budget_or_with_results_here_keep_no_lineage():
    table = ot.OwnerTable()
    no_budget = _submitted(table, max_retries=0)
    assert table.finished(no_budget, results_elsewhere=True).object_ids
    here = _submitted(table, max_retries=3)
    assert table.finished(here, results_elsewhere=False).object_ids
    assert not table.lineage


def test_an_actor_restart_resends_calls_within_budget_and_fails_the_others():
    table = ot.OwnerTable()
    state = object()
    retried = _submitted(table, max_retries=1, actor=state)
    failed = _submitted(table, max_retries=0, actor=state)
    retried.sent = failed.sent = True
    out = table.actor_restarting([retried, failed], "the worker died")
    assert out[0] == ot.Retry(retried) and not retried.sent and retried.spec.attempt == 1
    assert isinstance(out[1], ot.Fail) and isinstance(out[1].error, exceptions.ActorDiedError)
    assert "max_task_retries=0" in str(out[1].error)
    # The same budget: a second restart fails the call that was retried once.
    assert isinstance(table.actor_restarting([retried], "again")[0], ot.Fail)


def test_generator_items_are_taken_once_and_the_leftovers_released():
    table = ot.OwnerTable()
    task = _submitted(table, num_returns=STREAMING)
    tid = task.spec.task_id
    assert table.generator_item(tid, 0) and table.generator_item(tid, 1)
    assert not table.generator_item(tid, 0)       # a retried attempt repeats item 0
    assert task.generator.next_index() == 2        # where an error item would go
    task.generator.items[1] = b"item-1"
    task.generator.count = 2
    assert task.generator.next_index() is None
    assert not table.generator_item(tid, 2)        # finished: nothing more
    assert table.generator_done(tid) == (b"item-1",)
    assert table.generator_done(tid) == ()


def test_children_of_a_parent_task():
    table = ot.OwnerTable()
    a = _submitted(table, parent=b"parent-one")
    _submitted(table, parent=b"parent-two")
    assert table.children_of(b"parent-one") == [a]


@pytest.mark.parametrize("max_retries,attempt,allowed", [
    (0, 0, False), (1, 0, True), (1, 1, False), (-1, 1000, True)])
def test_retry_allowed_is_the_one_rule(max_retries, attempt, allowed):
    spec = _task(max_retries=max_retries).spec
    spec.attempt = attempt
    assert ot.retry_allowed(spec) is allowed
