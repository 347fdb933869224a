"""A job's runtime_env (zray/job/runtime_env.py): every field of zray's runtime_env, checked at
submit; built for the entrypoint (env_vars, working_dir, py_modules, a pip venv); and the job-level
runtime_env of the tasks and actors the entrypoint's driver starts. Real nodes, real entrypoint
processes, real pip from the package registry (the slow ones)."""
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from zray.job.runtime_env import merge_for_driver, resolve
from zray.job.model import JobError

RAY_PYTHON = "/opt/rayvenv/bin/python"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.timeout(400)

# The entrypoint: what it sees itself, then what a task and an actor of its driver see.
DRIVER_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import zray

    def seen():
        out = {"var": os.environ.get("JOB_VAR"), "cwd_file": os.path.exists("data.txt")}
        try:
            import jobmod
            out["jobmod"] = jobmod.VALUE
        except ImportError as exc:
            out["jobmod"] = repr(exc)
        try:
            import tabulate
            out["tabulate"] = tabulate.__version__
        except ImportError:
            out["tabulate"] = None
        return out

    @zray.remote
    def task():
        return seen()

    @zray.remote
    def task_with_own_env():
        return os.environ.get("JOB_VAR"), os.environ.get("OWN_VAR")

    @zray.remote
    class Probe:
        def look(self):
            return seen()

    print("ENTRYPOINT " + json.dumps(seen()), flush=True)
    zray.init()
    print("TASK " + json.dumps(zray.get(task.remote(), timeout=300)), flush=True)
    print("ACTOR " + json.dumps(zray.get(Probe.remote().look.remote(), timeout=300)), flush=True)
    own = task_with_own_env.options(runtime_env={"env_vars": {"OWN_VAR": "own"}}).remote()
    print("MERGED " + json.dumps(zray.get(own, timeout=300)), flush=True)
