"""State API latency with many finished tasks: zray beside Ray, in one run on this machine.

    python benchmarks/observability.py [--sizes 10000,100000] [--repeats 5] [--no-ray]
                                       [--markdown FILE]

Each side runs in a fresh process of its own interpreter (zray: this one; Ray: --ray-python,
default /opt/rayvenv/bin/python when it exists): `init(num_cpus=2)`, then no-op tasks in
batches of 1,000 until the cluster has finished each size in --sizes, and at each size the
latency of (median of --repeats calls):

    list_tasks(limit=100)                              100 rows out of N
    list_tasks(filters=[("state", "=", "FINISHED")], limit=100)
    list_tasks(filters=[("name", "=", "nobody")])      a filter matching nothing: a full scan
    summarize_tasks()
    list_actors(limit=100)                             with 10 actors alive

Ray records task events asynchronously (its workers flush them to the GCS every second), so
each side first waits until summarize_tasks counts N, or stops growing for 3 s (Ray's summary
and lists stop at 10,000 rows and say so; the counts are shown). Every call passes
raise_on_missing_output=False, so Ray answers with what it has instead of raising.
The dashboard's page loads are measured by the dashboard's own benchmark.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RAY_PYTHON = "/opt/rayvenv/bin/python"
OPS = ["list_tasks(limit=100)", "list_tasks(state=FINISHED, limit=100)",
       "list_tasks(name=nobody) (full scan)", "summarize_tasks()", "list_actors(limit=100)"]


def side(module, sizes, repeats):
    """Run in the measured process: prints one JSON line per size."""
    import importlib
    ray = importlib.import_module(module)
    state = importlib.import_module(f"{module}.util.state")
    if module == "ray":
        # A cluster of its own, even when another Ray cluster runs on this host (ray.init()
        # would join it), with its dashboard (the state API's server) on a free port.
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ray.init(address="local", num_cpus=2, dashboard_port=port)
    else:
        ray.init(num_cpus=2)

    @ray.remote(num_cpus=1)
    def noop():
        return None

    @ray.remote(num_cpus=0)
    class Idle:
        def ping(self):
            return 1

    actors = [Idle.remote() for _ in range(10)]
    ray.get([a.ping.remote() for a in actors])
    done = 0
    for size in sizes:
        start = time.perf_counter()
        while done < size:
            batch = min(1000, size - done)
            ray.get([noop.remote() for _ in range(batch)])
            done += batch
        submit_s = time.perf_counter() - start
        counted = _wait_counted(state, size)
        quiet = {"timeout": 120, "raise_on_missing_output": False}   # Ray truncates at 10k
        calls = {
            OPS[0]: lambda: state.list_tasks(limit=100, **quiet),
            OPS[1]: lambda: state.list_tasks(filters=[("state", "=", "FINISHED")], limit=100,
                                             **quiet),
            OPS[2]: lambda: state.list_tasks(filters=[("name", "=", "nobody")], **quiet),
            OPS[3]: lambda: state.summarize_tasks(**quiet),
            OPS[4]: lambda: state.list_actors(limit=100, **quiet),
        }
        result = {"module": module, "size": size, "counted": counted,
                  "tasks_per_s": round(size / submit_s) if submit_s else None}
        for name, call in calls.items():
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                rows = call()
                times.append(time.perf_counter() - t)
            result[name] = statistics.median(times)
            if name == OPS[0]:
                result["rows_returned"] = len(rows)
        print(json.dumps(result), flush=True)
    ray.shutdown()


def _total(summary):
    cluster = summary.get("cluster", {})
    if "total_tasks" in cluster:
        return cluster["total_tasks"]
    return sum(sum(e.get("state_counts", {}).values())
               for e in cluster.get("summary", {}).values())


def _wait_counted(state, want, timeout=120.0):
    """What summarize_tasks counts once it reaches `want` or stops growing for 3 s (Ray's
    summary stops at 10,000 tasks: it says so and truncates)."""
    deadline = time.monotonic() + timeout
    counted, last, still = 0, -1, 0
    while time.monotonic() < deadline:
        counted = _total(state.summarize_tasks(timeout=120, raise_on_missing_output=False))
        if counted >= want:
            break
        still = still + 1 if counted == last else 0
        if still >= 3:
            break
        last = counted
        time.sleep(1.0)
    return counted


def run_side(python, module, sizes, repeats, timeout):
    env = dict(os.environ)
    if module == "zray":
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    else:
        env.pop("PYTHONPATH", None)
        env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cmd = [python, os.path.abspath(__file__), "--side", module, "--sizes",
           ",".join(map(str, sizes)), "--repeats", str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                         cwd="/tmp")
    rows = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    if out.returncode != 0 and not rows:
        raise RuntimeError(f"the {module} side failed:\n{out.stderr[-3000:]}")
    return rows


def table(zray_rows, ray_rows):
    ray_by_size = {r["size"]: r for r in ray_rows}
    lines = ["| tasks finished | call | zray | Ray 2.x | Ray / zray |", "|---:|---|---:|---:|---:|"]
    for z in zray_rows:
        r = ray_by_size.get(z["size"])
        for op in OPS:
            zs = z[op]
            rs = r[op] if r else None
            ratio = f"{rs / zs:.0f}x" if rs and zs else "n/a"
            lines.append(f"| {z['size']:,} | `{op}` | {zs * 1000:.1f} ms | "
                         + (f"{rs * 1000:.1f} ms" if rs is not None else "n/a") + f" | {ratio} |")
    notes = []
    for z in zray_rows:
        r = ray_by_size.get(z["size"])
        notes.append(f"- {z['size']:,} tasks: zray counted {z['counted']:,} "
                     f"({z['tasks_per_s']:,} tasks/s submitted)"
                     + (f"; Ray counted {r['counted']:,} ({r['tasks_per_s']:,} tasks/s)" if r
                        else ""))
    return "\n".join(lines + [""] + notes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--side", choices=["zray", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--ray-python", default=None)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--markdown", default=None, help="also write the table here")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    if not sizes or sizes[0] < 1 or args.repeats < 1:
        parser.error("--sizes needs positive ints and --repeats >= 1")
    if args.side:
        side(args.side, sizes, args.repeats)
        return 0
    zray_rows = run_side(sys.executable, "zray", sizes, args.repeats, args.timeout)
    ray_rows = []
    ray_python = args.ray_python or (DEFAULT_RAY_PYTHON if os.path.exists(DEFAULT_RAY_PYTHON)
                                     else None)
    if ray_python and not args.no_ray:
        try:
            ray_rows = run_side(ray_python, "ray", sizes, args.repeats, args.timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"Ray side: {exc}", file=sys.stderr)
    text = table(zray_rows, ray_rows)
    print(text)
    print(json.dumps({"zray": zray_rows, "ray": ray_rows}))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
