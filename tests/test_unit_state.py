"""The state API's I/O-free parts: queries, the task ring, merging answers across nodes, metrics
tables, the Prometheus text and the timeline; and the node's StateService on the fake mesh
(tests/helpers/fake_node.py): any node answers for all, a silent or dead member is named."""
import json
import math

import pytest

from zray.node.service import ClientGone
from zray.scheduling.resources import to_units
from zray.scheduling.task_spec import TASK, TaskSpec
from zray.scripts.state_cli import parse_filter
from zray.state import prometheus, query as q
from zray.state.metrics_table import NodeMetrics
from zray.state.records import TaskRecords, TaskRow, row_get, row_to_dict
from zray.state.timeline import events
from zray.transport import wire
from zray.util import metrics

from helpers.fake_node import Network

CLIENT = "ipc://client"


def row(n, state="RUNNING", name="f", start=1000.0):
    return TaskRow(f"{n:024x}", 0, name, state, "J", None, "NORMAL_TASK", name, None, "N", "w",
                   42, start)


# -- queries ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, text", [
    ({"resource": "bogus"}, "unknown state resource"),
    ({"resource": "tasks", "limit": 0}, "limit must be between"),
    ({"resource": "tasks", "limit": "10"}, "limit must be an int"),
    ({"resource": "tasks", "timeout": -1}, "timeout"),
    ({"resource": "tasks", "filters": [("nope", "=", 1)]}, "'nope' is not a column of tasks"),
    ({"resource": "tasks", "filters": [("state", ">", 1)]}, "unsupported predicate"),
    ({"resource": "tasks", "filters": [("state", "=")]}, "a filter is"),
    ({"resource": "tasks", "filters": "state=RUNNING"}, "filters must be a list"),
    ({"resource": "tasks", "scope": "galaxy"}, "scope"),
    ({"resource": "actors", "args": {"text": ""}}, "text search"),
    ({"resource": "actors", "args": {"text": ["x"]}}, "text search"),
])
def test_a_bad_query_is_a_value_error_saying_what_is_wrong(kwargs, text):
    with pytest.raises(ValueError, match=text):
        q.StateQuery(**kwargs)


def test_a_query_survives_the_wire_and_refuses_unknown_fields():
    query = q.StateQuery("actors", [("state", "=", "ALIVE")], 5, True, 3.0)
    again = q.StateQuery.from_wire(query.to_wire())
    assert again == query and again.filters == (("state", "=", "ALIVE"),)
    with pytest.raises(ValueError, match="unknown fields"):
        q.StateQuery.from_wire(dict(query.to_wire(), evil=1))
    with pytest.raises(ValueError, match="is a dict"):
        q.StateQuery.from_wire(["tasks"])


def test_select_filters_case_insensitively_on_states_keeps_the_limit_and_counts_all():
    rows = [{"actor_id": str(i), "state": "ALIVE" if i % 2 else "DEAD", "name": f"a{i}",
             "class_name": "C"} for i in range(10)]
    query = q.StateQuery("actors", [("state", "=", "alive")], limit=3)
    out, total = q.select(rows, query)
    assert total == 5 and [r["actor_id"] for r in out] == ["1", "3", "5"]
    out, total = q.select(rows, q.StateQuery("actors", [("name", "!=", "a1")], limit=100))
    assert total == 9
    # names compare exactly: "A1" is not "a1"
    assert q.select(rows, q.StateQuery("actors", [("name", "=", "A1")]))[1] == 0


