"""`zray microbenchmark`: the rows of Ray's `ray microbenchmark`, measured on this machine.

Each row has Ray's name and the same workload (batch sizes, number of clients and actors, the
latter scaled to the CPU count as Ray scales them) and prints calls (or GB) per second as
mean ± std over timed rounds. The workloads take the runtime *module* as a parameter, so the same
code measures `zray` and `ray`; `benchmarks/compare_ray.py` runs this file, one row per fresh
process, under each runtime's interpreter and puts the results side by side.

This file is also run as a plain script (`python .../microbenchmark.py --runtime ray`) by an
interpreter that has Ray but not zray's dependencies, so it imports nothing from zray at module
level, only the standard library; numpy and psutil are imported where they are used.

Rows of Ray's list that zray does not have yet: Ray's object out-of-scope callback rows and
client (ray://) rows, which use Ray's private APIs.
"""
import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

PER_SECOND = "per second"
GB_PER_SECOND = "GB per second"
SECONDS = "seconds"


# -- the timing helper (the one used by every benchmark in this repository) --------------------
def timeit(fn, multiplier=1.0, duration=2.0, rounds=4, warmup=1.0):
    """Call `fn` back to back and return (mean, std) of `multiplier * calls / second`.

    First `warmup` seconds of calls (at least one call) are not counted; then `rounds` rounds of
    `duration / rounds` seconds each (at least one call per round) give one rate each. A round
    ends at the first call that finishes after its time is up, so a slow call stretches a round
    rather than being cut off; when the warm-up shows that one call takes longer than a round,
    the number of rounds drops (to 2 at least) so the row keeps close to `duration`. std is the
    population standard deviation over the rounds."""
    start = time.perf_counter()
    deadline = start + warmup
    calls = 0
    while True:
        fn()
        calls += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    per_call = (now - start) / calls
    if rounds > 2 and per_call * rounds > duration:
        rounds = max(2, int(duration / per_call))
    per_round = duration / rounds
    rates = []
    for _ in range(rounds):
        calls = 0
        start = time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= per_round:
                break
        rates.append(multiplier * calls / elapsed)
    return statistics.fmean(rates), statistics.pstdev(rates)


def cpu_count():
    return os.cpu_count() or 1


# -- rows -----------------------------------------------------------------------------------------
@dataclass
class Workload:
    fn: Callable[[], object]
    multiplier: float = 1.0
    unit: str = PER_SECOND
    keep: list = field(default_factory=list)   # actors/refs that must live while fn runs


@dataclass
class Row:
    name: str
    setup: Callable   # setup(ctx) -> Workload
    kind: str = "ray"  # "ray": a row of Ray's microbenchmark; "extra": zray's comparison rows


ROWS = []


def row(name, kind="ray"):
    def register(setup):
        ROWS.append(Row(name, setup, kind))
        return setup
    return register


class Context:
    """What a row's setup needs: the runtime module, its remote definitions, and `scale`, a
    factor on every batch size and array size (1.0: Ray's sizes; the smoke test uses ~0.01)."""

    def __init__(self, rt, scale=1.0):
        self.rt = rt
        self.scale = scale
        self.defs = define_remotes(rt)

    def n(self, count):
        return max(1, int(round(count * self.scale)))


