"""The local scheduler as a state machine: events in, actions out, no processes."""
from zray.scheduling.local_scheduler import (Cancelled, Dispatch, Failed, Infeasible, Interrupt,
                                          KillWorker, LocalScheduler, StartWorker, Task)
from zray.scheduling.resources import to_units
from zray.scheduling.task_spec import TaskSpec


def spec(n, job="j", **resources):
    res = to_units(resources or {"CPU": 1})
    return TaskSpec(bytes([n]) * 12, job, f"t{n}", b"f", [], [], 1, res, 3, False, "owner")


KIND = {Dispatch: "dispatch", StartWorker: "start_worker", Infeasible: "infeasible",
        Cancelled: "cancelled", Interrupt: "interrupt", Failed: "failed", KillWorker: "kill_worker"}


def kinds(actions):
    return [KIND[type(a)] for a in actions]


def started(s, worker_id, job="j"):
    return s.handle_worker_started(worker_id, job, f"addr-{worker_id}", 100)


def test_task_waits_for_a_worker_then_dispatches():
    s = LocalScheduler(to_units({"CPU": 2}))
    assert kinds(s.handle_task_submitted(Task(spec(1), []))) == ["start_worker"]
    actions = started(s, "w1")
    assert kinds(actions) == ["dispatch"] and actions[0].worker.worker_id == "w1"
    assert s.available["CPU"] == to_units({"CPU": 1})["CPU"]


def test_cpu_limits_concurrency_and_finish_frees_it():
    s = LocalScheduler(to_units({"CPU": 1}))
    started(s, "w1")
    started(s, "w2")
    assert kinds(s.handle_task_submitted(Task(spec(1), []))) == ["dispatch"]
    assert s.handle_task_submitted(Task(spec(2), [])) == []     # no CPU left
    actions = s.handle_task_finished("w1")
    assert kinds(actions) == ["dispatch"] and actions[0].task.spec.name == "t2"


def test_start_workers_for_as_many_tasks_as_fit():
    s = LocalScheduler(to_units({"CPU": 3}))
    actions = []
    for i in range(5):
        actions += s.handle_task_submitted(Task(spec(i), []))
    assert kinds(actions).count("start_worker") == 3


def test_a_big_task_does_not_block_a_small_one_behind_it():
    s = LocalScheduler(to_units({"CPU": 2}))
    started(s, "w1")
    started(s, "w2")
    s.handle_task_submitted(Task(spec(1, CPU=1), []))
    assert s.handle_task_submitted(Task(spec(2, CPU=2), [])) == []
    assert kinds(s.handle_task_submitted(Task(spec(3, CPU=1), []))) == ["dispatch"]


def test_infeasible_task_warns_once_per_shape_and_waits():
    s = LocalScheduler(to_units({"CPU": 2}))
    assert kinds(s.handle_task_submitted(Task(spec(1, CPU=100), []))) == ["infeasible"]
    assert s.handle_task_submitted(Task(spec(2, CPU=100), [])) == []
    assert s.num_queued() == 2


def test_blocked_worker_lends_its_cpu():
    s = LocalScheduler(to_units({"CPU": 1}))
    started(s, "w1")
    started(s, "w2")
    s.handle_task_submitted(Task(spec(1), []))
    s.handle_task_submitted(Task(spec(2), []))
    assert kinds(s.handle_worker_blocked("w1", True)) == ["dispatch"]
    s.handle_worker_blocked("w1", False)
    assert s.available["CPU"] < 0           # oversubscribed until one finishes
    s.handle_task_finished("w2")
    s.handle_task_finished("w1")
    assert s.available == to_units({"CPU": 1})


def test_worker_death_fails_its_task_and_frees_resources():
    s = LocalScheduler(to_units({"CPU": 1}))
    started(s, "w1")
    s.handle_task_submitted(Task(spec(1), []))
    actions = s.handle_worker_died("w1")
    assert kinds(actions) == ["failed"]
    assert s.available == to_units({"CPU": 1})