def test_select_over_records_builds_rows_for_the_page_only_and_searches_shown_columns():
    records = [{"actor_id": str(i), "state": "ALIVE", "name": f"a{i}", "class_name": "C",
                "worker_id": "hidden-in-detail"} for i in range(50)]
    built = []

    def to_dict(record, detail):
        built.append(record["actor_id"])
        return dict(record) if detail else q.trim(record, "actors")
    query = q.StateQuery("actors", [("state", "=", "alive")], limit=5, offset=20)
    out, total = q.select(records, query, to_dict=to_dict, skip=20)
    assert total == 50 and len(built) == 5 and out[:20] == [None] * 20
    assert q.merge([{"rows": out, "total": total, "nodes": ["N"]}], query)["rows"] == \
        [q.trim(r, "actors") for r in records[20:25]]
    search = q.StateQuery("actors", limit=100, args={"text": "A4"})
    out, total = q.select(records, search)
    assert total == 11 and {r["name"] for r in out} == {"a4"} | {f"a4{i}" for i in range(10)}
    assert q.select(records, q.StateQuery("actors", args={"text": "hidden"}))[1] == 0
    assert q.select(records, q.StateQuery("actors", detail=True,
                                          args={"text": "hidden"}))[1] == 50

def test_the_ring_keeps_the_last_n_finished_tasks_and_their_counts():
    records = TaskRecords("N", keep=3)
    for n in range(5):
        records.started(row(n))
    assert len(records.running) == 5
    for n in range(5):
        records.ended(f"{n:024x}", 0, 2000.0, "TASK_EXECUTION_EXCEPTION" if n == 4 else None,
                      "ValueError: x" if n == 4 else None)
    assert len(records.finished) == 3 and records.dropped == 2 and records.ended_count == 5
    assert records.finished_counts == {"FINISHED": 2, "FAILED": 1}
    newest_first = [r.task_id for r in records.rows()]
    assert newest_first == [f"{n:024x}" for n in (4, 3, 2)]
    failed = next(records.rows())
    assert failed.state == "FAILED" and failed.error_message == "ValueError: x"
    assert records.ended("unknown", 0, 1.0) is None


def test_listing_100_of_100k_finished_tasks_builds_only_100_rows():
    records = TaskRecords("N", keep=100_000)
    for n in range(100_000):
        r = row(n, state="FINISHED")
        records.add_finished(r)
    out, total = q.select(records.rows(), q.StateQuery("tasks", limit=100), row_get, row_to_dict)
    assert total == 100_000 and len(out) == 100 and isinstance(out[0], dict)
    out, total = q.select(records.rows(), q.StateQuery("tasks", [("state", "=", "FAILED")]),
                          row_get, row_to_dict)
    assert total == 0 and out == []
    assert "error_message" not in out and "error_message" in row(1).to_dict(True)


def test_select_rows_counts_by_state_filters_numbers_and_keeps_pending_first():
    from zray.state.records import select_rows
    records = TaskRecords("N", keep=1000)
    for n in range(10):
        r = row(n, "FINISHED" if n % 3 else "FAILED")
        r.worker_pid = 100 + n
        records.add_finished(r)
    records.started(row(50))
    waiting = row(60, "PENDING_NODE_ASSIGNMENT")
    rows, total = select_rows(records, [waiting], q.StateQuery("tasks", limit=2))
    assert total == 12 and [r["state"] for r in rows] == ["PENDING_NODE_ASSIGNMENT", "RUNNING"]
    rows, total = select_rows(records, [waiting], q.StateQuery("tasks", [("state", "=", "failed")],
                                                               limit=1))
    assert total == 4 and len(rows) == 1 and rows[0]["task_id"] == f"{9:024x}"
    rows, total = select_rows(records, [], q.StateQuery("tasks", [("worker_pid", "=", "103")]))
    assert total == 1 and rows[0]["worker_pid"] == 103
    assert select_rows(records, [], q.StateQuery("tasks", [("worker_pid", "=", "x")]))[1] == 0
    assert select_rows(records, [], q.StateQuery("tasks", [("worker_pid", "!=", "103")]))[1] == 10
    assert select_rows(records, [], q.StateQuery("tasks", [("actor_id", "=", "")]))[1] == 11
    both = q.StateQuery("tasks", [("state", "=", "FAILED"), ("state", "=", "FINISHED")])
    assert select_rows(records, [], both)[1] == 0


