"""`python -m zray.serve` (the `zray serve` commands): run, build, deploy, status, shutdown."""
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")
yaml = pytest.importorskip("yaml")

pytestmark = pytest.mark.timeout(240)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

APP = textwrap.dedent("""
    from zray import serve

    @serve.deployment
    class Hello:
        def __init__(self, msg="hello"):
            self.msg = msg

        def __call__(self, request):
            return {"msg": self.msg, "q": request.query_params.get("q")}

    app = Hello.bind()

    def builder(args):
        return Hello.bind(args.get("msg", "built"))
""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "hello_app.py").write_text(APP)
    session = tmp_path / "session"
    session.mkdir()
    env = dict(os.environ, ZRAY_TMPDIR=str(session),
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("RAY_ADDRESS", None)
    return tmp_path, env


def serve_cli(env, cwd, *args, check=True, timeout=120):
    out = subprocess.run([sys.executable, "-m", "zray.serve", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def wait_http(url, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=5)
            if r.status_code == 200:
                return r
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered 200")


def test_run_with_builder_args_then_ctrl_c(workdir):
    cwd, env = workdir
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "zray.serve", "run", "hello_app:builder",
                             "msg=from-cli", "--port", str(port)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        r = wait_http(f"http://127.0.0.1:{port}/?q=1")
        assert r.json() == {"msg": "from-cli", "q": "1"}
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        assert proc.returncode == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_build_prints_rays_config_shape(workdir):
    cwd, env = workdir
    doc = yaml.safe_load(serve_cli(env, cwd, "build", "hello_app:app").stdout)
    app = doc["applications"][0]
    assert app["import_path"] == "hello_app:app" and app["route_prefix"] == "/"
    assert app["deployments"] == [{"name": "Hello", "num_replicas": 1, "max_ongoing_requests": 5}]
    assert doc["http_options"]["port"] == 8000


def test_bad_import_path_is_one_clear_error(workdir):
    cwd, env = workdir
    out = serve_cli(env, cwd, "build", "hello_app:nothing", check=False)
    assert out.returncode == 1 and "has no attribute 'nothing'" in out.stderr


def test_deploy_status_shutdown_on_a_running_cluster(workdir):
    cwd, env = workdir
    port = free_port()
    (cwd / "config.yaml").write_text(textwrap.dedent(f"""
        http_options: {{host: 127.0.0.1, port: {port}}}
        applications:
        - name: hello
          route_prefix: /hello
          import_path: hello_app:builder
          args: {{msg: from-config}}
          deployments:
          - name: Hello
            num_replicas: 2
    """))
    start = subprocess.run([sys.executable, "-m", "zray.scripts.cli", "start", "--num-cpus", "2"],
                           cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert start.returncode == 0, start.stderr
    try:
        assert "Sent deploy request" in serve_cli(env, cwd, "deploy", "config.yaml").stdout
        assert wait_http(f"http://127.0.0.1:{port}/hello").json()["msg"] == "from-config"

        def status():
            return yaml.safe_load(serve_cli(env, cwd, "status").stdout)
        deadline = time.monotonic() + 60
        doc = status()
        while doc["applications"]["hello"]["status"] != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.5)
            doc = status()
        hello = doc["applications"]["hello"]
        assert hello["status"] == "RUNNING"
        assert hello["deployments"]["Hello"]["replica_states"] == {"RUNNING": 2}
        assert set(doc["proxies"].values()) == {"HEALTHY"}
        assert "target_capacity" in doc
        serve_cli(env, cwd, "shutdown", "-y")
        assert yaml.safe_load(serve_cli(env, cwd, "status").stdout)["applications"] == {}
    finally:
        subprocess.run([sys.executable, "-m", "zray.scripts.cli", "stop"], cwd=cwd, env=env,
                       capture_output=True, timeout=60)