''')


def _project(tmp_path):
    """A working_dir with the script and a data file, and a py_modules package beside it."""
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "driver.py").write_text(DRIVER_SCRIPT)
    (wd / "data.txt").write_text("data\n")
    (wd / "big.log").write_text("left out\n")
    mod = tmp_path / "jobmod"
    mod.mkdir()
    (mod / "__init__.py").write_text("VALUE = 'from-jobmod'\n")
    return wd, mod


def _seen(logs):
    out = {}
    for line in logs.splitlines():
        head, _, rest = line.partition(" ")
        if head in ("ENTRYPOINT", "TASK", "ACTOR", "MERGED"):
            out[head] = json.loads(rest)
    return out


def _wait_terminal(client, sid, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_job_status(sid)
        if status.is_terminal():
            return str(status)
        time.sleep(0.3)
    raise AssertionError(f"job {sid} is still {client.get_job_status(sid)}:\n"
                         f"{client.get_job_logs(sid)[-3000:]}")


# -- checks (no processes) ------------------------------------------------------------------------
def test_unit_resolve_uploaded_packages_and_checks(tmp_path):
    (tmp_path / "_ray_pkg_abc.zip").write_bytes(b"PK")
    env = resolve({"working_dir": "gcs://_ray_pkg_abc.zip", "py_modules": ["gcs://_ray_pkg_abc.zip"],
                   "pip": ["six"], "_ray_commit": "x"}, str(tmp_path))
    zipped = str(tmp_path / "_ray_pkg_abc.zip")
    assert env == {"working_dir": zipped, "py_modules": [zipped],
                   "pip": {"packages": ["six"], "pip_check": False}}
    for bad, words in [({"conda": "x"}, "not supported"), ({"nope": 1}, "unknown"),
                       ({"working_dir": "gcs://_ray_pkg_none.zip"}, "was not uploaded"),
                       ({"py_modules": ["s3://bucket/m.zip"]}, "not a package uploaded"),
                       ({"working_dir": "gcs://../../etc.zip"}, "not a package uploaded"),
                       ({"excludes": ["*.log"]}, "excludes"), ([1], "must be a dict")]:
        with pytest.raises(JobError, match=words):
            resolve(bad, str(tmp_path))
    # init(runtime_env=...) inside a job, as Ray: both kept; a conflict is an error unless
    # overridden, and then init's wins.
    job = {"env_vars": {"A": "1", "B": "1"}, "pip": {"packages": ["x"]}}
    assert merge_for_driver(job, {"env_vars": {"C": "3"}, "working_dir": "/w"}) == {
        "env_vars": {"A": "1", "B": "1", "C": "3"}, "pip": {"packages": ["x"]},
        "working_dir": "/w"}
    for clash in ({"env_vars": {"B": "2"}}, {"pip": ["y"]}):
        with pytest.raises(ValueError, match="OVERRIDE_JOB_RUNTIME_ENV"):
            merge_for_driver(job, clash)
    assert merge_for_driver(job, {"env_vars": {"B": "2"}}, override=True) == {
        "env_vars": {"A": "1", "B": "2"}, "pip": {"packages": ["x"]}}


# -- env_vars, working_dir, py_modules ------------------------------------------------------------
def test_job_env_reaches_entrypoint_tasks_and_actors(zray_cluster, tmp_path):
    zray_cluster(num_cpus=2)
    from zray.job_submission import JobSubmissionClient
    client = JobSubmissionClient()
    wd, mod = _project(tmp_path)
    sid = client.submit_job(entrypoint="python driver.py", runtime_env={
        "working_dir": str(wd), "py_modules": [str(mod)], "excludes": ["*.log"],
        "env_vars": {"JOB_VAR": "job-value"}})
    status = _wait_terminal(client, sid)
    logs = client.get_job_logs(sid)
    assert status == "SUCCEEDED", logs[-3000:]
    seen = _seen(logs)
    expected = {"var": "job-value", "cwd_file": True, "jobmod": "from-jobmod", "tabulate": None}
    assert seen["ENTRYPOINT"] == expected
    assert seen["TASK"] == expected and seen["ACTOR"] == expected, logs[-3000:]
    assert seen["MERGED"] == ["job-value", "own"]        # Ray's merge: env_vars of both
    info = client.get_job_info(sid)
    assert info.runtime_env["py_modules"][0].startswith("gcs://_ray_pkg_")
    assert "excludes" not in info.runtime_env             # applied to the upload
    # The driver shipped the uploaded archives as they are: the task's working_dir holds what
    # was uploaded (the excluded file is not there either).
    check = client.submit_job(entrypoint="python -c \"import zray, os; zray.init(); "
                              "print('LOGFILE', zray.get(zray.remote(lambda: "
                              "os.path.exists('big.log')).remote()))\"",
                              runtime_env={"working_dir": str(wd), "excludes": ["*.log"]})
    assert _wait_terminal(client, check) == "SUCCEEDED"
    assert "LOGFILE False" in client.get_job_logs(check)


def test_init_runtime_env_inside_a_job_follows_rays_merge(zray_cluster):
    zray_cluster(num_cpus=2)
    from zray.job_submission import JobSubmissionClient
    client = JobSubmissionClient()
    script = ("python -c \"import os, zray; zray.init(runtime_env={'env_vars': {'JOB_VAR': 'init'}}); "
              "print('SEEN', zray.get(zray.remote(lambda: os.environ['JOB_VAR']).remote()))\"")
    clash = client.submit_job(entrypoint=script, runtime_env={"env_vars": {"JOB_VAR": "job"}})
    assert _wait_terminal(client, clash) == "FAILED"
    assert "RAY_OVERRIDE_JOB_RUNTIME_ENV" in client.get_job_logs(clash)
    won = client.submit_job(entrypoint=script, runtime_env={
        "env_vars": {"JOB_VAR": "job", "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1"}})
    assert _wait_terminal(client, won) == "SUCCEEDED", client.get_job_logs(won)[-3000:]
    assert "SEEN init" in client.get_job_logs(won)


def test_cli_runtime_env_yaml_and_working_dir_flag(zray_cluster, tmp_path):
    zray_cluster(num_cpus=2)
    import zray
    url = zray.api._context_info()["dashboard_url"]
    wd, mod = _project(tmp_path)
    spec_file = tmp_path / "env.yaml"
    spec_file.write_text(f"working_dir: /no/such/dir\npy_modules:\n  - {mod}\n"
                         "env_vars:\n  JOB_VAR: from-yaml\n")
    proc = subprocess.run(
        [sys.executable, "-m", "zray.scripts.cli", "job", "submit", "--address", url,
         "--runtime-env", str(spec_file), "--working-dir", str(wd), "--", "python", "driver.py"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    seen = _seen(proc.stdout)
    assert seen["ENTRYPOINT"]["var"] == "from-yaml" and seen["ENTRYPOINT"]["cwd_file"]
    assert seen["TASK"]["jobmod"] == "from-jobmod" and seen["TASK"]["var"] == "from-yaml"
    for args, words in [(["--runtime-env", str(tmp_path / "missing.yaml")], "cannot read"),
                        (["--runtime-env", str(spec_file), "--runtime-env-json", "{}"],
                         "not both"),
                        (["--runtime-env-json", '{"env_vars": {"A": 1}}'], "env_vars")]:
        proc = subprocess.run(
            [sys.executable, "-m", "zray.scripts.cli", "job", "submit", "--address", url,
             *args, "--", "true"], capture_output=True, text=True, timeout=120, cwd=REPO)
        assert proc.returncode == 1 and words in proc.stderr, (args, proc.stderr)
    bad = tmp_path / "bad.yaml"
    bad.write_text("env_vars: [unclosed\n")
    proc = subprocess.run(
        [sys.executable, "-m", "zray.scripts.cli", "job", "submit", "--address", url,
         "--runtime-env", str(bad), "--", "true"], capture_output=True, text=True, timeout=120,
        cwd=REPO)
    assert proc.returncode == 1 and "not valid YAML" in proc.stderr


RAY_CLIENT_SCRIPT = textwrap.dedent(r'''
    import json, sys, time
    from ray.job_submission import JobSubmissionClient
    c = JobSubmissionClient(sys.argv[1])
    sid = c.submit_job(entrypoint="python driver.py", runtime_env={
        "working_dir": sys.argv[2], "py_modules": [sys.argv[3]],
        "env_vars": {"JOB_VAR": "via-ray-client"}, "config": {"setup_timeout_seconds": 300}})
    deadline = time.time() + 240
    while not c.get_job_status(sid).is_terminal() and time.time() < deadline:
        time.sleep(0.3)
    print("RESULT " + json.dumps({"status": str(c.get_job_status(sid)),
                                  "logs": c.get_job_logs(sid),
                                  "runtime_env": c.get_job_info(sid).runtime_env}))