def test_the_task_summary_from_tallies_matches_a_scan():
    net = Network()
    a = net.add("A", cpus=1)
    records = a.services.state.records
    for n in range(30):
        r = row(n, ("FINISHED", "FAILED")[n % 2], name=("f", "g", "h")[n % 3])
        records.add_finished(r)
    records.started(row(99, name="f"))
    fast, total = a.services.state._task_summary(q.StateQuery("summary_tasks"))
    scanned, scanned_total = a.services.state._task_summary(
        q.StateQuery("summary_tasks", [("job_id", "=", "J")]))
    assert fast == scanned and total == scanned_total == 31
    assert fast["f"]["state_counts"] == {"FINISHED": 5, "FAILED": 5, "RUNNING": 1}


def test_merge_adds_totals_keeps_the_limit_and_sums_summaries():
    query = q.StateQuery("tasks", limit=3)
    a = dict(q.empty_answer(), rows=[{"x": 1}, {"x": 2}], total=10, nodes=["A"],
             summary={"f": {"func_or_class_name": "f", "state_counts": {"FINISHED": 2}}})
    b = dict(q.empty_answer(), rows=[{"x": 3}, {"x": 4}], total=5, nodes=["B"],
             summary={"f": {"func_or_class_name": "f", "state_counts": {"FINISHED": 1,
                                                                          "FAILED": 1}}})
    out = q.merge([a, b, {"failed_nodes": {"C": "silent"}}], query)
    assert out["total"] == 15 and len(out["rows"]) == 3 and out["nodes"] == ["A", "B"]
    assert out["failed_nodes"] == {"C": "silent"}
    assert out["summary"]["f"]["state_counts"] == {"FINISHED": 3, "FAILED": 1}
    assert a["summary"]["f"]["state_counts"] == {"FINISHED": 2}      # inputs untouched


def test_cli_filters_parse_like_rays():
    assert parse_filter("state=ALIVE") == ("state", "=", "ALIVE")
    assert parse_filter("name!=a=b") == ("name", "!=", "a=b")
    for bad in ("state", "=x", ""):
        with pytest.raises(ValueError):
            parse_filter(bad)


# -- metrics ----------------------------------------------------------------------------------------
def test_counters_add_up_over_processes_and_outlive_them_gauges_do_not():
    table = NodeMetrics()
    counter = ("done", "counter", "d", ("k",), None, [(("a",), 2.0)])
    gauge = ("q", "gauge", "", (), None, [((), (5.0, 10.0))])
    table.update("w1", [counter, gauge])
    table.update("w2", [("done", "counter", "d", ("k",), None, [(("a",), 3.0)]),
                        ("q", "gauge", "", (), None, [((), (7.0, 5.0))])])
    got = table.collect()
    assert got["done"][4] == {("a",): 5.0}
    assert got["q"][4][()][0] == 5.0          # set last (t=10) wins
    table.process_gone("w1")
    got = table.collect()
    assert got["done"][4] == {("a",): 5.0} and got["q"][4][()][0] == 7.0
    table.update("w2", [("done", "counter", "d", ("k",), None, [(("a",), 4.0)])])
    assert table.collect()["done"][4] == {("a",): 6.0}
    table.update("w3", ["garbage", ("x", "weird", "", (), None, []),
                        ("c2", "counter", "", (), None, [((), "not a number")]),
                        ("h2", "histogram", "", (), (1.0,), [((), ([1], 1.0, 1))]),
                        ("g2", "gauge", "", ("k",), None, [((), (1.0, 2.0))])])
    got = table.collect()
    assert "x" not in got and "c2" not in got and "h2" not in got and got["g2"][4] == {}
    prometheus.render([], got, "N")     # still renders


