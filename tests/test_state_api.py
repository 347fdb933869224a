"""The state API, the CLI on it, metrics and the timeline against live clusters: a private one
(zray.init), a `zray start` node with its /metrics endpoint, and two nodes in a mesh where
either answers for both."""
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

import zray
from zray.node import local_node
from zray.state import prometheus
from zray.util import state

from helpers.nodes import Cluster, cli


def _wait(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@zray.remote
def square(x):
    return x * x


@zray.remote
def fails():
    raise ValueError("this task fails")


@zray.remote
def sleeps(seconds):
    time.sleep(seconds)
    return seconds


@zray.remote
class Named:
    def ping(self):
        print("ping from the actor", flush=True)
        return "pong"

    def boom(self):
        raise KeyError("from a method")

    def nap(self, seconds):
        time.sleep(seconds)


@zray.remote
class Unplaceable:
    pass


@zray.remote
class BadInit:
    def __init__(self):
        raise RuntimeError("constructor says no")

    def ping(self):
        return 1


def test_actors_tasks_and_their_states_on_a_live_cluster(zray_cluster):
    zray_cluster(num_cpus=2)
    actor = Named.options(name="the-named-one").remote()
    assert zray.get(actor.ping.remote()) == "pong"
    with pytest.raises(Exception):
        zray.get(actor.boom.remote())
    assert zray.get([square.remote(i) for i in range(5)]) == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError):
        zray.get(fails.remote())
    running = sleeps.remote(30)
    pending = square.options(num_cpus=64).remote(1)       # fits no node: waits, with a reason

    alive = state.list_actors(filters=[("state", "=", "ALIVE")])
    (named,) = [a for a in alive if a.name == "the-named-one"]
    assert named["class_name"] == "Named" and named.pid > 0 and named.node_id
    assert state.get_actor(named.actor_id)["name"] == "the-named-one"
    assert state.get_actor("ff" * 16) is None

    assert _wait(lambda: state.list_tasks(filters=[("name", "=", "sleeps"),
                                                   ("state", "=", "RUNNING")]))
    finished = state.list_tasks(filters=[("func_or_class_name", "=", "square"),
                                         ("state", "=", "FINISHED")])
    assert len(finished) == 5 and all(t.end_time_ms >= t.start_time_ms for t in finished)
    (failed,) = state.list_tasks(filters=[("name", "=", "fails")], detail=True)
    assert failed.state == "FAILED" and failed.error_type == "TASK_EXECUTION_EXCEPTION"
    assert "this task fails" in failed.error_message
    (waiting,) = state.list_tasks(filters=[("state", "=", "pending_node_assignment"),
                                           ("type", "=", "NORMAL_TASK")])
    assert waiting.task_id and "infeasible" in waiting.pending_reason
    huge = Unplaceable.options(num_cpus=64).remote()
    (unplaced,) = _wait(lambda: state.list_actors(filters=[("state", "=", "PENDING_CREATION")]))
    assert "infeasible" in unplaced.pending_reason and "64" in unplaced.pending_reason
    zray.kill(huge)
    calls = _wait(lambda: state.list_tasks(filters=[("type", "=", "ACTOR_TASK")]))
    assert {(t.func_or_class_name, t.state) for t in calls} == {
        ("Named.ping", "FINISHED"), ("Named.boom", "FAILED")}
    (attempt,) = state.get_task(failed.task_id)
    assert attempt.task_id == failed.task_id

    summary = state.summarize_tasks()["cluster"]["summary"]
    assert summary["square"]["state_counts"]["FINISHED"] == 5
    assert summary["fails"]["state_counts"] == {"FAILED": 1}
    assert len(state.list_tasks(limit=2)) == 2

    dependent = square.remote(running)                 # waits in this driver for `running`
    (early,) = _wait(lambda: state.list_tasks(filters=[("state", "=", "PENDING_ARGS_AVAIL")]))
    assert early.name == "square" and "argument" in early.pending_reason
    napping = actor.nap.remote(60)
    (call,) = _wait(lambda: state.list_tasks(filters=[("func_or_class_name", "=", "Named.nap"),
                                                      ("state", "=", "RUNNING")]))
    assert call.type == "ACTOR_TASK" and call.end_time_ms is None

    zray.cancel(running, force=True)
    zray.cancel(pending)
    with pytest.raises(Exception):
        zray.get(dependent)                          # its argument was cancelled
    assert _wait(lambda: not state.list_tasks(filters=[("state", "=", "PENDING_ARGS_AVAIL")]))
    bad = BadInit.remote()
    with pytest.raises(Exception):
        zray.get(bad.ping.remote())
    zray.kill(actor)
    dead = _wait(lambda: state.list_actors(filters=[("state", "=", "DEAD")], detail=True)
                 if len(state.list_actors(filters=[("state", "=", "DEAD")])) == 3 else None)
    causes = {a.class_name: a.death_cause for a in dead}
    (nap,) = _wait(lambda: state.list_tasks(filters=[("func_or_class_name", "=", "Named.nap"),
                                                     ("state", "=", "FAILED")], detail=True))
    assert nap.error_type == "WORKER_DIED"         # the call died with its actor's worker
    del napping
    assert "killed by `ray.kill` (zray.kill)" in json.dumps(causes["Named"])
    assert causes["Named"]["actor_died_error_context"]["reason"] == "RAY_KILL"
    assert "constructor says no" in json.dumps(causes["BadInit"]["creation_task_failure_context"])
    assert state.summarize_actors()["cluster"]["summary"]["Named"]["state_counts"] == {"DEAD": 1}