def define_remotes(rt):
    """The remote functions and classes that Ray's microbenchmark uses, built with `rt`.

    They are closures on purpose: cloudpickle then ships them by value, so a worker can run them
    whether this file was imported as a module or run as a script."""
    import numpy as np
    defs = {}

    def small_value():
        return b"ok"
    small_value = rt.remote(small_value)

    class Actor:
        def small_value(self):
            return b"ok"

        def small_value_arg(self, x):
            return b"ok"

        def small_value_batch(self, n):
            rt.get([small_value.remote() for _ in range(n)])

    class AsyncActor:
        async def small_value(self):
            return b"ok"

        async def small_value_with_arg(self, x):
            return b"ok"

    class Client:
        def __init__(self, servers):
            self.servers = servers if isinstance(servers, list) else [servers]

        def small_value_batch(self, n):
            refs = []
            for server in self.servers:
                refs.extend(server.small_value.remote() for _ in range(n))
            rt.get(refs)

        def small_value_batch_arg(self, n):
            x = rt.put(0)
            refs = []
            for server in self.servers:
                refs.extend(server.small_value_arg.remote(x) for _ in range(n))
            rt.get(refs)

    def do_put_small(count):
        for _ in range(count):
            rt.put(0)

    def do_put(count, length):
        for _ in range(count):
            rt.put(np.zeros(length, dtype=np.int64))

    def create_object_containing_ref(count):
        return [rt.put(1) for _ in range(count)]

    def call_actors(actors, n):
        rt.get([actors[i % len(actors)].small_value.remote() for i in range(n)])

    defs["small_value"] = small_value
    defs["Actor"] = rt.remote(num_cpus=0)(Actor)
    defs["AsyncActor"] = rt.remote(AsyncActor)
    defs["Client"] = rt.remote(num_cpus=0)(Client)
    defs["do_put_small"] = rt.remote(do_put_small)
    defs["do_put"] = rt.remote(do_put)
    defs["create_object_containing_ref"] = rt.remote(create_object_containing_ref)
    defs["call_actors"] = rt.remote(call_actors)
    return defs


def _batch_get(ctx, submit, n):
    rt = ctx.rt
    return lambda: rt.get([submit() for _ in range(n)])


@row("single client get calls")
def _(ctx):
    rt = ctx.rt
    value = rt.put(0)
    return Workload(lambda: rt.get(value), keep=[value])


@row("single client put calls")
def _(ctx):
    rt = ctx.rt
    return Workload(lambda: rt.put(0))


@row("multi client put calls")
def _(ctx):
    tasks, puts = ctx.n(10), ctx.n(100)
    do_put_small = ctx.defs["do_put_small"]
    return Workload(_batch_get(ctx, lambda: do_put_small.remote(puts), tasks), tasks * puts)


@row("single client put gigabytes")
def _(ctx):
    import numpy as np
    rt = ctx.rt
    arr = np.zeros(ctx.n(100 * 1024 * 1024), dtype=np.int64)   # 800 MiB, as in Ray
    return Workload(lambda: rt.put(arr), arr.nbytes / 1e9, GB_PER_SECOND, keep=[arr])


@row("single client tasks and get batch")
def _(ctx):
    # Ray counts batches of 1000 tasks per second here, not tasks.
    small_value = ctx.defs["small_value"]
    return Workload(_batch_get(ctx, small_value.remote, ctx.n(1000)))


@row("multi client put gigabytes")
def _(ctx):
    tasks, puts, length = ctx.n(10), ctx.n(10), ctx.n(10 * 1024 * 1024)   # 80 MiB arrays
    do_put = ctx.defs["do_put"]
    return Workload(_batch_get(ctx, lambda: do_put.remote(puts, length), tasks),
                    tasks * puts * length * 8 / 1e9, GB_PER_SECOND)


@row("single client get object containing 10k refs")
def _(ctx):
    rt = ctx.rt
    ref = ctx.defs["create_object_containing_ref"].remote(ctx.n(10000))
    rt.get(ref)
    return Workload(lambda: rt.get(ref), keep=[ref])


@row("single client wait 1k refs")
def _(ctx):
    rt = ctx.rt
    small_value = ctx.defs["small_value"]
    n = ctx.n(1000)

    def wait_one_by_one():
        not_ready = [small_value.remote() for _ in range(n)]
        fetch_local = True   # Ray fetches on the first wait only; the fetch requests persist
        for _ in range(n):
            _, not_ready = rt.wait(not_ready, fetch_local=fetch_local)
            fetch_local = False
    return Workload(wait_one_by_one)


@row("single client tasks sync")
def _(ctx):
    rt = ctx.rt
    small_value = ctx.defs["small_value"]
    return Workload(lambda: rt.get(small_value.remote()))


@row("single client tasks async")
def _(ctx):
    n = ctx.n(1000)
    return Workload(_batch_get(ctx, ctx.defs["small_value"].remote, n), n)


@row("multi client tasks async")
def _(ctx):
    rt = ctx.rt
    n, m = ctx.n(10000), 4
    actors = [ctx.defs["Actor"].remote() for _ in range(m)]
    return Workload(lambda: rt.get([a.small_value_batch.remote(n) for a in actors]), n * m,
                    keep=actors)