def test_the_exposition_parses_back_with_buckets_cumulative_and_labels_escaped():
    table = NodeMetrics()
    table.update("w", [("lat", "histogram", "latency", ("route",), (0.1, 1.0),
                        [(('a"b\\c',), ([1, 2, 3], 9.5, 6))])])
    text = prometheus.render([("zray_workers", "gauge", "w", {}, 3)], table.collect(), "N1")
    samples = prometheus.parse(text)
    assert samples[("zray_workers", frozenset({("NodeId", "N1")}))] == 3
    labels = {("NodeId", "N1"), ("route", 'a"b\\c')}
    assert samples[("ray_lat_bucket", frozenset(labels | {("le", "0.1")}))] == 1
    assert samples[("ray_lat_bucket", frozenset(labels | {("le", "1")}))] == 3
    assert samples[("ray_lat_bucket", frozenset(labels | {("le", "+Inf")}))] == 6
    assert samples[("ray_lat_count", frozenset(labels))] == 6
    assert "# TYPE ray_lat histogram" in text
    with pytest.raises(ValueError):
        prometheus.parse("not a sample line at all {")


def test_metric_validation_follows_ray():
    with pytest.raises(ValueError):
        metrics.Counter("")
    with pytest.raises(ValueError, match="Prometheus name"):
        metrics.Counter("has space")
    c = metrics.Counter("unit_c", tag_keys=("k",))
    with pytest.raises(ValueError, match="missing value"):
        c.inc()
    with pytest.raises(ValueError, match="unrecognized tag key"):
        c.inc(1, tags={"other": 1})
    with pytest.raises(ValueError, match="> 0"):
        c.inc(0, tags={"k": "a"})
    with pytest.raises(TypeError):
        c.inc("1", tags={"k": "a"})
    c.set_default_tags({"k": "d"})
    c.inc(2)
    with pytest.raises(ValueError, match="exists already"):
        metrics.Gauge("unit_c")
    with pytest.raises(ValueError, match="increase"):
        metrics.Histogram("unit_h", boundaries=[2, 1])
    with pytest.raises(ValueError, match="> 0"):
        metrics.Histogram("unit_h", boundaries=[0, 1])
    h = metrics.Histogram("unit_h", boundaries=[1, 10])
    for v in (0.5, 5, 50):
        h.observe(v)
    snap = {e[0]: e for e in metrics.snapshot()}
    assert snap["unit_c"][5] == [(("d",), 2.0)]
    assert snap["unit_h"][5] == [((), ([1, 1, 1], 55.5, 3))]
    g = metrics.Gauge("unit_g")
    g.set(math.pi)
    assert metrics.snapshot_if_changed() is not None and metrics.snapshot_if_changed() is None


# -- timeline -----------------------------------------------------------------------------------------
def test_timeline_events_are_chrome_complete_events_with_named_tracks():
    rows = [row(1, "FINISHED").to_dict(True), row(2, "RUNNING").to_dict(True),
            dict(row(3, "PENDING_NODE_ASSIGNMENT").to_dict(True), start_time_ms=None)]
    rows[0]["end_time_ms"] = 1002.5
    out = events(rows, now_ms=1010.0)
    complete = [e for e in out if e["ph"] == "X"]
    assert [e["dur"] for e in complete] == [2500.0, 10000.0]
    assert complete[0]["ts"] == 1_000_000 and complete[0]["cname"] == "good"
    assert {e["name"] for e in out if e["ph"] == "M"} == {"process_name", "thread_name"}
    json.dumps(out)


# -- the node service on the fake mesh ---------------------------------------------------------------
def spec(n, cpus=1):
    return TaskSpec(bytes([n]) * 12, "J", f"t{n}", b"f", [], [], 1, to_units({"CPU": cpus}), 3,
                    False, CLIENT, kind=TASK)


def ask(net, node, **kwargs):
    query = q.StateQuery("tasks", **kwargs)
    node.handle(CLIENT, wire.STATE_QUERY, (7, query.to_wire()))
    net.deliver()
    replies = net.to(CLIENT, wire.STATE_REPLY)
    return replies[-1] if replies else None