def test_actor_pages_filters_and_search_read_records_and_build_only_the_page(zray_cluster):
    zray_cluster(num_cpus=1)
    from zray.util.state import api
    n = 30
    parked = [Unplaceable.options(resources={"nowhere": 1}, name=f"parked-{i}").remote()
              for i in range(n)]
    assert _wait(lambda: api.query("actors", limit=1)["total"] == n)
    everything = api.query("actors", limit=1000, detail=True)["rows"]
    assert len(everything) == n and all("infeasible" in a["pending_reason"] for a in everything)
    assert everything[0]["home_node_id"] and everything[0]["max_restarts"] == 0
    for offset in (0, 7, n - 5):
        page = api.query("actors", limit=5, offset=offset, detail=True)
        assert page["total"] == n and page["rows"] == everything[offset:offset + 5]
    (named,) = state.list_actors(filters=[("name", "=", "parked-17")])
    assert named.state == "PENDING_CREATION" and "placement_group_id" not in named
    assert named.actor_id == [a for a in everything if a["name"] == "parked-17"][0]["actor_id"]
    assert len(state.list_actors(filters=[("pending_reason", "!=", "")])) == n
    found = api.query("actors", args={"text": "PARKED-2"})      # parked-2, parked-20..29
    assert found["total"] == 11 and {a["name"] for a in found["rows"]} == \
        {"parked-2"} | {f"parked-2{i}" for i in range(10)}
    assert api.query("actors", args={"text": "parked-2"}, limit=3, offset=9)["rows"] == \
        found["rows"][9:11]
    assert api.query("actors", args={"text": "no such thing"})["total"] == 0
    assert api.query("actors", args={"text": "infeasible"})["total"] == n   # a reason matches
    with pytest.raises(ValueError, match="text search"):
        api.query("actors", args={"text": 5})
    assert state.summarize_actors()["cluster"]["summary"]["Unplaceable"]["state_counts"] == \
        {"PENDING_CREATION": n}
    assert state.list_actors(limit=2)                          # the node serves on
    assert api.query("actors", args={"text": "dead"})["total"] == 0
    zray.kill(parked[0])          # a changed record is searched as it is now, not as kept
    assert _wait(lambda: api.query("actors", args={"text": "dead"})["total"] == 1)
    for handle in parked[1:]:
        zray.kill(handle)

