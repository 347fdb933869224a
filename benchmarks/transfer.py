"""How fast an object moves between two nodes, beside a raw TCP stream on the same link.

    python -m benchmarks.transfer [--sizes-mb 100,1000] [--rounds 3] [--channels tcp,curve] [--json]
    python -m benchmarks.transfer --netns ...      (root: the two nodes on two hosts, below)

Each size is measured three ways in one run: `raw-tcp` (one process sends the bytes to another
over one loopback TCP stream, received into a preallocated buffer: the link's speed), `tcp`
(zray's data channel: plain TCP authenticated by the cluster secret, the default) and `curve`
(ZRAY_DATA_CHANNEL=curve: the bytes as CURVE-encrypted ZeroMQ chunks). `ratio` is zray's
GB/s over raw TCP's.

Two `zray start` nodes on loopback, each with its own ZRAY_TMPDIR and port. A driver on node A
puts a numpy array; a driver on node B waits until the object is ready (so the owner's answer is
not timed), then times `zray.get`: B's daemon pulls the object from A's in windowed chunks into
its own store, and the get returns a zero-copy view of that copy. GB/s = 10^9 bytes per
second. Every round uses a new object (a second get would read B's copy), and waits until
both copies are freed before the next.

`--netns` (root): node A and node B are two hosts, network namespaces joined by one veth pair
(10.79.0.1 and 10.79.0.2, MTU 1500 unless --mtu), the way two machines on one Ethernet segment
are: the raw TCP stream, the data channel and CURVE all cross the veth pair, each driver runs
on its node's host, and the raw stream's sender runs on A and its receiver on B.
"""
import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

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


RAW_SENDER = """
import socket, sys
size, port = int(sys.argv[1]), int(sys.argv[2])
buf = memoryview(bytearray(b"x" * min(size, 8 << 20)))
with socket.create_connection(("127.0.0.1", port)) as s:
    sent = 0
    while sent < size:
        n = min(len(buf), size - sent)
        s.sendall(buf[:n])
        sent += n
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
"""


RAW_RECEIVER = """
import socket, sys, time
size, host = int(sys.argv[1]), sys.argv[2]
listener = socket.socket()
listener.bind((host, 0))
listener.listen(1)
print(listener.getsockname()[1], flush=True)
target = memoryview(bytearray(size))
for i in range(0, size, 4096):
    target[i] = 0
listener.settimeout(30)
conn, _ = listener.accept()
conn.settimeout(120)
got = 0
t0 = time.perf_counter()
while got < size:
    k = conn.recv_into(target[got:])
    if k == 0:
        raise SystemExit("the raw sender stopped after %d of %d bytes" % (got, size))
    got += k
print(time.perf_counter() - t0, flush=True)
conn.sendall(b"k")
"""

RAW_SENDER_TO = RAW_SENDER.replace('("127.0.0.1", port)', "(sys.argv[3], port)")


def raw_tcp_seconds_between(size, hosts):
    """As raw_tcp_seconds, from host 0 to host 1 of `hosts` (netns.VethPair)."""
    receiver = subprocess.Popen([*hosts.wrap(1), sys.executable, "-c", RAW_RECEIVER, str(size),
                                 hosts.addresses[1]], stdout=subprocess.PIPE, text=True)
    try:
        port = receiver.stdout.readline().strip()
        sender = subprocess.Popen([*hosts.wrap(0), sys.executable, "-c", RAW_SENDER_TO,
                                   str(size), port, hosts.addresses[1]])
        took = receiver.stdout.readline().strip()
        sender.wait(timeout=120)
        if receiver.wait(timeout=60) != 0 or not took:
            raise RuntimeError("the raw TCP stream over the veth pair failed")
        return float(took)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()


