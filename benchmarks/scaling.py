"""How per-operation costs grow with the size of the queue and of the object table.

    python -m benchmarks.scaling [--max 10000] [--runtime zray|ray] [--json]

Queue: N tasks are submitted at once, then all are gotten; prints the cost per task (µs, and its
submit and get parts) and the memory per queued task (RSS growth of the driver, and of the whole
cluster, between before the submission and right after it, divided by N).

Live objects: N refs from put() are held; at each level the cost of one put + get of a small
value is timed, and the RSS growth of the driver per held object is printed.

Levels are 1k, 10k and 100k (capped by --max). With `--runtime ray` it measures Ray instead
(ray must import in this interpreter, e.g. `/opt/rayvenv/bin/python -m benchmarks.scaling
--runtime ray`).
"""
import argparse
import gc
import importlib
import json
import os
import subprocess
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import REPO, cluster_processes, timeit  # noqa: E402

LEVELS = (1000, 10000, 100000)


def _rss(procs):
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except Exception:   # a worker exited meanwhile
            pass
    return total


def queue_costs(rt, levels):
    """One result per level: per-task µs (total, submit, get) and bytes per queued task."""
    import psutil
    driver = psutil.Process()

    def noop():
        return None
    noop = rt.remote(noop)
    rt.get([noop.remote() for _ in range(100)])   # workers up, function exported
    results = []
    for n in levels:
        gc.collect()
        procs = cluster_processes()
        driver0, cluster0 = driver.memory_info().rss, _rss(procs)
        t0 = time.perf_counter()
        refs = [noop.remote() for _ in range(n)]
        t1 = time.perf_counter()
        driver1, cluster1 = driver.memory_info().rss, _rss(cluster_processes())
        rt.get(refs)
        t2 = time.perf_counter()
        del refs
        results.append({"tasks": n, "us_per_task": (t2 - t0) / n * 1e6,
                        "submit_us": (t1 - t0) / n * 1e6, "get_us": (t2 - t1) / n * 1e6,
                        "driver_bytes_per_task": (driver1 - driver0) / n,
                        "cluster_bytes_per_task": (cluster1 - cluster0) / n})
    return results


def object_costs(rt, levels, duration=1.0):
    """One result per level: µs per put+get of a small value while `level` refs are held, and
    driver bytes per held object."""
    import psutil
    driver = psutil.Process()
    held = []
    timeit(lambda: rt.get(rt.put(0)), 1, 0.05, rounds=1, warmup=0.05)   # first-use allocations
    gc.collect()
    base = driver.memory_info().rss
    results = []
    for n in levels:
        held.extend(rt.put(i) for i in range(len(held), n))
        gc.collect()
        grown = driver.memory_info().rss - base
        mean, _ = timeit(lambda: rt.get(rt.put(0)), 1, duration, rounds=2, warmup=0.2)
        results.append({"objects": n, "us_per_put_get": 1e6 / mean,
                        "driver_bytes_per_object": grown / n})
    del held
    return results


def levels_up_to(cap):
    return [n for n in LEVELS if n <= cap] or [cap]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max", type=int, default=max(LEVELS), help="largest level (default 100000)")
    parser.add_argument("--runtime", default="zray", help="module to measure: zray (default) or ray")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--duration", type=float, default=1.0,
                        help="timed seconds per put+get level")
    parser.add_argument("--json", action="store_true", help="print results as JSON lines")
    parser.add_argument("--only", choices=("queue", "objects"), default=None,
                        help="run one part in this process (default: each part in a fresh "
                             "process, so memory freed by one does not hide growth in the other)")
    args = parser.parse_args(argv)
    if args.only is None:
        results = {}
        for part in ("queue", "objects"):
            cmd = [sys.executable, "-m", "benchmarks.scaling", "--only", part, "--json",
                   "--max", str(args.max), "--runtime", args.runtime,
                   "--num-cpus", str(args.num_cpus), "--duration", str(args.duration)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
            results[part] = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
        report(args, results["queue"], results["objects"])
        return 0
    rt = importlib.import_module(args.runtime)
    rt.init(num_cpus=args.num_cpus)
    try:
        if args.only == "queue":
            results = queue_costs(rt, levels_up_to(args.max))
        else:
            results = object_costs(rt, levels_up_to(args.max), args.duration)
    finally:
        rt.shutdown()
    if args.json:
        for r in results:
            print(json.dumps(r), flush=True)
    else:
        report(args, results if args.only == "queue" else [],
               results if args.only == "objects" else [])
    return 0


def report(args, queue, objects):
    if args.json:
        for r in queue + objects:
            print(json.dumps(r))
        return
    if queue:
        print(f"{args.runtime}: tasks submitted at once, then all gotten")
        print(f"{'tasks':>8} {'µs/task':>9} {'submit µs':>10} {'get µs':>8} {'driver B/task':>14} "
              f"{'cluster B/task':>15}")
        for r in queue:
            print(f"{r['tasks']:>8} {r['us_per_task']:>9.1f} {r['submit_us']:>10.1f} "
                  f"{r['get_us']:>8.1f} {r['driver_bytes_per_task']:>14.0f} "
                  f"{r['cluster_bytes_per_task']:>15.0f}")
    if objects:
        print(f"\n{args.runtime}: put + get of a small value while N refs are held")
        print(f"{'refs':>8} {'µs/put+get':>11} {'driver B/object':>16}")
        for r in objects:
            print(f"{r['objects']:>8} {r['us_per_put_get']:>11.1f} "
                  f"{r['driver_bytes_per_object']:>16.0f}")


if __name__ == "__main__":
    sys.exit(main())