def test_any_node_answers_for_the_whole_mesh():
    net = Network()
    nodes = [net.add(n, cpus=1) for n in "ABC"]
    for i, node in enumerate(nodes):
        node.handle(CLIENT, wire.SUBMIT_TASK, (spec(i + 1, cpus=8),))   # fits nowhere: waits
    net.deliver()
    for asked in nodes:
        req_id, answer, error = ask(net, asked)
        assert req_id == 7 and error is None
        assert sorted(answer["nodes"]) == ["A", "B", "C"] and answer["total"] == 3
        assert {r["state"] for r in answer["rows"]} == {"PENDING_NODE_ASSIGNMENT"}
        assert all("infeasible" in r["pending_reason"] for r in answer["rows"])
    _, answer, _ = ask(net, nodes[0], limit=1)
    assert answer["total"] == 3 and len(answer["rows"]) == 1
    _, answer, _ = ask(net, nodes[0], scope="node")
    assert answer["nodes"] == ["A"]
    _, answer, _ = ask(net, nodes[0], targets=["C"])
    assert answer["nodes"] == ["C"] and answer["total"] == 1     # A asked C only
    pages = [ask(net, nodes[i % 3], limit=1, offset=i)[1]["rows"] for i in range(4)]
    assert [len(p) for p in pages] == [1, 1, 1, 0]
    assert len({p[0]["task_id"] for p in pages[:3]}) == 3       # stable order from any node
    with pytest.raises(ValueError, match="offset"):
        q.StateQuery("tasks", offset=-1)


def test_a_member_that_is_silent_or_dies_is_named_not_waited_for():
    net = Network()
    a, b, c = (net.add(n) for n in "ABC")
    query = q.StateQuery("tasks", timeout=2.0)
    a.handle(CLIENT, wire.STATE_QUERY, (8, query.to_wire()))
    # nothing is delivered: B and C never answer
    net.kill(b)
    assert net.to(CLIENT, wire.STATE_REPLY) == []
    net.now += 2.5
    a.services.state.tick(net.now)
    ((req_id, answer, error),) = net.to(CLIENT, wire.STATE_REPLY)
    assert req_id == 8 and error is None and answer["nodes"] == ["A"]
    assert set(answer["failed_nodes"]) == {"B", "C"}
    assert "dead" in answer["failed_nodes"]["B"] and "2s" in answer["failed_nodes"]["C"]


def test_a_bad_query_gets_an_error_reply_and_the_node_serves_on():
    net = Network()
    a = net.add("A")
    a.handle(CLIENT, wire.STATE_QUERY, (9, {"resource": "tasks", "limit": -3}))
    ((req_id, answer, error),) = net.to(CLIENT, wire.STATE_REPLY)
    assert req_id == 9 and answer is None and isinstance(error, ValueError)
    a.handle(CLIENT, wire.STATE_QUERY, (10, "not a dict"))
    assert isinstance(net.to(CLIENT, wire.STATE_REPLY)[-1][2], ValueError)
    assert ask(net, a)[2] is None


# -- the worker's reporter ---------------------------------------------------------------------------
def test_the_reporter_tells_a_long_call_once_as_running_then_its_end():
    from zray.core.reporter import Reporter
    sent = []
    reporter = Reporter(lambda address, msg_type, payload: sent.append((msg_type, payload)),
                        "ipc://node")
    call = TaskSpec(b"\x01" * 12, "J", "A.nap", b"f", [], [], 1, {}, 0, False, CLIENT,
                    extra={"method": "nap"})
    reporter.call_started((call, b"\x02" * 16, "A", 10.0))
    reporter.flush()
    reporter.flush()           # told once
    reporter.call_ended((call, b"\x02" * 16, "A", 10.0, 10.5, ("TASK_EXECUTION_EXCEPTION", "x")))
    reporter.flush()
    reporter.flush()           # nothing new: nothing sent
    assert [t for t, _ in sent] == [wire.WORKER_REPORT] * 2
    (running,), _, _, _, _ = sent[0][1]
    assert running[5] == "A.nap" and running[7] == 10000.0 and running[8] is None
    (ended,), _, _, _, _ = sent[1][1]
    assert ended[8] == 10500.0 and ended[9] == "TASK_EXECUTION_EXCEPTION"
    assert not reporter._told_running and not reporter._running
    reporter.close()


