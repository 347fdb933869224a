"""HTTP serving: zray Serve vs Ray Serve vs plain uvicorn + FastAPI, with `wrk` on loopback.

Each server runs in its own process (this file in `--server` mode, under zray's interpreter or
Ray's), answers "hello" at `/`, and reports how long `serve.run` took to its first 200 and how
many sequential `handle.remote(x).result()` calls it makes per second. Then `wrk` drives it
with the given connections for the given time.

    python benchmarks/serve.py                        # all three, 16 connections, 10 s each
    python benchmarks/serve.py --duration 3 --connections 16 --only zray,fastapi
    python benchmarks/serve.py --json                 # one JSON document on stdout

Each server's CPU time during the wrk run (every process of its tree: Serve's proxy, replicas,
controller, node daemons; not wrk) is reported per request: on a shared machine it says more
than requests/s, which move with the other jobs.

Ray's interpreter: --ray-python (default /opt/rayvenv/bin/python when it exists). A server that
cannot start (no Ray, no wrk) is reported as skipped with the reason.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_RAY_PYTHON = "/opt/rayvenv/bin/python"
SERVER_START_TIMEOUT_S = 300


# -- server mode: one process per system --------------------------------------------------------
def _first_200(url, timeout=120):
    import urllib.request
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except Exception:   # noqa: BLE001 - not up yet
            time.sleep(0.002)
    raise TimeoutError(f"{url} never answered 200")


def _handle_rate(handle, calls):
    handle.remote(0).result()
    t = time.perf_counter()
    for i in range(calls):
        handle.remote(i).result()
    return calls / (time.perf_counter() - t)


def _serve_app(serve):
    @serve.deployment(max_ongoing_requests=100)
    class Hello:
        def __call__(self, request):
            return "hello"

    @serve.deployment(max_ongoing_requests=100)
    class Echo:
        def __call__(self, x):
            return x
    return Hello, Echo


def run_server(kind, port, handle_calls):
    """Start one server, print READY {json} and serve until stdin closes."""
    info = {"kind": kind, "port": port}
    url = f"http://127.0.0.1:{port}/"
    if kind == "fastapi":
        import threading
        import uvicorn
        from fastapi import FastAPI
        from fastapi.responses import PlainTextResponse
        app = FastAPI()

        @app.get("/", response_class=PlainTextResponse)
        async def root():
            return "hello"
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               access_log=False))
        t0 = time.perf_counter()
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        _first_200(url)
        info["run_to_first_200_s"] = time.perf_counter() - t0
        print("READY " + json.dumps(info), flush=True)
        sys.stdin.read()
        server.should_exit = True
        thread.join(timeout=10)
        return
    if kind == "zray":
        sys.path.insert(0, REPO)
        import zray as ray
        from zray import serve
        init_kwargs = {}
    else:
        import ray
        from ray import serve
        init_kwargs = {"include_dashboard": False, "log_to_driver": False}
    t0 = time.perf_counter()
    ray.init(num_cpus=2, **init_kwargs)
    info["init_s"] = time.perf_counter() - t0
    Hello, Echo = _serve_app(serve)
    t0 = time.perf_counter()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Hello.bind(), name="hello", route_prefix="/")
    _first_200(url)
    info["cold_run_to_first_200_s"] = time.perf_counter() - t0   # includes starting Serve
    serve.delete("hello")
    t0 = time.perf_counter()
    serve.run(Hello.bind(), name="hello", route_prefix="/")
    _first_200(url)
    info["run_to_first_200_s"] = time.perf_counter() - t0        # Serve already running
    echo = serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    info["handle_calls_per_s"] = _handle_rate(echo, handle_calls)
    print("READY " + json.dumps(info), flush=True)
    sys.stdin.read()
    serve.shutdown()
    ray.shutdown()


# -- driver mode ----------------------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kind, python, handle_calls, log_dir):
    port = free_port()
    env = dict(os.environ)
    if kind == "zray":
        env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    else:
        env.pop("PYTHONPATH", None)     # keep zray's tree out of Ray's interpreter
    log = open(os.path.join(log_dir, f"serve-bench-{kind}.log"), "w")
    proc = subprocess.Popen([python, HERE, "--server", kind, "--port", str(port),
                             "--handle-calls", str(handle_calls)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                            env=env, cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if sel.select(timeout=0.5):
            line = proc.stdout.readline()
            if line.startswith("READY "):
                return proc, json.loads(line[6:]), log
    stop_server(proc, log)
    with open(log.name) as f:
        tail = f.read()[-1500:]
    raise RuntimeError(f"the {kind} server did not start:\n{tail}")


def stop_server(proc, log):
    try:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)
    finally:
        log.close()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(root):
    """{pid: user+system CPU seconds} of root and every descendant (from /proc)."""
    parents = {}
    times = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) * _TICK_S
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return {pid: times[pid] for pid in tree if pid in times}


def cpu_between(before, after):
    """CPU seconds the tree spent between two _tree_cpu_s snapshots (processes in both)."""
    return sum(after[pid] - before[pid] for pid in after if pid in before)


def _ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url, connections, duration, threads):
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
                          "--timeout", "10s", url], capture_output=True, text=True,
                         timeout=duration + 60).stdout
    result = {"raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["requests_per_s"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            result[f"p{pct}_ms"] = _ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    result["socket_errors"] = m.group(1).strip() if m else ""
    return result


def _ray_python(path):
    if path and os.path.exists(path):
        probe = subprocess.run([path, "-c", "import ray.serve, fastapi"], capture_output=True, timeout=120)
        if probe.returncode == 0:
            return path, None
        return None, f"{path} cannot import ray.serve"
    return None, "no interpreter with Ray (--ray-python)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=["zray", "ray", "fastapi"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per server")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--handle-calls", type=int, default=2000,
                        help="sequential handle.remote(x).result() calls to time")
    parser.add_argument("--only", default="zray,ray,fastapi", help="comma-separated servers")
    parser.add_argument("--ray-python", default=DEFAULT_RAY_PYTHON)
    parser.add_argument("--log-dir", default=None, help="server logs (default: a temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.server:
        run_server(args.server, args.port, args.handle_calls)
        return 0
    import tempfile
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="zray-serve-bench-")
    duration = max(1, int(round(args.duration)))
    results = {"connections": args.connections, "duration_s": duration, "load": os.getloadavg(),
               "cpus": len(os.sched_getaffinity(0)), "servers": {}}
    if shutil.which("wrk") is None:
        results["error"] = "wrk is not installed (apt-get install -y wrk)"
    for kind in [k.strip() for k in args.only.split(",") if k.strip()]:
        python = sys.executable
        if kind == "ray":
            python, why = _ray_python(args.ray_python)
            if python is None:
                results["servers"][kind] = {"skipped": why}
                continue
        try:
            proc, info, log = start_server(kind, python, args.handle_calls, log_dir)
        except RuntimeError as exc:
            results["servers"][kind] = {"skipped": str(exc)}
            continue
        try:
            if "error" not in results:
                url = f"http://127.0.0.1:{info['port']}/"
                run_wrk(url, args.connections, 1, args.threads)            # warm up
                before = _tree_cpu_s(proc.pid)
                info.update(run_wrk(url, args.connections, duration, args.threads))
                cpu_s = cpu_between(before, _tree_cpu_s(proc.pid))
                requests = info["requests_per_s"] * duration
                if requests:
                    info["cpu_us_per_request"] = cpu_s / requests * 1e6
        finally:
            stop_server(proc, log)
        results["servers"][kind] = info
    _ratios(results)
    if args.json:
        for s in results["servers"].values():
            s.pop("raw", None)
        print(json.dumps(results, indent=2))
    else:
        _print(results)
    return 0


def _ratios(results):
    s = results["servers"]
    z = s.get("zray", {})
    ratios = {}
    for other in ("ray", "fastapi"):
        o = s.get(other, {})
        if z.get("requests_per_s") and o.get("requests_per_s"):
            ratios[f"zray/{other} requests/s"] = z["requests_per_s"] / o["requests_per_s"]
        if z.get("cpu_us_per_request") and o.get("cpu_us_per_request"):
            ratios[f"{other}/zray CPU per request"] = o["cpu_us_per_request"] / z["cpu_us_per_request"]
    r = s.get("ray", {})
    if z.get("handle_calls_per_s") and r.get("handle_calls_per_s"):
        ratios["zray/ray handle calls/s"] = z["handle_calls_per_s"] / r["handle_calls_per_s"]
    if z.get("run_to_first_200_s") and r.get("run_to_first_200_s"):
        ratios["ray/zray serve.run to first 200"] = r["run_to_first_200_s"] / z["run_to_first_200_s"]
    results["ratios"] = ratios


def _print(results):
    print(f"wrk: {results['connections']} connections, {results['duration_s']} s per server; "
          f"{results['cpus']} CPUs, load average {results['load'][0]:.1f}")
    if "error" in results:
        print(results["error"])
    header = f"{'server':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} " \
             f"{'cpu us/req':>10} {'run->200 s':>10} {'cold s':>8} {'handle/s':>9}"
    print(header)
    for kind, s in results["servers"].items():
        if "skipped" in s:
            print(f"{kind:8} skipped: {s['skipped'].splitlines()[0]}")
            continue

        def f(key, fmt):
            v = s.get(key)
            return format(v, fmt) if isinstance(v, (int, float)) else "-"
        print(f"{kind:8} {f('requests_per_s', '9.0f')} {f('p50_ms', '8.2f')} {f('p99_ms', '8.2f')} "
              f"{f('non_2xx', '8d')} {f('cpu_us_per_request', '10.0f')} {f('run_to_first_200_s', '10.2f')} "
              f"{f('cold_run_to_first_200_s', '8.2f')} {f('handle_calls_per_s', '9.0f')}")
    for name, value in results["ratios"].items():
        print(f"{name}: {value:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