def raw_tcp_seconds(size):
    """Seconds one loopback TCP stream takes to move `size` bytes between two processes, from
    the accepted connection to the last byte received (the sender is running by then)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    target = memoryview(bytearray(size))
    for i in range(0, size, 4096):     # touch the pages, as the store's region is prefaulted
        target[i] = 0
    sender = subprocess.Popen([sys.executable, "-c", RAW_SENDER, str(size),
                               str(listener.getsockname()[1])])
    try:
        listener.settimeout(30)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(120)
            got = 0
            t0 = time.perf_counter()
            while got < size:
                k = conn.recv_into(target[got:])
                if k == 0:
                    raise RuntimeError(f"the raw sender stopped after {got} of {size} bytes")
                got += k
            took = time.perf_counter() - t0
            conn.sendall(b"k")
        return took
    finally:
        listener.close()
        sender.wait(timeout=60)


def measure(sizes, rounds, workdir, channel="tcp", raw_seconds=None, hosts=None):
    """[{"channel", "size": bytes, "seconds": [per round], "gb_per_s": best}] for each size.
    Before each round a raw TCP stream of the same size is timed into raw_seconds[size].
    `hosts` (netns.VethPair): the nodes, drivers and raw stream on its two hosts."""
    import collections
    raw_seconds = collections.defaultdict(list) if raw_seconds is None else raw_seconds
    from pathlib import Path
    store = int(max(sizes) * 1.25) + (64 << 20)
    workdir = os.path.join(workdir, channel)
    os.makedirs(workdir)
    placed = [(hosts.wrap(i), hosts.addresses[i]) for i in (0, 1)] if hosts else None
    cluster = Cluster(Path(workdir), 2, object_store_memory=store,
                      env={"ZRAY_DATA_CHANNEL": channel}, hosts=placed)
    owner = reader = None
    out = []
    try:
        if cluster.wait_converged(30) is None:
            raise RuntimeError("the two nodes did not see each other")
        owner = Driver(cluster.dirs[0], os.path.join(workdir, "owner.log"),
                       wrap=hosts.wrap(0) if hosts else ())
        reader = Driver(cluster.dirs[1], os.path.join(workdir, "reader.log"),
                        wrap=hosts.wrap(1) if hosts else ())
        path = os.path.join(workdir, "ref.pkl")
        for size in sizes:
            seconds = []
            for _ in range(rounds):
                owner.run(PUT.format(size=size, path=path), timeout=300)
                raw_seconds[size].append(raw_tcp_seconds_between(size, hosts) if hosts
                                         else raw_tcp_seconds(size))   # side by side
                seconds.append(reader.run(GET.format(size=size, path=path), timeout=900))
                owner.run(DROP)
                if cluster.wait(lambda: all(cluster.store_stats(i)["used"] == 0 for i in (0, 1)),
                                60) is None:
                    raise RuntimeError("the copies were not freed after a round")
            out.append({"channel": channel, "size": size, "seconds": seconds,
                        "gb_per_s": size / min(seconds) / 1e9})
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
    p.add_argument("--channels", default="tcp,curve",
                   help="zray data channels to measure beside raw TCP: tcp, curve")
    p.add_argument("--json", action="store_true")
    p.add_argument("--netns", action="store_true",
                   help="the two nodes on two hosts joined by a veth pair (root)")
    p.add_argument("--mtu", type=int, default=None, help="--netns: the veth pair's MTU")
    args = p.parse_args(argv)
    if args.mtu is not None and not args.netns:
        p.error("--mtu applies to --netns only")
    sizes = [int(float(s) * 1e6) for s in args.sizes_mb.split(",")]
    channels = [c for c in args.channels.split(",") if c]
    for channel in channels:
        if channel not in ("tcp", "curve"):
            p.error(f"unknown channel {channel!r}: expected tcp or curve")
    raw_seconds = {size: [] for size in sizes}
    results = []
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="zt-transfer-"))
        hosts = None
        if args.netns:
            import netns
            if not netns.available():
                p.error("--netns needs root and `ip netns`")
            hosts = stack.enter_context(netns.VethPair(tag=os.getpid(), mtu=args.mtu))
        for channel in channels:
            results += measure(sizes, args.rounds, workdir, channel, raw_seconds, hosts)
        if not channels:
            for size in sizes:
                raw_seconds[size] = [raw_tcp_seconds_between(size, hosts) if hosts
                                     else raw_tcp_seconds(size) for _ in range(args.rounds)]
    link = (f"veth pair between two network namespaces, MTU {args.mtu or 1500}" if args.netns
            else "loopback")
    results = [{"channel": "raw-tcp", "size": size, "seconds": raw_seconds[size],
                "gb_per_s": size / min(raw_seconds[size]) / 1e9} for size in sizes] + results
    raw = {r["size"]: r["gb_per_s"] for r in results if r["channel"] == "raw-tcp"}
    if not args.json:
        print(f"link: {link}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for r in results:
        r["ratio"] = r["gb_per_s"] / raw[r["size"]]
        r["link"] = "veth" if args.netns else "loopback"
        if args.json:
            print(json.dumps(r))
        else:
            mean = sum(r["seconds"]) / len(r["seconds"])
            print(f"{r['channel']:>8} {r['size'] / 1e6:8.1f} MB  {r['gb_per_s']:6.2f} GB/s "
                  f"x{r['ratio']:.2f} of raw TCP (best of {len(r['seconds'])}; "
                  f"mean {r['size'] / mean / 1e9:.2f} GB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