def test_the_reporter_tells_the_debugger_ports_of_paused_threads_when_they_change():
    from zray.core.reporter import Reporter
    sent = []
    reporter = Reporter(lambda address, msg_type, payload: sent.append(payload), "ipc://node")
    reporter.debugger_changed([4321])
    reporter.flush()
    reporter.flush()                     # unchanged: nothing sent
    assert [p[4] for p in sent] == [[4321]]
    reporter.debugger_changed([])        # the session ended
    reporter.flush()
    assert [p[4] for p in sent] == [[4321], []]
    reporter.close()


def test_the_reporter_tells_a_task_waiting_for_arguments_and_when_it_stops():
    from zray.core.owner_table import PendingTask
    from zray.core.reporter import Reporter
    sent = []
    reporter = Reporter(lambda address, msg_type, payload: sent.append(payload), "ipc://node")
    task = PendingTask(spec(7), [], [], None)
    task.deps_left = 2
    reporter.args_waiting(task)
    reporter.flush()
    reporter.flush()
    ((_, _, waiting, resolved, _),) = sent
    assert waiting[0][0] == spec(7).task_id.hex() and waiting[0][7] == 2 and not resolved
    task.deps_left = 0                   # resolved (and sent to the node)
    reporter.flush()
    assert sent[-1][2:] == ([], [spec(7).task_id.hex()], None)
    assert not reporter._waiting and not reporter._told_waiting
    # An actor call queued in its caller (the actor is not ready) waits too, until it leaves.
    call = PendingTask(spec(8), [], [], None, actor=object())
    reporter.args_waiting(call)
    reporter.flush()
    assert sent[-1][2][0][7:] == (0, True) and sent[-1][3] == []
    call.sent = True
    reporter.flush()
    assert sent[-1][2:] == ([], [spec(8).task_id.hex()], None)
    failed = PendingTask(spec(9), [], [], None, actor=object())      # its actor died: it
    reporter.args_waiting(failed)                                    # failed, never sent
    reporter.flush()
    reporter.is_pending = lambda task_id: False
    reporter.flush()
    assert sent[-1][2:] == ([], [spec(9).task_id.hex()], None)
    assert not reporter._waiting and not reporter._told_waiting
    reporter.close()


def test_the_node_lists_tasks_waiting_in_their_owners_until_submitted_or_gone():
    net = Network()
    a = net.add("A", cpus=2)
    waiting_row = (spec(3).task_id.hex(), 0, "t3", None, "J", "t3", None, 1, False)
    a.handle(CLIENT, wire.WORKER_REPORT, ([], None, [waiting_row], []))
    _, answer, _ = ask(net, a, filters=[("state", "=", "PENDING_ARGS_AVAIL")])
    assert answer["total"] == 1 and "argument" in answer["rows"][0]["pending_reason"]
    a.handle(CLIENT, wire.SUBMIT_TASK, (spec(3),))             # its arguments arrived
    assert ask(net, a, filters=[("state", "=", "PENDING_ARGS_AVAIL")])[1]["total"] == 0
    a.handle(CLIENT, wire.WORKER_REPORT, ([], None, [waiting_row], []))
    a.services.state.client_gone(ClientGone(CLIENT, "driver", "J", True))   # the owner died
    assert ask(net, a, filters=[("state", "=", "PENDING_ARGS_AVAIL")])[1]["total"] == 0
    queued_call = (spec(4).task_id.hex(), 0, "A.f", "ab" * 8, "J", "A.f", None, 0, True)
    a.handle(CLIENT, wire.WORKER_REPORT, ([], None, [queued_call], []))
    _, answer, _ = ask(net, a, filters=[("type", "=", "ACTOR_TASK")])
    (row,) = answer["rows"]
    assert row["state"] == "PENDING_NODE_ASSIGNMENT" and "queued in its caller" in \
        row["pending_reason"]