def test_nodes_workers_jobs_objects_groups_and_logs(zray_cluster):
    zray_cluster(num_cpus=2)
    actor = Named.remote()
    zray.get(actor.ping.remote())
    big = zray.put(b"x" * (1 << 20))
    (node,) = state.list_nodes()
    assert node.state == "ALIVE" and node.resources_total["CPU"] == 2
    assert state.get_node(node.node_id)["node_id"] == node.node_id
    workers = state.list_workers()
    assert {"DRIVER", "WORKER"} <= {w.worker_type for w in workers}
    (job,) = state.list_jobs()
    assert job.status == "RUNNING" and job.driver_pid == os.getpid()
    objects = state.list_objects()
    assert any(o.object_size > (1 << 20) for o in objects)
    assert state.summarize_objects()["cluster"]["total_objects"] >= 1
    from zray.util import placement_group
    pg = placement_group([{"CPU": 1}], name="grp")
    zray.get(pg.ready())
    (group,) = state.list_placement_groups()
    assert group.name == "grp" and group.state == "CREATED"
    del big

    logs = state.list_logs()
    assert logs["worker_out"] and logs["raylet"]
    actor_row = state.list_actors()[0]
    lines = _wait(lambda: [l for l in state.get_log(actor_id=actor_row.actor_id)
                           if "ping from the actor" in l])
    assert lines
    follow = state.get_log(actor_id=actor_row.actor_id, tail=1, follow=True, _interval=0.1)
    assert "ping from the actor" in next(follow)
    zray.get(actor.ping.remote())
    assert "ping from the actor" in next(follow)     # appended after the first read
    follow.close()
    with pytest.raises(ValueError, match="no log file"):
        list(state.get_log(filename="no-such-file.log"))
    with pytest.raises(ValueError, match="plain name"):
        list(state.get_log(filename="../../etc/passwd"))
    with pytest.raises(ValueError):
        state.list_tasks(filters=[("state", "~", "x")])
    assert state.list_nodes()        # still answers after the bad queries


@zray.remote(resources={"nowhere": 1})
class NeverPlaced:
    def call(self):
        return 1


@zray.remote
def holds_its_argument(x, seconds):
    time.sleep(seconds)
    return len(x)


def test_list_objects_includes_inline_values_pending_results_and_queued_actor_calls(
        zray_cluster, monkeypatch):
    monkeypatch.setenv("ZRAY_RECORD_REF_CREATION_SITES", "1")
    zray_cluster(num_cpus=1)
    small = zray.put(b"s" * 10)                       # inline: lives in this process only
    big = zray.put(b"b" * (2 << 20))                  # in the node's store
    parked = NeverPlaced.remote()
    queued = parked.call.remote()                     # queued here, in its caller
    running = holds_its_argument.remote(small, 30)
    rows = {}
    for o in state.list_objects(detail=True):
        rows.setdefault(o.object_id, []).append(o)
    mine = {o.object_id: o for group in rows.values() for o in group if o.pid == os.getpid()}

    inline = mine[small.hex()]
    assert inline.type == "DRIVER" and inline.task_status == "FINISHED"
    assert 10 <= inline.object_size < 1000 and inline.owner_address
    assert inline.reference_type == "LOCAL_REFERENCE"
    assert __file__ in inline.call_site and ":test_list_objects" in inline.call_site
    stored = mine[big.hex()]
    assert stored.object_size >= 2 << 20               # the size from the node's store
    assert any(o.type == "STORE" for o in rows[big.hex()])
    call = mine[queued.hex()]
    assert call.task_status == "PENDING_NODE_ASSIGNMENT" and call.object_size == -1
    (queued_task,) = _wait(lambda: [t for t in state.list_tasks(filters=[
        ("type", "=", "ACTOR_TASK"), ("state", "=", "PENDING_NODE_ASSIGNMENT")])
        if "queued in its caller" in (t.pending_reason or "")])        # listed as a task too
    assert queued_task.func_or_class_name.endswith("call")
    result = _wait(lambda: [o for o in state.list_objects(
        filters=[("object_id", "=", running.hex())])
        if o.task_status == "SUBMITTED_TO_WORKER"], timeout=30)
    assert result and result[0].reference_type == "LOCAL_REFERENCE"

    del small              # only the pending task's argument keeps it now
    held = _wait(lambda: [o for o in state.list_objects(filters=[
        ("pid", "=", os.getpid()), ("reference_type", "=", "USED_BY_PENDING_TASK")])])
    assert [o.task_status for o in held] == ["FINISHED"]
    drivers = state.list_objects(filters=[("type", "=", "driver")], limit=2)
    assert len(drivers) == 2 and all(o.type == "DRIVER" for o in drivers)
    summary = state.summarize_objects()["cluster"]
    assert summary["total_objects"] >= 5 and summary["summary_by"] == "callsite"
    (here,) = [e for site, e in summary["summary"].items() if ":test_list_objects" in site
               and e["task_state_counts"].get("PENDING_NODE_ASSIGNMENT")]   # the queued call
    assert here["total_num_workers"] == 1 and here["ref_type_counts"] == {"LOCAL_REFERENCE": 1}
    with pytest.raises(ValueError, match="not a column"):
        state.list_objects(filters=[("colour", "=", "red")])
    assert state.list_objects()                        # still answers
    zray.cancel(running, force=True)
    del big, queued, parked


