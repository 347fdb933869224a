"""Jobs: Ray's JobSubmissionClient (the real one, from Ray's venv) and zray's own client against
a live node's dashboard; the CLI; stop while PENDING; a submit that cannot start; the token."""
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

from zray.job import model

RAY_PYTHON = "/opt/rayvenv/bin/python"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.timeout(300)


def _wait_status(client, sid, statuses, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = str(client.get_job_status(sid))
        if status in statuses:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {sid} is {client.get_job_status(sid)}, not in {statuses}")


# -- the record's rules (no processes) ------------------------------------------------------------
def test_unit_terminal_states_never_change():
    info = model.JobInfo(submission_id="a", entrypoint="true")
    stopped = model.stopped_before_start(info)
    assert stopped.status == model.STOPPED and stopped.end_time
    assert model.started(stopped, "n", "http://x", "/log") is None
    assert model.finished(stopped, 0, False) is None
    assert model.failed(stopped, "late") is None
    running = model.started(info, "n", "http://x", "/log")
    assert running.status == model.RUNNING and running.driver_node_id == "n"
    assert model.finished(running, 0, False).status == model.SUCCEEDED
    failed = model.finished(running, 3, False)
    assert failed.status == model.FAILED and failed.driver_exit_code == 3 and "3" in failed.message
    assert model.finished(running, -15, True).status == model.STOPPED
    assert model.JobInfo.from_json(dict(failed.to_json(), unknown=1)) == failed


@pytest.mark.parametrize("bad", ["", "a b", "x" * 200, "../etc", None, 5])
def test_unit_submission_id_checked(bad):
    if bad is None:
        return
    with pytest.raises(model.JobError):
        model.check_submission_id(bad)


# -- Ray's own client -----------------------------------------------------------------------------
RAY_CLIENT_SCRIPT = textwrap.dedent(r'''
    import json, sys, time
    from ray.job_submission import JobSubmissionClient, JobStatus
    c = JobSubmissionClient(sys.argv[1])
    out = {}
    def wait(sid, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = c.get_job_status(sid)
            if st.is_terminal():
                return str(st)
            time.sleep(0.2)
        return "TIMEOUT " + str(c.get_job_status(sid))
    ok = c.submit_job(entrypoint="python -c \"import zray; zray.init(); "
                      "print('answer', zray.get(zray.remote(lambda: 6 * 7).remote()))\"",
                      submission_id="ray_client_ok", metadata={"who": "test"})
    out["ok_status"] = wait(ok)
    out["ok_logs"] = c.get_job_logs(ok)
    info = c.get_job_info(ok)
    out["ok_info"] = {"exit": info.driver_exit_code, "meta": info.metadata,
                      "start": info.start_time, "end": info.end_time}
    bad = c.submit_job(entrypoint="echo failing; exit 3")
    out["bad_status"] = wait(bad)
    out["bad_message"] = c.get_job_info(bad).message
    slow = c.submit_job(entrypoint="echo started; sleep 120")
    deadline = time.time() + 60
    while c.get_job_status(slow) != JobStatus.RUNNING and time.time() < deadline:
        time.sleep(0.1)
    while "started" not in c.get_job_logs(slow) and time.time() < deadline:
        time.sleep(0.1)
    out["stop_returned"] = c.stop_job(slow)
    out["slow_status"] = wait(slow)
    import asyncio
    tailed = c.submit_job(entrypoint="echo tail-one; sleep 1; echo tail-two")
    async def tail():
        chunks = []
        async for lines in c.tail_job_logs(tailed):
            chunks.append(lines)
        return "".join(chunks)
    out["tailed"] = asyncio.run(asyncio.wait_for(tail(), 120))
    out["tailed_status"] = wait(tailed)
    jobs = c.list_jobs()
    out["listed"] = sorted(j.submission_id for j in jobs if j.type == "SUBMISSION")
    out["drivers"] = [j.job_id for j in jobs if j.type == "DRIVER" and j.submission_id is None]
    out["deleted"] = c.delete_job(bad)
    try:
        c.get_job_info(bad)
        out["after_delete"] = "still there"
    except RuntimeError as exc:
        out["after_delete"] = str(exc)
    try:
        c.submit_job(entrypoint="true", submission_id="ray_client_ok")
        out["duplicate"] = "accepted"
    except RuntimeError as exc:
        out["duplicate"] = str(exc)
    print("RESULT " + json.dumps(out))
''')


@pytest.mark.skipif(not os.path.exists(RAY_PYTHON), reason="Ray's venv is not installed")
def test_ray_job_submission_client_against_zray(zray_cluster):
    zray_cluster(num_cpus=2)
    import zray
    url = zray.api._context_info()["dashboard_url"]
    assert url and url.startswith("http://127.0.0.1:")
    proc = subprocess.run([RAY_PYTHON, "-c", RAY_CLIENT_SCRIPT, url], capture_output=True,
                          text=True, timeout=240, env=dict(os.environ, RAY_ADDRESS=""))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["ok_status"] == "SUCCEEDED", out
    assert "answer 42" in out["ok_logs"]
    assert out["ok_info"]["exit"] == 0 and out["ok_info"]["meta"] == {"who": "test"}
    assert out["ok_info"]["end"] >= out["ok_info"]["start"] > 0
    assert out["bad_status"] == "FAILED" and "exit code 3" in out["bad_message"]
    assert out["stop_returned"] is True and out["slow_status"] == "STOPPED"
    assert "tail-one" in out["tailed"] and "tail-two" in out["tailed"]   # over the websocket
    assert out["tailed_status"] == "SUCCEEDED"
    assert "ray_client_ok" in out["listed"] and len(out["listed"]) == 4
    assert zray.get_runtime_context().get_job_id() in out["drivers"]   # this test's driver
    assert out["deleted"] is True and "404" in out["after_delete"]
    assert "400" in out["duplicate"] and "already exists" in out["duplicate"]


# -- zray's client ----------------------------------------------------------------------------------
def test_zray_client_working_dir_env_vars_and_follow(zray_cluster, tmp_path):
    zray_cluster(num_cpus=2)
    from zray.job_submission import JobStatus, JobSubmissionClient
    client = JobSubmissionClient()          # this driver's own node
    (tmp_path / "script.py").write_text(
        "import os, helper\nprint('greeting', os.environ['GREETING'], helper.VALUE)\n")
    (tmp_path / "helper.py").write_text("VALUE = 'from-helper'\n")
    sid = client.submit_job(entrypoint="python script.py",
                            runtime_env={"working_dir": str(tmp_path),
                                         "env_vars": {"GREETING": "hi"}})
    text = "".join(client.follow_logs(sid))
    assert "greeting hi from-helper" in text
    assert client.get_job_status(sid) == JobStatus.SUCCEEDED
    assert client.get_job_info(sid).runtime_env["working_dir"].startswith("gcs://_ray_pkg_")


def test_stop_pending_job_really_stops_it(zray_cluster, tmp_path):
    zray_cluster(num_cpus=1)
    import zray
    from zray.job_submission import JobSubmissionClient
    client = JobSubmissionClient()
    marker = tmp_path / "ran"
    # Its supervisor needs a resource no node has: the job stays PENDING until stopped.
    sid = client.submit_job(entrypoint=f"touch {marker}",
                            entrypoint_resources={"not_here": 1})
    time.sleep(1.0)
    assert str(client.get_job_status(sid)) == "PENDING"
    assert client.stop_job(sid) is True
    assert str(client.get_job_status(sid)) == "STOPPED"
    time.sleep(1.5)
    assert not marker.exists()
    with pytest.raises(ValueError):
        zray.get_actor(f"_zray_job_supervisor_{sid}", namespace=model.JOBS_NAMESPACE)
    assert client.stop_job(sid) is False       # already over
    assert client.delete_job(sid) is True


def test_job_that_cannot_start_fails_instead_of_pending(zray_cluster, monkeypatch):
    monkeypatch.setenv("ZRAY_JOB_START_TIMEOUT_S", "2")
    zray_cluster(num_cpus=1)
    from zray.job_submission import JobSubmissionClient
    client = JobSubmissionClient()
    sid = client.submit_job(entrypoint="true", entrypoint_resources={"not_here": 1})
    assert _wait_status(client, sid, {"FAILED"}, timeout=60) == "FAILED"
    info = client.get_job_info(sid)
    assert "did not start within 2s" in info.message and "not_here" in info.message
    # A working_dir package that was never uploaded: refused at submit, with the reason.
    with pytest.raises(RuntimeError, match="400.*was not uploaded"):
        client.submit_job(entrypoint="true",
                          runtime_env={"working_dir": "gcs://_ray_pkg_missing.zip"})


def test_bad_requests_get_clear_errors_and_the_api_keeps_working(zray_cluster):
    zray_cluster(num_cpus=1)
    from zray.job_submission import JobSubmissionClient
    client = JobSubmissionClient()
    url = client.get_address()
    for kwargs, words in [({"entrypoint": ""}, "entrypoint"),
                          ({"entrypoint": "true", "submission_id": "bad id!"}, "submission_id"),
                          ({"entrypoint": "true", "runtime_env": {"conda": "x"}}, "not supported"),
                          ({"entrypoint": "true", "runtime_env": {"pipp": ["x"]}}, "unknown"),
                          ({"entrypoint": "true", "runtime_env": {"env_vars": {"A": 1}}},
                           "env_vars"),
                          ({"entrypoint": "true", "runtime_env": {"pip": 5}}, "'pip'"),
                          ({"entrypoint": "true", "runtime_env": {"working_dir": "s3://b/x.zip"}},
                           "not a package uploaded"),
                          ({"entrypoint": "true", "entrypoint_num_cpus": -1}, "entrypoint_num_cpus")]:
        with pytest.raises(RuntimeError, match="400") as info:
            client.submit_job(**kwargs)
        assert words in str(info.value)
    with pytest.raises(ValueError, match="not a directory"):     # zray's client checks first
        client.submit_job(entrypoint="true", runtime_env={"py_modules": ["/nope"]})
    req = urllib.request.Request(url + "/api/jobs/", method="POST", data=json.dumps(
        {"entrypoint": "true", "runtime_env": {"py_modules": ["/nope"]}}).encode())
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 400 and "does not exist" in err.value.read().decode()
    with pytest.raises(RuntimeError, match="404"):
        client.get_job_info("no_such_job")
    with pytest.raises(RuntimeError, match="404"):
        client.stop_job("no_such_job")
    for body in (b"{not json", b"[1, 2]"):
        req = urllib.request.Request(url + "/api/jobs/", data=body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + "/api/no_such_thing", timeout=30)
    assert err.value.code == 404
    sid = client.submit_job(entrypoint="sleep 60")
    _wait_status(client, sid, {"RUNNING"})
    with pytest.raises(RuntimeError, match="stop it before deleting"):
        client.delete_job(sid)
    assert client.stop_job(sid) is True
    assert _wait_status(client, sid, {"STOPPED"}) == "STOPPED"
    ok = client.submit_job(entrypoint="echo still-works")
    assert _wait_status(client, ok, {"SUCCEEDED", "FAILED"}) == "SUCCEEDED"


def _cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "zray.scripts.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=REPO)


def test_job_cli(zray_cluster):
    zray_cluster(num_cpus=2)
    import zray
    url = zray.api._context_info()["dashboard_url"]
    env = dict(os.environ, PYTHONPATH=REPO, ZRAY_DASHBOARD_ADDRESS=url)
    r = _cli("job", "submit", "--submission-id", "cli_job", "--", "python", "-c",
             "print('from the cli job')", env=env)
    assert r.returncode == 0, r.stderr
    assert "from the cli job" in r.stdout and "SUCCEEDED" in r.stdout
    r = _cli("job", "status", "cli_job", env=env)
    assert r.returncode == 0 and "SUCCEEDED" in r.stdout
    r = _cli("job", "logs", "cli_job", env=env)
    assert "from the cli job" in r.stdout
    r = _cli("job", "submit", "--no-wait", "--submission-id", "cli_fail", "--", "exit 4", env=env)
    assert r.returncode == 0 and "cli_fail" in r.stdout
    r = _cli("job", "logs", "--follow", "cli_fail", env=env)
    assert r.returncode == 0
    r = _cli("job", "list", "--format", "json", env=env)
    jobs = json.loads(r.stdout)
    listed = {j["submission_id"]: j["status"] for j in jobs if j["type"] == "SUBMISSION"}
    assert listed == {"cli_job": "SUCCEEDED", "cli_fail": "FAILED"}
    assert {j["type"] for j in jobs} == {"SUBMISSION", "DRIVER"}     # this test's driver too
    r = _cli("job", "delete", "cli_fail", env=env)
    assert r.returncode == 0
    r = _cli("job", "status", "cli_fail", env=env)
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = _cli("job", "submit", "--runtime-env-json", "{bad", "--", "true", env=env)
    assert r.returncode == 1 and "not valid JSON" in r.stderr


def test_dashboard_beyond_loopback_requires_the_token(zray_cluster):
    zray_cluster(num_cpus=1, dashboard_host="0.0.0.0", dashboard_port=0)
    import zray
    from zray.dashboard.launch import dashboard_token
    session = zray.api._context_info()["session_dir"]
    url = zray.api._context_info()["dashboard_url"]
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + "/api/jobs/", timeout=30)
    assert err.value.code == 401 and b"token" in err.value.read()
    token = dashboard_token(session)
    req = urllib.request.Request(url + "/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    jobs = json.loads(urllib.request.urlopen(req, timeout=30).read())
    assert [(j["type"], j["driver_info"]["pid"]) for j in jobs] == [("DRIVER", str(os.getpid()))]
    req = urllib.request.Request(url + "/api/jobs/", headers={"Authorization": "Bearer wrong"})
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(req, timeout=30)
    from zray.job_submission import JobSubmissionClient
    client = JobSubmissionClient()        # finds the token of its own node
    sid = client.submit_job(entrypoint="echo tokened")
    assert _wait_status(client, sid, {"SUCCEEDED", "FAILED"}) == "SUCCEEDED"


def test_no_dashboard_when_disabled(zray_cluster):
    ctx_cluster = zray_cluster(num_cpus=1, include_dashboard=False)
    assert ctx_cluster.api._context_info()["dashboard_url"] is None
    with pytest.raises(ValueError, match="dashboard_port"):
        from zray.dashboard.options import dashboard_options
        dashboard_options({"dashboard_port": 70000})


def test_ctrl_c_stops_following_not_the_job(zray_cluster):
    import signal
    zray_cluster(num_cpus=2)
    import zray
    from zray.job_submission import JobSubmissionClient
    url = zray.api._context_info()["dashboard_url"]
    env = dict(os.environ, PYTHONPATH=REPO, ZRAY_DASHBOARD_ADDRESS=url)
    proc = subprocess.Popen([sys.executable, "-m", "zray.scripts.cli", "job", "submit",
                             "--submission-id", "followed", "--", "echo up; sleep 60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO)
    client = JobSubmissionClient(url)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if "up" in client.get_job_logs("followed"):
                    break
            except RuntimeError:      # not submitted yet
                pass
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 130 and "keeps running" in err
    assert str(client.get_job_status("followed")) == "RUNNING"
    assert client.stop_job("followed") is True
    assert _wait_status(client, "followed", {"STOPPED"}) == "STOPPED"
