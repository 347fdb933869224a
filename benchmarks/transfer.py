"""How fast an object moves between two nodes over TCP (CURVE), pulled by the reader's node.

    python -m benchmarks.transfer [--sizes-mb 100,1000] [--rounds 3] [--json]

Two `zray start` nodes on loopback, each with its own ZRAY_TMPDIR and port. A driver on node A
puts a numpy array; a driver on node B waits until the object is ready (so the owner's answer is
not timed), then times `zray.get`: B's daemon pulls the object from A's in windowed chunks into
its own store, and the get returns a zero-copy view of that copy. GB/s = 10^9 bytes per
second. Every round uses a new object (a second get would read B's copy), and waits until
both copies are freed before the next.
"""
import argparse
import json
import os
import sys
import tempfile

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import REPO  # noqa: E402

if os.path.join(REPO, "tests") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "tests"))
from helpers.nodes import Cluster, Driver  # noqa: E402

PUT = """
import pickle
import numpy as np
arr = np.ones({size}, dtype=np.uint8)
arr[::4096] = 7
ref = zray.put(arr)
del arr
with open({path!r}, "wb") as f:
    pickle.dump(ref, f)
"""

GET = """
import pickle, time
with open({path!r}, "rb") as f:
    ref = pickle.load(f)
zray.wait([ref], timeout=60)
t0 = time.perf_counter()
value = zray.get(ref, timeout=600)
took = time.perf_counter() - t0
assert value.nbytes == {size} and int(value[::4096].sum()) == 7 * len(value[::4096])
del value, ref
import gc; gc.collect()
result = took
"""

DROP = "globals().pop('ref', None); import gc; gc.collect()"


def measure(sizes, rounds, workdir):
    """[{"size": bytes, "seconds": [per round], "gb_per_s": best}] for each size."""
    from pathlib import Path
    store = int(max(sizes) * 1.25) + (64 << 20)
    cluster = Cluster(Path(workdir), 2, object_store_memory=store)
    owner = reader = None
    out = []
    try:
        if cluster.wait_converged(30) is None:
            raise RuntimeError("the two nodes did not see each other")
        owner = Driver(cluster.dirs[0], os.path.join(workdir, "owner.log"))
        reader = Driver(cluster.dirs[1], os.path.join(workdir, "reader.log"))
        path = os.path.join(workdir, "ref.pkl")
        for size in sizes:
            seconds = []
            for _ in range(rounds):
                owner.run(PUT.format(size=size, path=path), timeout=300)
                seconds.append(reader.run(GET.format(size=size, path=path), timeout=900))
                owner.run(DROP)
                if cluster.wait(lambda: all(cluster.store_stats(i)["used"] == 0 for i in (0, 1)),
                                60) is None:
                    raise RuntimeError("the copies were not freed after a round")
            out.append({"size": size, "seconds": seconds, "gb_per_s": size / min(seconds) / 1e9})
    finally:
        for d in (owner, reader):
            if d is not None:
                d.close()
        cluster.stop_all()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.transfer")
    p.add_argument("--sizes-mb", default="100,1000", help="object sizes, in 10^6 bytes")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    sizes = [int(float(s) * 1e6) for s in args.sizes_mb.split(",")]
    with tempfile.TemporaryDirectory(prefix="zt-transfer-") as workdir:
        results = measure(sizes, args.rounds, workdir)
    for r in results:
        if args.json:
            print(json.dumps(r))
        else:
            mean = sum(r["seconds"]) / len(r["seconds"])
            print(f"{r['size'] / 1e6:8.1f} MB  {r['gb_per_s']:6.2f} GB/s (best of {len(r['seconds'])}; "
                  f"mean {r['size'] / mean / 1e9:.2f} GB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