def test_exited_workers_say_whether_the_node_meant_it():
    net = Network()
    a = net.add("A")
    state = a.services.state
    a.register("ipc://d", "driver", "J1")
    for worker_id, job in (("w1", "J1"), ("w2", "J2")):
        state.client_registered("worker", f"ipc://{worker_id}", 40, job, worker_id)
    state.worker_died("w1", "The worker process (pid 40) was killed by signal 9 (SIGKILL).")
    state.worker_died("w2", "The worker process (pid 40) was killed by signal 9 (SIGKILL).")
    rows = {r["worker_id"]: r for r in state.answer_local(q.StateQuery("workers"))["rows"]}
    assert rows["w1"]["exit_type"] == "SYSTEM_ERROR"              # its job still runs: a crash
    assert rows["w2"]["exit_type"] == "INTENDED_SYSTEM_EXIT"      # its job had ended
    assert rows["w1"]["pid"] == 40 and rows["w1"]["job_id"] == "J1"
    assert not rows["w1"]["is_alive"]


# -- object refs held by processes (list_objects) ----------------------------------------------------
def test_ref_facts_become_rays_reference_types_and_task_states():
    from zray.state import object_refs as o
    proc = o.ProcessFacts(42, "10.0.0.1", "N", "DRIVER", "ipc://me")

    def fact(**kw):
        base = dict(object_id=b"\x01" * 4, owner="ipc://me", owned=True, local=1, holds=0,
                    captured=False, ready=True, inline_size=10, task_status=None)
        return o.RefFacts(**dict(base, **kw))

    row = o.row(fact(), proc)
    assert row["reference_type"] == "LOCAL_REFERENCE" and row["task_status"] == "FINISHED"
    assert row["object_size"] == 10 and row["type"] == "DRIVER" and row["pid"] == 42
    assert row["call_site"] == "disabled" and row["object_id"] == "01010101"
    assert o.reference_type(fact(local=0, holds=1)) == "USED_BY_PENDING_TASK"
    assert o.reference_type(fact(local=0, holds=1, captured=True)) == "CAPTURED_IN_OBJECT"
    assert o.reference_type(fact(local=0)) == "PINNED_IN_MEMORY"     # kept for borrowers
    assert o.reference_type(fact(local=0, inline_size=None)) == "UNKNOWN_STATUS"
    pending = fact(ready=False, inline_size=None, task_status="PENDING_ARGS_AVAIL")
    assert o.row(pending, proc)["object_size"] == -1
    assert o.task_status(pending) == "PENDING_ARGS_AVAIL"
    assert o.task_status(fact(owned=False, ready=False)) == "NIL"

    class Task:
        sent, deps_left = False, 0
    assert o.pending_task_status(Task) == "PENDING_NODE_ASSIGNMENT"   # queued in its caller
    Task.deps_left = 2
    assert o.pending_task_status(Task) == "PENDING_ARGS_AVAIL"
    Task.sent = True
    assert o.pending_task_status(Task) == "SUBMITTED_TO_WORKER"

    facts = [fact(object_id=bytes([i]) * 4, local=i % 2, holds=1) for i in range(10)]
    query = q.StateQuery("objects", filters=[("reference_type", "=", "local_reference")],
                         limit=2)
    answer = o.answer(query, facts, proc)
    assert answer["total"] == 5 and len(answer["rows"]) == 2
    summary = o.answer(q.StateQuery("summary_objects"), facts, proc)
    assert summary["total"] == 10 and summary["summary"]["disabled"]["total_objects"] == 10
    other = o.answer(q.StateQuery("summary_objects"), facts[:3], o.ProcessFacts(
        7, "10.0.0.2", "M", "WORKER", "ipc://other"))["summary"]
    merged = q.objects_summary_done(q.merge_summaries(
        q.merge_summaries(None, summary["summary"]), other))["disabled"]
    assert merged["total_objects"] == 13 and merged["total_num_workers"] == 2
    assert merged["total_num_nodes"] == 2
    assert merged["ref_type_counts"] == {"LOCAL_REFERENCE": 6, "USED_BY_PENDING_TASK": 7}
    assert merged["task_state_counts"] == {"FINISHED": 13}
    assert merged["total_size_mb"] == pytest.approx(130 / 2**20)