def test_timeline_writes_chrome_trace_json(zray_cluster, tmp_path):
    zray_cluster(num_cpus=2)
    zray.get([sleeps.remote(0.01) for _ in range(4)])
    path = tmp_path / "trace.json"
    returned = zray.timeline(str(path))
    trace = json.loads(path.read_text())
    assert trace == returned
    spans = [e for e in trace if e["ph"] == "X" and e["name"] == "sleeps"]
    assert len(spans) == 4 and all(e["dur"] >= 10_000 for e in spans)


@pytest.fixture
def standalone(tmp_path):
    """A `zray start` node serving /metrics, under its own ZRAY_TMPDIR."""
    port = local_node.free_port("127.0.0.1")
    d = tmp_path / "node"
    d.mkdir()
    cli(d, "start", "--num-cpus", "2", "--metrics-export-port", str(port))
    yield d, port
    cli(d, "stop", check=False)


DRIVER = """
import time, zray
from zray.util.metrics import Counter, Gauge, Histogram
zray.init(address="auto")

@zray.remote
def work(i):
    Counter("jobs_done", "tasks done", tag_keys=("kind",)).inc(1, tags={"kind": "even" if i % 2 == 0 else "odd"})
    Histogram("work_seconds", "how long", boundaries=[0.1, 1.0]).observe(0.5)
    return i

@zray.remote
class Keeper:
    def __init__(self):
        self.g = Gauge("queue_depth", "items waiting")
    def set(self, v):
        self.g.set(v)
        return v

zray.get([work.remote(i) for i in range(6)])
keeper = Keeper.options(name="keeper", lifetime="detached").remote()
zray.get(keeper.set.remote(7))
zray.get(zray.put(1))
time.sleep(1.2)     # one report interval and more
"""


