"""`zray microbenchmark`: the core's figures on this machine, each row as calls (or GB) per
second, mean ± std over repeated timed rounds. The Ray-comparison suite lives in benchmarks/."""
import json
import statistics
import subprocess
import sys
import time

INIT_PROBE = """
import time
t0 = time.perf_counter()
import zray
zray.init(num_cpus=2)
t1 = time.perf_counter()
@zray.remote
def f():
    return 1
zray.get(f.remote())
t2 = time.perf_counter()
print(t1 - t0, t2 - t0)
zray.shutdown()
"""


def timeit(name, fn, multiplier=1, duration=2.0, unit="per second", rounds=5):
    fn()   # warm up
    rates = []
    per_round = duration / rounds
    for _ in range(rounds):
        count = 0
        start = time.perf_counter()
        while True:
            fn()
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= per_round:
                break
        rates.append(count * multiplier / elapsed)
    mean = statistics.mean(rates)
    std = statistics.stdev(rates) if len(rates) > 1 else 0.0
    return {"name": name, "mean": mean, "std": std, "unit": unit}


def init_time(repeats=3):
    """Seconds from `import zray; init()` to the first task's result, in a fresh process."""
    results = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", INIT_PROBE], capture_output=True, text=True,
                             timeout=120, check=True)
        results.append([float(x) for x in out.stdout.split()])
    return results


def rows(duration=2.0, num_cpus=None):
    import numpy as np
    import zray
    zray.init(num_cpus=num_cpus or 2, object_store_memory=1 << 30)
    try:
        @zray.remote
        def noop():
            return None

        value = zray.put(0)
        big = np.zeros(100 << 20, dtype=np.uint8)
        big_ref = zray.put(big)
        yield timeit("single client get calls", lambda: zray.get(value), duration=duration)
        yield timeit("single client put calls", lambda: zray.put(0), duration=duration)
        yield timeit("single client tasks sync", lambda: zray.get(noop.remote()), duration=duration)
        yield timeit("single client tasks async", lambda: zray.get([noop.remote() for _ in range(1000)]),
                     multiplier=1000, duration=duration)
        yield timeit("single client put gigabytes", lambda: zray.put(big), multiplier=big.nbytes / 1e9,
                     duration=duration, unit="GB per second")
        yield timeit("single client get gigabytes (100 MB array)", lambda: zray.get(big_ref),
                     multiplier=big.nbytes / 1e9, duration=duration, unit="GB per second")
    finally:
        zray.shutdown()


def run(duration=2.0, num_cpus=None, as_json=False):
    for row in rows(duration, num_cpus):
        _print(row, as_json)
    times = init_time()
    for key, index in (("init()", 0), ("init() to first task result", 1)):
        vals = [t[index] for t in times]
        _print({"name": key, "mean": statistics.mean(vals), "std": statistics.pstdev(vals),
                "unit": "seconds"}, as_json)
    return 0


def _print(row, as_json):
    if as_json:
        print(json.dumps(row), flush=True)
    else:
        print(f"{row['name']:<45} {row['mean']:>12.2f} +- {row['std']:<10.2f} {row['unit']}", flush=True)