''')


@pytest.mark.skipif(not os.path.exists(RAY_PYTHON), reason="Ray's venv is not installed")
def test_ray_client_uploads_py_modules(zray_cluster, tmp_path):
    zray_cluster(num_cpus=2)
    import zray
    url = zray.api._context_info()["dashboard_url"]
    wd, mod = _project(tmp_path)
    proc = subprocess.run([RAY_PYTHON, "-c", RAY_CLIENT_SCRIPT, url, str(wd), str(mod)],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, RAY_ADDRESS=""))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["status"] == "SUCCEEDED", out["logs"][-3000:]
    assert out["runtime_env"]["py_modules"][0].startswith("gcs://_ray_pkg_")
    seen = _seen(out["logs"])
    expected = {"var": "via-ray-client", "cwd_file": True, "jobmod": "from-jobmod",
                "tabulate": None}
    assert seen["ENTRYPOINT"] == expected and seen["TASK"] == expected, out["logs"][-3000:]


# -- pip --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pip_package_in_entrypoint_and_tasks(zray_cluster, tmp_path):
    zray_cluster(num_cpus=2)
    from zray.job_submission import JobSubmissionClient
    client = JobSubmissionClient()
    wd, _ = _project(tmp_path)
    sid = client.submit_job(entrypoint="python driver.py", runtime_env={
        "working_dir": str(wd), "pip": ["tabulate==0.8.10"],
        "config": {"setup_timeout_seconds": 300}})
    status = _wait_terminal(client, sid, timeout=360)
    logs = client.get_job_logs(sid)
    assert status == "SUCCEEDED", (client.get_job_info(sid).message, logs[-3000:])
    seen = _seen(logs)
    assert seen["ENTRYPOINT"]["tabulate"] == "0.8.10"
    assert seen["TASK"]["tabulate"] == "0.8.10" and seen["ACTOR"]["tabulate"] == "0.8.10"


@pytest.mark.slow
def test_pip_failure_fails_the_job_and_the_node_keeps_working(zray_cluster):
    zray_cluster(num_cpus=2)
    from zray.job_submission import JobSubmissionClient
    client = JobSubmissionClient()
    sid = client.submit_job(entrypoint="echo never-runs",
                            runtime_env={"pip": ["zray-no-such-package-for-tests==0.0.1"]})
    assert _wait_terminal(client, sid, timeout=360) == "FAILED"
    info = client.get_job_info(sid)
    assert info.error_type == "RUNTIME_ENV_SETUP_FAILED"
    assert "pip install zray-no-such-package-for-tests" in info.message
    assert "No matching distribution" in info.message or "Could not find" in info.message, \
        info.message     # the pip log's tail
    assert "never-runs" not in client.get_job_logs(sid)
    ok = client.submit_job(entrypoint="python -c \"import zray; zray.init(); "
                           "print('after', zray.get(zray.remote(lambda: 6 * 7).remote()))\"")
    assert _wait_terminal(client, ok) == "SUCCEEDED"
    assert "after 42" in client.get_job_logs(ok)


@pytest.mark.slow
def test_pip_setup_counts_within_the_setup_timeout(zray_cluster):
    zray_cluster(num_cpus=2)
    from zray.job_submission import JobSubmissionClient
    client = JobSubmissionClient()
    sid = client.submit_job(entrypoint="echo never-runs", runtime_env={
        "pip": {"packages": ["tabulate==0.9.0"], "pip_check": True},    # a set of its own
        "config": {"setup_timeout_seconds": 1}})
    assert _wait_terminal(client, sid, timeout=120) == "FAILED"
    assert "timed out" in client.get_job_info(sid).message


@pytest.mark.slow
def test_stopping_a_job_while_pip_builds_leaves_no_pip_behind(zray_cluster):
    import psutil
    zray_cluster(num_cpus=2)
    from zray.job_submission import JobSubmissionClient
    client = JobSubmissionClient()
    marker = "tabulate==0.8.9"          # a requirement set no other test builds

    def builders():
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if marker in cmdline and "install" in cmdline:
                found.append(proc)
        return found
    # An index that accepts connections and never answers: pip waits (15 s a try, retrying).
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    index = f"--index-url=http://127.0.0.1:{silent.getsockname()[1]}/simple"
    try:
        sid = client.submit_job(entrypoint="sleep 60", runtime_env={"pip": [index, marker]})
        deadline = time.monotonic() + 120
        while not builders() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert builders() and str(client.get_job_status(sid)) == "PENDING"
        assert client.stop_job(sid) is True
        assert _wait_terminal(client, sid) == "STOPPED"
        deadline = time.monotonic() + 10
        while builders() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not builders()
    finally:
        silent.close()
    ok = client.submit_job(entrypoint="echo still-works")
    assert _wait_terminal(client, ok) == "SUCCEEDED"