def test_cli_formats_and_the_metrics_endpoint(standalone):
    d, port = standalone
    out = subprocess.run([sys.executable, "-c", DRIVER], env=dict(os.environ, ZRAY_TMPDIR=str(d)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert body.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = prometheus.parse(body.read().decode())
    values = {}
    for (name, labels), value in samples.items():
        values[(name, tuple(sorted((k, v) for k, v in labels if k != "NodeId")))] = value
    assert values[("ray_jobs_done", (("kind", "even"),))] == 3
    assert values[("ray_jobs_done", (("kind", "odd"),))] == 3
    assert values[("ray_work_seconds_count", ())] == 6
    assert values[("ray_queue_depth", ())] == 7
    assert values[("zray_actors", (("State", "ALIVE"),))] == 1
    assert values[("zray_tasks", (("State", "FINISHED"),))] >= 8
    assert values[("zray_resources_total", (("Name", "CPU"),))] == 2
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=10)

    table = cli(d, "list", "actors").stdout
    assert "CLASS_NAME" in table and "keeper" in table and "ALIVE" in table
    rows = json.loads(cli(d, "list", "tasks", "--format", "json", "-f", "func_or_class_name=work").stdout)
    assert len(rows) == 6 and {r["state"] for r in rows} == {"FINISHED"}
    docs = yaml.safe_load(cli(d, "list", "actors", "--format", "yaml", "--detail").stdout)
    assert docs[0]["name"] == "keeper" and "is_detached" in docs[0]
    limited = cli(d, "list", "tasks", "--limit", "2").stdout
    assert "more match" in limited
    actor_id = docs[0]["actor_id"]
    got = json.loads(cli(d, "get", "actors", actor_id, "--format", "json").stdout)
    assert got["actor_id"] == actor_id
    assert "keeper" in cli(d, "get", "actors", actor_id).stdout
    summary = cli(d, "summary", "tasks").stdout
    assert "work" in summary and "FINISHED" in summary
    assert json.loads(cli(d, "summary", "actors", "--format", "json").stdout)["cluster"]
    assert "raylet" in cli(d, "logs").stdout
    assert cli(d, "logs", "node.err", "--tail", "5").returncode == 0
    trace_path = d / "t.json"
    assert "events" in cli(d, "timeline", "-o", str(trace_path)).stdout
    assert any(e.get("name") == "work" for e in json.loads(trace_path.read_text()))

    for args, text in [(("list", "tasks", "-f", "nope=1"), "not a column"),
                       (("list", "tasks", "-f", "state"), "KEY=VALUE"),
                       (("get", "actors", "00" * 16), "no actor"),
                       (("logs", "missing.log"), "no log file"),
                       (("list", "tasks", "--limit", "0"), "limit")]:
        bad = cli(d, *args, check=False)
        assert bad.returncode == 1 and text in bad.stderr, (args, bad.stderr)
    assert "keeper" in cli(d, "list", "actors").stdout     # and it serves on


@pytest.mark.slow
def test_either_node_of_a_mesh_answers_for_both(tmp_path):
    mesh = Cluster(tmp_path, 2, num_cpus=1)
    try:
        mesh.wait_mesh_ready()
        ids = [mesh.node_id(i) for i in range(2)]
        mesh.run_driver(0, """
import zray
zray.init(address="auto")
@zray.remote(num_cpus=1)
def where(i):
    import time; time.sleep(0.3)
    return zray.get_runtime_context().get_node_id()
print(sorted(set(zray.get([where.remote(i) for i in range(8)]))))
""")
        for i in range(2):
            rows = json.loads(cli(mesh.dirs[i], "list", "tasks", "--format", "json",
                                  "--limit", "1000", "-f", "name=where").stdout)
            assert len(rows) == 8 and {r["node_id"] for r in rows} == set(ids), rows
            nodes = json.loads(cli(mesh.dirs[i], "list", "nodes", "--format", "json").stdout)
            assert {n["node_id"] for n in nodes} == set(ids)
            only = json.loads(cli(mesh.dirs[i], "list", "tasks", "--this-node", "--format",
                                  "json", "-f", "name=where").stdout)
            assert {r["node_id"] for r in only} <= {ids[i]}
        files = cli(mesh.dirs[1], "logs", "--node-id", ids[0]).stdout
        assert "raylet" in files and "node.err" in files
        assert cli(mesh.dirs[1], "logs", "node.err", "--node-id", ids[0]).returncode == 0
        missing = cli(mesh.dirs[1], "logs", "node.err", "--node-id", "f" * 28, check=False)
        assert missing.returncode == 1 and "no log file" in missing.stderr
        # An inline value lives only in its owner, a driver on node 0: node 1 lists it too.
        holder = mesh.start_driver(0, """
import sys, zray
zray.init(address="auto")
ref = zray.put(b"kept-inline")
print(ref.hex(), flush=True)
sys.stdin.readline()
""")
        try:
            object_hex = holder.stdout.readline().strip()
            assert object_hex, holder.stderr.read()
            rows = json.loads(cli(mesh.dirs[1], "list", "objects", "--format", "json",
                                  "-f", f"object_id={object_hex}").stdout)
            assert [(r["type"], r["pid"], r["node_id"]) for r in rows] == \
                [("DRIVER", holder.pid, ids[0])], rows
            assert 0 < rows[0]["object_size"] < 1000
        finally:
            holder.communicate("\n", timeout=60)
        summary = json.loads(cli(mesh.dirs[1], "summary", "tasks", "--format", "json").stdout)
        assert summary["cluster"]["summary"]["where"]["state_counts"]["FINISHED"] == 8
        assert sorted(summary["cluster"]["nodes"]) == sorted(ids)
    finally:
        mesh.stop_all()
