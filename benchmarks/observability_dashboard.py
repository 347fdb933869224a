"""The dashboard with many actors: how fast the actors page is interactive in a real browser,
how long one page of the actors listing takes over HTTP, and what an idle dashboard costs.

    python benchmarks/observability_dashboard.py                  # 10k actors
    python benchmarks/observability_dashboard.py --actors 500 --idle-seconds 5 --json
    python benchmarks/observability_dashboard.py --ray            # also Ray 2.60's list_actors

The actors wait for a resource no node has (`{"nowhere": 1}`), so 10k of them are 10k real
records in the nodes' actor directories (PENDING_CREATION, listed with Ray's columns) without
10k worker processes, which no 2-core test machine could hold. "Interactive" is the time from
navigation to the first page of rows drawn, and from a click on a state filter or the next page
to the new rows drawn (headless chromium via playwright, when installed).

Idle cost: CPU seconds used by the dashboard process over `--idle-seconds` with no browser,
as a share of one core (the goal: at most 1%).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.abspath(__file__)
REPO = os.path.dirname(os.path.dirname(HERE))
CHROMIUM = "/usr/bin/chromium"
SEARCHES = 5
DEFAULT_RAY_PYTHON = "/opt/rayvenv/bin/python"


def _get_ms(url, rounds=5):
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as r:
            r.read()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _create_pending_actors(zray, n):
    @zray.remote
    class Parked:
        def ping(self):
            return 1

    handles = [Parked.options(resources={"nowhere": 1}, name=f"parked-{i}").remote()
               for i in range(n)]
    return handles


def _wait_listed(url, n, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "/api/actors?limit=1&counts=0", timeout=120) as r:
            if json.loads(r.read())["total"] >= n:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{n} actors were not listed within {timeout}s")


def _browser_times(url, n):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed"}
    if not os.path.exists(CHROMIUM):
        return {"skipped": f"{CHROMIUM} is not installed"}
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url + "/#cluster")
            page.wait_for_selector("[data-testid=this-node]", timeout=60000)
            t = time.perf_counter()
            page.goto(url + "/#actors")
            page.wait_for_selector("[data-testid=actors-table] >> text=Parked", timeout=60000)
            out["actors_page_interactive_ms"] = (time.perf_counter() - t) * 1000
            if n > 100:      # one page of rows only otherwise
                t = time.perf_counter()
                page.click("#actors-pager >> text=next")
                page.wait_for_selector("#actors-pager >> text=page 2 of", timeout=60000)
                out["next_page_ms"] = (time.perf_counter() - t) * 1000
            # From the input event to the matching row drawn (the page waits 150 ms of no
            # typing first), for SEARCHES different names; the median and every one.
            times = []
            for k in range(min(SEARCHES, n)):
                name = f"parked-{n - 1 - k}"
                t = time.perf_counter()
                page.fill("#actors-q", name)
                page.wait_for_selector(f"[data-testid=actors-table] >> text={name}",
                                       timeout=60000)
                times.append((time.perf_counter() - t) * 1000)
            out["search_ms_incl_150ms_debounce"] = statistics.median(times)
            out["search_ms_each"] = [round(x) for x in times]
        finally:
            browser.close()
    return out


def _idle_cpu(pid, seconds):
    import psutil
    proc = psutil.Process(pid)
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    used = (after.user + after.system) - (before.user + before.system)
    return {"idle_seconds": seconds, "cpu_seconds": round(used, 4),
            "share_of_one_core_percent": round(100 * used / seconds, 3)}


def run_zray(n, idle_seconds, browser=True):
    sys.path.insert(0, REPO)
    import zray
    from zray.dashboard.launch import read_dashboard_info
    ctx = zray.init(num_cpus=2)
    try:
        url = ctx["dashboard_url"]
        dash_pid = read_dashboard_info(ctx["session_dir"])["pid"]
        result = {"system": "zray", "actors": n}
        if idle_seconds:
            time.sleep(5)         # past the dashboard's own start (imports, first samples)
            result["idle"] = _idle_cpu(dash_pid, idle_seconds)
        t = time.perf_counter()
        handles = _create_pending_actors(zray, n)
        _wait_listed(url, n)
        result["create_and_list_s"] = round(time.perf_counter() - t, 2)
        result["api_first_page_ms"] = round(_get_ms(url + "/api/actors?limit=100&counts=0"), 1)
        result["api_first_page_with_state_counts_ms"] = round(_get_ms(url + "/api/actors?limit=100"), 1)
        result["api_page_50_ms"] = round(_get_ms(url + f"/api/actors?limit=100&offset={max(0, n - 100)}&counts=0"), 1)
        result["api_search_ms"] = round(_get_ms(
            url + f"/api/actors?limit=100&detail=1&counts=0&q=parked-{n - 1}"), 1)
        if browser:
            result["browser"] = {k: (round(v, 1) if isinstance(v, float) else v)
                                 for k, v in _browser_times(url, n).items()}
        del handles
        return result
    finally:
        zray.shutdown()


RAY_SCRIPT = r'''
import json, sys, time, statistics
import ray
from ray.util.state import list_actors
n = int(sys.argv[1])
ctx = ray.init(num_cpus=2, include_dashboard=True)
address = ctx.address_info["gcs_address"]     # other Ray clusters may run on this host
@ray.remote
class Parked:
    def ping(self): return 1
t = time.perf_counter()
hs = [Parked.options(resources={"nowhere": 1}, name=f"parked-{i}").remote() for i in range(n)]
deadline = time.time() + 300
while time.time() < deadline:
    try:
        if len(list_actors(address=address, limit=n + 10, raise_on_missing_output=False)) >= n:
            break
    except Exception:
        pass
    time.sleep(0.5)
created = time.perf_counter() - t
times = []
for _ in range(5):
    t = time.perf_counter()
    list_actors(address=address, limit=100, raise_on_missing_output=False)
    times.append((time.perf_counter() - t) * 1000)
print("RESULT " + json.dumps({"system": "ray", "actors": n, "create_and_list_s": round(created, 2),
                              "state_api_list_actors_100_ms": round(statistics.median(times), 1)}))
ray.shutdown()
'''


def run_ray(n, python):
    if not os.path.exists(python):
        return {"system": "ray", "skipped": f"{python} not found"}
    proc = subprocess.run([python, "-c", RAY_SCRIPT, str(n)], capture_output=True, text=True,
                          timeout=1800, env=dict(os.environ, RAY_ADDRESS=""))
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"system": "ray", "skipped": f"failed: {proc.stderr[-500:]}"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--actors", type=int, default=10_000)
    p.add_argument("--idle-seconds", type=float, default=20.0)
    p.add_argument("--no-browser", action="store_true")
    p.add_argument("--ray", action="store_true", help="also Ray's state API (list_actors, "
                   "through its dashboard, which needs Ray's auth headers)")
    p.add_argument("--ray-python", default=DEFAULT_RAY_PYTHON)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.actors < 1:
        p.error("--actors must be >= 1")
    results = [run_zray(args.actors, args.idle_seconds, browser=not args.no_browser)]
    if args.ray:
        results.append(run_ray(args.actors, args.ray_python))
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(json.dumps(r, indent=2))
    return results


if __name__ == "__main__":
    main()
