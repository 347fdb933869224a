"""Jobs and dashboards on a two-node mesh (`zray start` on loopback): every node serves a
dashboard, a job submitted to one node is seen, and its output read, through the other; the
dashboards go with their nodes."""
import json
import os
import time
import urllib.error
import urllib.request

import pytest

from helpers.nodes import Cluster, node_file_of
from helpers.nodes import cli as _cli

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def _get_json(url):
    try:
        return json.loads(urllib.request.urlopen(url, timeout=60).read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{url}: {exc.code} {exc.read()!r}") from None


def test_any_node_answers_for_a_job(tmp_path):
    c = Cluster(tmp_path, 2)
    pids = []
    try:
        assert c.wait(lambda: all(list(c.states(i).values()).count("ALIVE") == 2 for i in range(2)), 20)
        infos = [node_file_of(d) for d in c.dirs]
        urls = [i["dashboard_url"] for i in infos]
        assert all(u and u.startswith("http://127.0.0.1:") for u in urls) and urls[0] != urls[1]
        for info in infos:
            with open(os.path.join(info["session"], "dashboard.json")) as f:
                pids.append(json.load(f)["pid"])
        cluster = _get_json(urls[0] + "/api/cluster")
        assert sorted(n["node_id"] for n in cluster["nodes"] if n["state"] == "ALIVE") == \
            sorted(i["node_id"] for i in infos)
        from zray.job_submission import JobSubmissionClient
        on_one, on_zero = JobSubmissionClient(urls[1]), JobSubmissionClient(urls[0])
        sid = on_one.submit_job(entrypoint="python -c \"import zray; zray.init(); "
                                           "print('nodes', len(zray.nodes()))\"")
        deadline = time.monotonic() + 120
        while not on_zero.get_job_status(sid).is_terminal() and time.monotonic() < deadline:
            time.sleep(0.2)
        info = on_zero.get_job_info(sid)
        assert str(info.status) == "SUCCEEDED", info
        assert info.driver_node_id == infos[1]["node_id"]
        assert "nodes 2" in on_zero.get_job_logs(sid)      # read on node 1, asked on node 0
        # A driver started by hand on node 1 (no submission) is listed by node 0 too.
        by_hand = c.run_driver(1, """
import zray
zray.init(address="auto")
print("JOB", zray.get_runtime_context().get_job_id())
""")
        hand_job = by_hand.stdout.split("JOB ")[1].split()[0]
        listed = json.loads(_cli(c.dirs[0], "job", "list", "--format", "json",
                                 "--address", urls[0]).stdout)
        assert [j["submission_id"] for j in listed if j["type"] == "SUBMISSION"] == [sid]
        drivers = {j["job_id"]: j for j in listed if j["type"] == "DRIVER"}
        assert hand_job in drivers and drivers[hand_job]["status"] == "SUCCEEDED"
        assert drivers[hand_job]["driver_node_id"] == infos[1]["node_id"]
        assert info.job_id not in drivers          # the submission's driver is in its row
        rest = _get_json(urls[1] + "/api/jobs/")
        assert {j["job_id"] for j in rest if j["type"] == "DRIVER"} >= {hand_job}
        for i in range(2):                         # the state API, asked on either node
            rows = json.loads(_cli(c.dirs[i], "list", "jobs", "--format", "json",
                                   "--detail").stdout)
            (submitted,) = [r for r in rows if r["type"] == "SUBMISSION"]
            assert submitted["submission_id"] == sid and submitted["job_id"] == info.job_id
            assert submitted["driver_pid"] and submitted["status"] == "SUCCEEDED"
            assert hand_job in {r["job_id"] for r in rows if r["type"] == "DRIVER"}
            assert info.job_id not in {r["job_id"] for r in rows if r["type"] == "DRIVER"}
        started = _cli(c.dirs[0], "status")
        assert started.returncode == 0
    finally:
        c.stop_all()
    deadline = time.monotonic() + 15
    while any(os.path.exists(f"/proc/{p}") for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{p}") for p in pids), "a dashboard outlived its node"


def test_zray_start_prints_the_dashboard_and_job_cli_finds_it(tmp_path):
    out = _cli(tmp_path, "start", "--num-cpus", "1", "--dashboard-port", "0")
    try:
        assert "Dashboard and jobs API at http://127.0.0.1:" in out.stdout, out.stdout
        r = _cli(tmp_path, "job", "submit", "--", "echo", "found-the-node", timeout=120)
        assert r.returncode == 0 and "found-the-node" in r.stdout, r.stdout + r.stderr
    finally:
        _cli(tmp_path, "stop")
    r = _cli(tmp_path, "job", "list", check=False)
    assert r.returncode == 1 and "no running zray node" in r.stderr


def test_job_runtime_env_reaches_tasks_on_the_other_node(tmp_path):
    """The job's py_modules and env_vars in a task its driver (node 1) runs on node 0: the
    uploaded package travels from the driver, as init()'s runtime_env does."""
    (tmp_path / "mesh").mkdir()
    c = Cluster(tmp_path / "mesh", 2)
    mod = tmp_path / "meshmod"
    mod.mkdir()
    (mod / "__init__.py").write_text("VALUE = 'mesh-module'\n")
    try:
        assert c.wait(lambda: all(list(c.states(i).values()).count("ALIVE") == 2 for i in range(2)), 20)
        infos = [node_file_of(d) for d in c.dirs]
        from zray.job_submission import JobSubmissionClient
        client = JobSubmissionClient(infos[1]["dashboard_url"])
        script = (
            "import os, zray\n"
            "from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as N\n"
            "zray.init()\n"
            "@zray.remote\n"
            "def where():\n"
            "    import meshmod\n"
            "    return zray.get_runtime_context().get_node_id(), os.environ['MESH_VAR'], "
            "meshmod.VALUE\n"
            f"print('SEEN', *zray.get(where.options(scheduling_strategy=N('{infos[0]['node_id']}', "
            "soft=False)).remote(), timeout=120))\n")
        (tmp_path / "wd").mkdir()
        (tmp_path / "wd" / "job.py").write_text(script)
        sid = client.submit_job(entrypoint="python job.py", runtime_env={
            "working_dir": str(tmp_path / "wd"), "py_modules": [str(mod)],
            "env_vars": {"MESH_VAR": "mesh-var"}})
        deadline = time.monotonic() + 180
        while not client.get_job_status(sid).is_terminal() and time.monotonic() < deadline:
            time.sleep(0.2)
        logs = client.get_job_logs(sid)
        assert str(client.get_job_status(sid)) == "SUCCEEDED", logs[-3000:]
        assert f"SEEN {infos[0]['node_id']} mesh-var mesh-module" in logs
    finally:
        c.stop_all()