def _one_actor_batch(ctx, actor_class, n, with_arg=False, **options):
    rt = ctx.rt
    cls = actor_class.options(**options) if options else actor_class
    actor = cls.remote()
    if with_arg:
        fn = lambda: rt.get([actor.small_value_with_arg.remote(i) for i in range(n)])  # noqa: E731
    elif n == 1:
        fn = lambda: rt.get(actor.small_value.remote())  # noqa: E731
    else:
        fn = lambda: rt.get([actor.small_value.remote() for _ in range(n)])  # noqa: E731
    return Workload(fn, n, keep=[actor])


@row("1:1 actor calls sync")
def _(ctx):
    return _one_actor_batch(ctx, ctx.defs["Actor"], 1)


@row("1:1 actor calls async")
def _(ctx):
    return _one_actor_batch(ctx, ctx.defs["Actor"], ctx.n(1000))


@row("1:1 actor calls concurrent")
def _(ctx):
    return _one_actor_batch(ctx, ctx.defs["Actor"], ctx.n(1000), max_concurrency=16)


def _one_to_n(ctx, server_class):
    rt = ctx.rt
    n, servers = ctx.n(5000), max(1, cpu_count() // 2)
    actors = [server_class.remote() for _ in range(servers)]
    client = ctx.defs["Client"].remote(actors)
    return Workload(lambda: rt.get(client.small_value_batch.remote(n)), n * servers,
                    keep=actors + [client])


def _n_to_n(ctx, server_class):
    rt = ctx.rt
    n, m, servers = ctx.n(5000), 4, max(1, cpu_count() // 2)
    actors = [server_class.remote() for _ in range(servers)]
    call_actors = ctx.defs["call_actors"]
    return Workload(lambda: rt.get([call_actors.remote(actors, n) for _ in range(m)]), n * m,
                    keep=actors)


@row("1:n actor calls async")
def _(ctx):
    return _one_to_n(ctx, ctx.defs["Actor"])


@row("n:n actor calls async")
def _(ctx):
    return _n_to_n(ctx, ctx.defs["Actor"])


@row("n:n actor calls with arg async")
def _(ctx):
    rt = ctx.rt
    n, servers = ctx.n(1000), max(1, cpu_count() // 2)
    actors = [ctx.defs["Actor"].remote() for _ in range(servers)]
    clients = [ctx.defs["Client"].remote(a) for a in actors]
    return Workload(lambda: rt.get([c.small_value_batch_arg.remote(n) for c in clients]),
                    n * len(clients), keep=actors + clients)


@row("1:1 async-actor calls sync")
def _(ctx):
    return _one_actor_batch(ctx, ctx.defs["AsyncActor"], 1)


@row("1:1 async-actor calls async")
def _(ctx):
    return _one_actor_batch(ctx, ctx.defs["AsyncActor"], ctx.n(1000))


@row("1:1 async-actor calls with args async")
def _(ctx):
    return _one_actor_batch(ctx, ctx.defs["AsyncActor"], ctx.n(1000), with_arg=True)


@row("1:n async-actor calls async")
def _(ctx):
    return _one_to_n(ctx, ctx.defs["AsyncActor"])


@row("n:n async-actor calls async")
def _(ctx):
    return _n_to_n(ctx, ctx.defs["AsyncActor"])


@row("placement group create/removal")
def _(ctx):
    # Ray's workload: 100 groups of one bundle of 0.001 "custom" (ray_perf.py starts its cluster
    # with resources={"custom": 100} for this row), wait() for each, then remove each. A cluster
    # without "custom" reserves 0.001 CPU instead: the cost does not depend on the name.
    import importlib
    util = importlib.import_module(ctx.rt.__name__ + ".util")
    name = "custom" if ctx.rt.cluster_resources().get("custom", 0) >= 1 else "CPU"
    num_pgs = ctx.n(100)

    def create_removal():
        pgs = [util.placement_group(bundles=[{name: 0.001}]) for _ in range(num_pgs)]
        [pg.wait(timeout_seconds=30) for pg in pgs]
        for pg in pgs:
            util.remove_placement_group(pg)
    return Workload(create_removal, num_pgs)


# Extra rows (not in Ray's list): large objects, as the Ray comparison reports them.
@row("put gigabytes (100 MB array)", kind="extra")
def _(ctx):
    import numpy as np
    rt = ctx.rt
    arr = np.ones(ctx.n(100 * 1000 * 1000), dtype=np.uint8)   # touched pages, not calloc zeros
    return Workload(lambda: rt.put(arr), arr.nbytes / 1e9, GB_PER_SECOND, keep=[arr])


@row("get gigabytes (100 MB array)", kind="extra")
def _(ctx):
    import numpy as np
    rt = ctx.rt
    ref = rt.put(np.ones(ctx.n(100 * 1000 * 1000), dtype=np.uint8))
    nbytes = rt.get(ref).nbytes
    return Workload(lambda: rt.get(ref), nbytes / 1e9, GB_PER_SECOND, keep=[ref])


@row("get calls (1 GB array)", kind="extra")
def _(ctx):
    import numpy as np
    rt = ctx.rt
    ref = rt.put(np.ones(ctx.n(1000 * 1000 * 1000), dtype=np.uint8))
    return Workload(lambda: rt.get(ref), keep=[ref])


def select_rows(filter=None, exact=None, extras=False):
    chosen = []
    for r in ROWS:
        if exact is not None:
            if r.name == exact:
                chosen.append(r)
            continue
        if r.kind == "extra" and not extras:
            continue
        if filter and filter not in r.name:
            continue
        chosen.append(r)
    return chosen


def measure(ctx, r, duration=2.0, rounds=4, warmup=1.0):
    """Set one row up and time it: {'name', 'mean', 'std', 'unit'}."""
    work = r.setup(ctx)
    mean, std = timeit(work.fn, work.multiplier, duration, rounds, warmup)
    return {"name": r.name, "mean": mean, "std": std, "unit": work.unit}


def run_rows(rt, rows, duration=2.0, scale=1.0, rounds=4, warmup=1.0, settle=0.0,
             init_kwargs=None):
    """Start a cluster with `rt`, yield one result per row, shut it down."""
    rt.init(**(init_kwargs or {}))
    try:
        ctx = Context(rt, scale)
        if settle:
            time.sleep(settle)
        for r in rows:
            yield measure(ctx, r, duration, rounds, warmup)
    finally:
        rt.shutdown()


# -- probes that need a fresh process -------------------------------------------------------------
def probe_init(rt_name):
    """Seconds for import, init(), and init() to the first task's result, in this (fresh)
    process."""
    t0 = time.perf_counter()
    rt = importlib.import_module(rt_name)
    t1 = time.perf_counter()
    rt.init(num_cpus=2)
    t2 = time.perf_counter()

    def one():
        return 1
    if rt.get(rt.remote(one).remote()) != 1:
        raise RuntimeError(f"{rt_name}: the first task returned a wrong result")
    t3 = time.perf_counter()
    rt.shutdown()
    return {"import": t1 - t0, "init": t2 - t1, "first_result": t3 - t1}


def session_dir_of(rt, info):
    for source in (info, getattr(info, "address_info", None)):
        try:
            return source["session_dir"]
        except (TypeError, KeyError):
            pass
    try:   # Ray
        return rt._private.worker._global_node.get_session_dir_path()
    except AttributeError:
        return None


def cluster_processes(session_dir=None, root_pid=None):
    """This process, its descendants, and any process whose command line names the session."""
    import psutil
    root = psutil.Process(root_pid or os.getpid())
    procs = {root.pid: root}
    for p in root.children(recursive=True):
        procs[p.pid] = p
    if session_dir:
        tag = os.path.basename(os.path.normpath(session_dir))
        for p in psutil.process_iter(["cmdline"]):
            if p.pid not in procs and any(tag in a for a in (p.info["cmdline"] or ())):
                procs[p.pid] = p
    return list(procs.values())


def memory_of(procs):
    """(rss, pss) in MB summed over the processes (pss: shared pages split among sharers)."""
    import psutil
    rss = pss = 0
    for p in procs:
        try:
            info = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss / 1e6, pss / 1e6


def probe_memory(rt_name, settle=5.0):
    """Memory of an idle cluster started with init(num_cpus=2), measured after `settle` s."""
    rt = importlib.import_module(rt_name)
    info = rt.init(num_cpus=2)

    def one():
        return 1
    rt.get(rt.remote(one).remote())
    time.sleep(settle)
    procs = cluster_processes(session_dir_of(rt, info))
    rss, pss = memory_of(procs)
    rt.shutdown()
    return {"rss_mb": rss, "pss_mb": pss, "processes": len(procs)}


def zmq_roundtrip(duration=2.0, rounds=4, warmup=0.5):
    """REQ/REP round trips per second between this process and a child over ipc://: the floor
    of what one synchronous request costs on this machine with pyzmq."""
    import zmq
    with tempfile.TemporaryDirectory(prefix="zb") as tmp:
        address = f"ipc://{tmp}/rep"
        server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--zmq-echo", address],
                                  stdin=subprocess.DEVNULL)
        context = zmq.Context()
        sock = context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        try:
            def ping():
                sock.send(b"x")
                sock.recv()
            return timeit(ping, 1, duration, rounds, warmup)
        finally:
            sock.send(b"")
            sock.recv()
            sock.close()
            context.term()
            server.wait(timeout=10)


def _zmq_echo(address):
    import zmq
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.bind(address)
    while True:
        msg = sock.recv()
        sock.send(msg)
        if not msg:
            break
    sock.close()
    context.term()


# -- command line ---------------------------------------------------------------------------------
def add_arguments(parser):
    parser.add_argument("--duration", type=float, default=2.0,
                        help="timed seconds per row (after a warm-up; default 2)")
    parser.add_argument("--filter", default=None, metavar="SUBSTRING",
                        help="run only the rows whose name contains SUBSTRING")
    parser.add_argument("--json", action="store_true", help="print rows as JSON lines")
    parser.add_argument("--extras", action="store_true",
                        help="also run the large-object rows and the init() time probe")
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="num_cpus for init() (default: all CPUs, as `ray microbenchmark`)")
    parser.add_argument("--warmup", type=float, default=1.0, help="untimed seconds per row")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds per row")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="factor on batch and array sizes (1: Ray's sizes)")


def run(args, rt_name="zray"):
    """Print the rows; returns an exit code."""
    rt = importlib.import_module(rt_name)
    init_kwargs = {} if args.num_cpus is None else {"num_cpus": args.num_cpus}
    rows = select_rows(args.filter, extras=args.extras)
    for result in run_rows(rt, rows, args.duration, args.scale, args.rounds, args.warmup,
                           init_kwargs=init_kwargs):
        print_row(result, args.json)
    if args.extras and (not args.filter or args.filter in "init() to first task result"):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--runtime", rt_name,
                              "--probe", "init"], capture_output=True, text=True, check=True,
                             timeout=300)
        probe = json.loads(out.stdout.strip().splitlines()[-1])
        print_row({"name": "init() to first task result", "mean": probe["first_result"],
                   "std": 0.0, "unit": SECONDS}, args.json)
    return 0