def test_cancel_queued_and_running():
    s = LocalScheduler(to_units({"CPU": 1}))
    started(s, "w1")
    s.handle_task_submitted(Task(spec(1), []))
    s.handle_task_submitted(Task(spec(2), []))
    assert kinds(s.handle_cancel(spec(2).task_id, False)) == ["cancelled"]
    assert kinds(s.handle_cancel(spec(1).task_id, True)) == ["interrupt"]
    assert kinds(s.handle_worker_died("w1")) == ["cancelled"]


def test_gpu_ids_are_assigned_and_returned():
    s = LocalScheduler(to_units({"CPU": 4, "GPU": 2}))
    for w in ("w1", "w2", "w3"):
        started(s, w)
    a = s.handle_task_submitted(Task(spec(1, CPU=1, GPU=1), []))[0].task
    b = s.handle_task_submitted(Task(spec(2, CPU=1, GPU=1), []))[0].task
    assert {g for g, _ in a.gpu_grants} | {g for g, _ in b.gpu_grants} == {0, 1}
    assert s.handle_task_submitted(Task(spec(3, CPU=1, GPU=1), [])) == []
    s.handle_task_finished(a.worker.worker_id)
    assert s.gpus.free[a.gpu_grants[0][0]] == 10_000 or s.running


def test_job_finished_kills_its_workers_and_drops_its_queue():
    s = LocalScheduler(to_units({"CPU": 1}))
    started(s, "w1", job="a")
    s.handle_task_submitted(Task(spec(1, job="a"), []))
    s.handle_task_submitted(Task(spec(2, job="a"), []))
    actions = s.handle_job_finished("a")
    assert kinds(actions) == ["kill_worker"]
    assert s.num_queued() == 0


# -- issue 10, defect 2: the worker cap ---------------------------------------------------------------
def test_actors_do_not_count_against_the_worker_cap():
    """Once max_workers actors exist, a plain task still gets a worker (as in Ray)."""
    from zray.scheduling.local_scheduler import WorkerCapReached
    s = LocalScheduler(to_units({"CPU": 100}), max_workers=2)
    for i in range(2):                       # two actors took the two pool workers
        started(s, f"a{i}")
        s.handle_task_submitted(Task(spec(i, CPU=0.001), []))
        s.handle_actor_started(f"a{i}", {}, False)
    actions = s.handle_task_submitted(Task(spec(9), []))
    assert [type(a) for a in actions] == [StartWorker]
    assert not any(isinstance(a, WorkerCapReached) for a in actions)


def test_the_worker_cap_is_said_once_per_job_and_shown_in_the_task_list():
    from zray.scheduling.local_scheduler import WorkerCapReached
    s = LocalScheduler(to_units({"CPU": 100}), max_workers=1)
    assert [type(a) for a in s.handle_task_submitted(Task(spec(1), []))] == [StartWorker]
    actions = s.handle_task_submitted(Task(spec(2), []))
    capped = [a for a in actions if isinstance(a, WorkerCapReached)]
    assert len(capped) == 1 and capped[0].cap == 1
    assert not [a for a in s.handle_task_submitted(Task(spec(3), []))
                if isinstance(a, WorkerCapReached)]
    pending = [t for t in s.list_tasks() if t["state"] == "PENDING"]
    assert pending and all("maximum of 1 task workers" in t["pending_reason"] for t in pending)


def test_pending_tasks_say_why_they_wait():
    """The state API's pending_reason (issue 10): the cap, resources, or infeasible."""
    s = LocalScheduler(to_units({"CPU": 100}), max_workers=1)
    s.handle_task_submitted(Task(spec(1), []))
    s.handle_task_submitted(Task(spec(2), []))
    assert all("maximum of 1 task workers" in why for _, why in s.pending())
    s = LocalScheduler(to_units({"CPU": 2}))
    s.handle_task_submitted(Task(spec(3, CPU=64), []))
    ((task, why),) = s.pending()
    assert task.spec.task_id == spec(3).task_id and why.startswith("infeasible")
    started(s, "w1")
    s.handle_task_submitted(Task(spec(4, CPU=2), []))
    s.handle_task_submitted(Task(spec(5, CPU=2), []))
    reasons = [why for _, why in s.pending()]
    assert any(why.startswith("waiting for resources: needs {'CPU': 2.0}") for why in reasons)