def test_every_node_adds_the_refs_its_processes_hold_and_skips_a_silent_one():
    from zray.node.state_service import CLIENT_ANSWER_S
    net = Network()
    a, b = net.add("A"), net.add("B")
    a.register("ipc://driver", "driver", "J")
    b.register("ipc://w1", "worker", "J", "w1")
    b.register("ipc://w2", "worker", "J", "w2")      # never answers
    query = q.StateQuery("objects", limit=10)
    a.handle(CLIENT, wire.STATE_QUERY, (5, query.to_wire()))
    net.deliver()
    assert net.to(CLIENT, wire.STATE_REPLY) == []     # A's driver has not answered yet

    def rows(*ids):
        return {"rows": [{"object_id": i, "object_size": 3, "task_status": "FINISHED"}
                         for i in ids], "total": len(ids)}
    ((rid_d, sent),) = net.to("ipc://driver", wire.OBJECT_REFS_QUERY)
    assert q.StateQuery.from_wire(sent).scope == "node"
    ((rid_w1, _),) = net.to("ipc://w1", wire.OBJECT_REFS_QUERY)
    assert len(net.to("ipc://w2", wire.OBJECT_REFS_QUERY)) == 1
    a.handle("ipc://driver", wire.OBJECT_REFS_REPLY, (rid_d, rows("d1", "d2"), None))
    b.handle("ipc://w1", wire.OBJECT_REFS_REPLY, (rid_w1, rows("w"), None))
    net.deliver()
    assert net.to(CLIENT, wire.STATE_REPLY) == []     # B still waits for w2
    net.now += CLIENT_ANSWER_S + 0.1
    b.services.state.tick(net.now)
    net.deliver()
    ((req_id, answer, error),) = net.to(CLIENT, wire.STATE_REPLY)
    assert req_id == 5 and error is None and answer["failed_nodes"] == {}
    assert [r["object_id"] for r in answer["rows"]] == ["d1", "d2", "w"]
    assert answer["total"] == 3

    # a process that exits while asked is not waited for either
    a.handle(CLIENT, wire.STATE_QUERY, (6, q.StateQuery("objects", scope="node").to_wire()))
    a.services.state.client_gone(ClientGone("ipc://driver", "driver", "J", True))
    ((req_id, answer, error),) = net.to(CLIENT, wire.STATE_REPLY)[1:]
    assert req_id == 6 and answer["total"] == 0 and error is None


def test_a_process_or_peer_that_cannot_be_reached_does_not_end_the_gather_early():
    net = Network()
    a, b = net.add("A"), net.add("B")
    a.register("ipc://first", "driver", "J")
    a.register("ipc://second", "worker", "J", "w")
    sent = a.ctx.send
    a.ctx.send = lambda address, *rest: False if address == "ipc://first" else sent(address, *rest)
    a.handle(CLIENT, wire.STATE_QUERY, (11, q.StateQuery("objects").to_wire()))
    net.deliver()
    assert net.to(CLIENT, wire.STATE_REPLY) == []        # "second" and B are still due
    ((rid, _),) = net.to("ipc://second", wire.OBJECT_REFS_QUERY)
    a.handle("ipc://second", wire.OBJECT_REFS_REPLY,
             (rid, {"rows": [{"object_id": "x", "object_size": 1}], "total": 1}, None))
    net.deliver()
    ((req_id, answer, error),) = net.to(CLIENT, wire.STATE_REPLY)     # once, complete
    assert req_id == 11 and error is None and answer["total"] == 1
    assert sorted(answer["nodes"]) == ["A", "B"]