def print_row(result, as_json=False):
    if as_json:
        print(json.dumps(result), flush=True)
    else:
        print(f"{result['name']:<45} {result['unit']:<13} {result['mean']:>14,.2f} "
              f"± {result['std']:,.2f}", flush=True)


def main(argv=None):
    """Script entry (used by benchmarks/compare_ray.py under either runtime's interpreter)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--runtime", default="zray", help="module to measure: zray or ray")
    parser.add_argument("--row", default=None, help="run exactly this row")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds to wait after init() before the first row")
    parser.add_argument("--probe", choices=("init", "memory"), default=None)
    parser.add_argument("--zmq-echo", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.zmq_echo:
        _zmq_echo(args.zmq_echo)
        return 0
    if args.probe == "init":
        print(json.dumps(probe_init(args.runtime)), flush=True)
        return 0
    if args.probe == "memory":
        print(json.dumps(probe_memory(args.runtime, settle=args.settle or 5.0)), flush=True)
        return 0
    if args.row is None:
        return run(args, args.runtime)
    rt = importlib.import_module(args.runtime)
    init_kwargs = {} if args.num_cpus is None else {"num_cpus": args.num_cpus}
    for result in run_rows(rt, select_rows(exact=args.row), args.duration, args.scale,
                           args.rounds, args.warmup, args.settle, init_kwargs):
        print_row(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
