"""Allreduce benchmark of zray.util.collective beside raw mpi4py and Ray's gloo backend.

    python benchmarks/collective.py [--world 2] [--min 4096] [--max 67108864] [--tiny]
                                    [--repeat N] [--no-ray] [--formation-rounds N]

Prints nccl-tests columns (bytes, time, algbw, busbw; busbw = algbw * 2(n-1)/n) per backend:
  zray-cpu      the cpu backend between zray actors (shared memory, one node)
  zray-cpu-net  the cpu backend forced onto ZeroMQ (what crosses nodes)
  zray-mpi      the mpi backend between zray actors (Open_port/Accept/Connect)
  zray-mpi-spmd the mpi backend's default group under `mpiexec -n <world> python -m
                zray.launch --spmd` (the job's communicator, item 6): the same calls as
                zray-mpi, over MPICH's own shared memory instead of a joined communicator
  raw-mpi4py    comm.Allreduce(IN_PLACE) under `mpiexec -n <world>` (buffer API)
  ray-gloo      ray.util.collective's gloo backend, run by /opt/rayvenv/bin/python when
                Ray and torch import there (else n/a)
then the ratios of each zray backend to raw mpi4py and to Ray (wall times). float32, in
place. Each table also shows the CPU time per call of the busiest rank's process.
Then the mpi backend "paired" with raw mpi4py: in the same ranks (the actors, and the --spmd
ranks), on the same communicator, blocks of zray calls alternating with blocks of raw
`Allreduce(IN_PLACE)` calls, each row's median block. MPICH's speed differs between launches
(at 1 MiB one launch reads 170-180 us a call and another 200-220 us, for the same program), so
a ratio between two launches shows which mode each drew; the paired ratio is the backend's own
cost against the raw call, and is what the "mpi >= 0.9x raw" target is read from.
First (unless --formation-rounds 0) the group-formation figures: create_collective_group of 4
fresh actors (cold) and of the same actors again (warm), alone and with the first allreduce.
"""
import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time

log = logging.getLogger("zray.util.collective")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY_PYTHON = "/opt/rayvenv/bin/python"
SETTLE_S = 1.0     # between columns: the last one's processes and nodes finish exiting


def sizes(lo, hi):
    out, s = [], lo
    while s <= hi:
        out.append(s)
        s *= 4
    return out


def iterations(nbytes, tiny):
    """Calls per size: 2000 up to 64 KiB (a run of a few ms is one scheduler episode: two
    ranks sharing a core for a moment made a whole size's figure), fewer above."""
    return 2 if tiny else max(3, min(2000, int(1.3e8 // max(nbytes, 1)) or 3))


def _time_allreduce(allreduce, barrier, nbytes, tiny):
    """[wall, cpu] per call over one block of `iterations` calls."""
    return _time_interleaved([allreduce], barrier, nbytes, tiny, blocks=1)[0]


def _time_interleaved(calls, barrier, nbytes, tiny, blocks=9, zeros=None):
    """[wall, cpu] per call of each of `calls`, timed in alternating blocks (A B A B ...) in
    these processes, each its median block: both rows see the same launch, the same buffer
    and the same moments of the machine. `zeros(n)`: the float32 buffer (numpy's default)."""
    if zeros is None:
        import numpy as np
        x = np.zeros(nbytes // 4, np.float32)      # stays finite under repeated sums
    else:
        x = zeros(nbytes // 4)
    iters = iterations(nbytes, tiny)
    blocks = min(blocks, iters)
    per_block = max(1, iters // blocks)
    # Warm up with as many calls as are timed: MPI sets up a size's first calls lazily, and
    # a core that slept needs a few ms to speed up (with 200 warm-up calls, raw 4 KiB read
    # 5-11 us a call on the column's first size, 2.8-3.1 after 2,000).
    for call in calls:
        for _ in range(iters):
            call(x)
    rows = [[] for _ in calls]
    for _ in range(blocks):
        for call, row in zip(calls, rows):
            barrier()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(per_block):
                call(x)
            row.append([(time.perf_counter() - t0) / per_block,
                        (time.process_time() - c0) / per_block])
    return [sorted(row)[len(row) // 2] for row in rows]


def _median_runs(runs):
    """Per size, the run of median wall time (its wall and CPU together)."""
    out = {}
    for nbytes in runs[0]:
        ordered = sorted((r[nbytes] for r in runs), key=lambda wc: wc[0])
        out[nbytes] = ordered[len(ordered) // 2]
    return out


def _slowest(per_rank):
    """[wall, cpu] per call over the ranks: the slowest rank's wall, the busiest one's CPU."""
    return [max(r[0] for r in per_rank), max(r[1] for r in per_rank)]


def run_zray(world, size_list, tiny):
    import zray
    import zray.util.collective as col

    @zray.remote(num_cpus=0)
    class Bench:
        def form(self, rank, backend, name, force_network):
            col.set_config(col.CollectiveConfig(force_network=force_network))
            col.init_collective_group(world, rank, backend, name)
            col.set_config(col.CollectiveConfig())

        def run(self, name, nbytes):
            return _time_allreduce(lambda x: col.allreduce(x, name),
                                   lambda: col.barrier(name), nbytes, tiny)

        def paired(self, name, nbytes):
            from mpi4py import MPI
            comm = col.get_group_handle(name).comm      # the group's own communicator
            return _time_interleaved(
                [lambda x: col.allreduce(x, name),
                 lambda x: comm.Allreduce(MPI.IN_PLACE, x, MPI.SUM)],
                comm.Barrier, nbytes, tiny)

    results = {}
    zray.init(num_cpus=max(2, world))
    try:
        actors = [Bench.remote() for _ in range(world)]
        plans = [("zray-cpu", "gloo", False), ("zray-cpu-net", "gloo", True)]
        if col.mpi_available():
            plans.append(("zray-mpi", "mpi", False))
        for label, backend, force in plans:
            t0 = time.perf_counter()
            zray.get([a.form.remote(r, backend, label, force) for r, a in enumerate(actors)],
                     timeout=120)
            log.info("%s formed in %.1f ms", label, (time.perf_counter() - t0) * 1e3)
            results[label] = {}
            for nbytes in size_list:
                times = zray.get([a.run.remote(label, nbytes) for a in actors], timeout=600)
                results[label][nbytes] = _slowest(times)
        if "zray-mpi" in results:
            paired = results["paired"] = {}
            for nbytes in size_list:
                rows = zray.get([a.paired.remote("zray-mpi", nbytes) for a in actors],
                                timeout=600)
                paired[nbytes] = (_slowest([r[0] for r in rows]) +
                                  _slowest([r[1] for r in rows]))
    finally:
        zray.shutdown()
    return results


def run_formation(rounds, world=4, backend="gloo", array_module="numpy", num_gpus=0):
    """create_collective_group of `world` fresh actors (cold: new actors, and the first group
    of the cluster in round 0), then the first allreduce (each actor forms the group there),
    then a second group on the same actors (warm). Medians in ms, and round 0's cold figures.
    The actors import `array_module` (their tensors' library) before the timing."""
    import importlib
    import statistics
    import zray
    import zray.util.collective as col

    @zray.remote(num_cpus=0, num_gpus=num_gpus)
    class Member:
        def ping(self):
            importlib.import_module(array_module)
            return 1

        def first(self, name):
            xp = importlib.import_module(array_module)
            x = xp.ones(16, xp.float32)
            col.allreduce(x, name)
            return float(x[0])

        def destroy(self, name):
            col.destroy_collective_group(name)

    def one(actors, name):
        t0 = time.perf_counter()
        col.create_collective_group(actors, world, list(range(world)), backend=backend,
                                    group_name=name)
        created = time.perf_counter() - t0
        assert zray.get([a.first.remote(name) for a in actors], timeout=120) == [world] * world
        first = time.perf_counter() - t0
        zray.get([a.destroy.remote(name) for a in actors], timeout=60)
        return created * 1e3, first * 1e3

    cold, warm = [], []
    zray.init(num_cpus=2, num_gpus=world * num_gpus)
    try:
        for r in range(rounds):
            actors = [Member.remote() for _ in range(world)]
            zray.get([a.ping.remote() for a in actors], timeout=120)      # the actors are up
            cold.append(one(actors, f"cold{r}"))
            warm.append(one(actors, f"warm{r}"))
            for a in actors:
                zray.kill(a)
    finally:
        zray.shutdown()
    med = [statistics.median(x[i] for x in rows) for rows in (cold, warm) for i in (0, 1)]
    return {"rounds": rounds, "world": world, "first_cold": cold[0], "cold": med[:2],
            "warm": med[2:]}


def formation_table(f, backend="zray's cpu backend"):
    lines = [f"# group formation, {backend}, {f['world']} actors, one node "
             f"(median of {f['rounds']} rounds; ms)",
             f"{'':>28} {'create':>10} {'create+1st allreduce':>22}"]
    for label, (c, first) in (("first group of the cluster", f["first_cold"]),
                              ("cold (fresh actors)", f["cold"]),
                              ("warm (same actors)", f["warm"])):
        lines.append(f"{label:>28} {c:>10.1f} {first:>22.1f}")
    return "\n".join(lines)


def raw_mpi_main(size_list, tiny):
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    if not tiny:
        # The column before (the spmd ranks and their nodes) may still be exiting.
        time.sleep(SETTLE_S)
        comm.Barrier()
    out = {}
    for nbytes in size_list:
        out[nbytes] = _slowest(comm.allgather(
            _time_allreduce(lambda x: comm.Allreduce(MPI.IN_PLACE, x, MPI.SUM), comm.Barrier,
                            nbytes, tiny)))
    if comm.Get_rank() == 0:
        print("RESULT " + json.dumps(out), flush=True)


def spmd_mpi_main(size_list, tiny):
    """One rank of `python -m zray.launch --spmd` under mpiexec: the default group is the
    job's communicator, formed on the first call."""
    import zray.util.collective as col
    from mpi4py import MPI
    if not tiny:
        # Each rank's node defers its warm-up (node/warmup.py: at the latest MAX_DELAY_S
        # after it serves, then imports and the store's prefault): time the steady state,
        # as for the other columns, not a node warming up beside two spinning ranks.
        from zray.node.warmup import MAX_DELAY_S
        time.sleep(MAX_DELAY_S + 2)
    out, world = {}, MPI.COMM_WORLD
    for nbytes in size_list:
        # Per size: the backend and raw mpi4py in these same ranks (beside the same nodes),
        # alternating blocks: [wall, cpu, raw wall, raw cpu].
        t, r = _time_interleaved([lambda x: col.allreduce(x),
                                  lambda x: world.Allreduce(MPI.IN_PLACE, x, MPI.SUM)],
                                 world.Barrier, nbytes, tiny)
        out[nbytes] = _slowest(world.allgather(t)) + _slowest(world.allgather(r))
    if col.get_rank() == 0:
        print("RESULT " + json.dumps(out), flush=True)


def ray_gloo_main(world, size_list, tiny):
    import ray
    import ray.util.collective as rcol
    ray.init(num_cpus=world, include_dashboard=False, log_to_driver=False)

    @ray.remote(num_cpus=1)
    class Bench:
        def form(self, rank):
            rcol.init_collective_group(world, rank, backend="gloo", group_name="b")

        def run(self, nbytes):
            import torch
            x = torch.zeros(nbytes // 4, dtype=torch.float32)
            rcol.allreduce(x, "b")
            iters = iterations(nbytes, tiny)
            rcol.barrier("b")
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(iters):
                rcol.allreduce(x, "b")
            return [(time.perf_counter() - t0) / iters, (time.process_time() - c0) / iters]

    actors = [Bench.remote() for _ in range(world)]
    ray.get([a.form.remote(r) for r, a in enumerate(actors)])
    out = {n: _slowest(ray.get([a.run.remote(n) for a in actors])) for n in size_list}
    ray.shutdown()
    print("RESULT " + json.dumps(out), flush=True)


def ray_formation_main(rounds, world=4):
    """Ray's create_collective_group (gloo) of `world` fresh actors, then the first allreduce;
    same shape as run_formation (torch imported in each actor before the timing)."""
    import statistics
    import ray
    import ray.util.collective as rcol
    ray.init(num_cpus=world, include_dashboard=False, log_to_driver=False)

    @ray.remote(num_cpus=0)
    class Member:
        def ping(self):
            import torch  # noqa: F401 - imported before the timing, as zray's actors import numpy
            return 1

        def first(self, name):
            import torch
            x = torch.ones(16, dtype=torch.float32)
            rcol.allreduce(x, name)
            return float(x[0])

    def one(actors, name):
        t0 = time.perf_counter()
        rcol.create_collective_group(actors, world, list(range(world)), backend="gloo",
                                     group_name=name)
        created = time.perf_counter() - t0
        assert ray.get([a.first.remote(name) for a in actors], timeout=300) == [world] * world
        return created * 1e3, (time.perf_counter() - t0) * 1e3

    cold, warm = [], []
    for r in range(rounds):
        actors = [Member.remote() for _ in range(world)]
        ray.get([a.ping.remote() for a in actors], timeout=300)
        cold.append(one(actors, f"cold{r}"))
        warm.append(one(actors, f"warm{r}"))
        for a in actors:
            ray.kill(a)
    ray.shutdown()
    med = [statistics.median(x[i] for x in rows) for rows in (cold, warm) for i in (0, 1)]
    print("RESULT " + json.dumps({"rounds": rounds, "world": world, "first_cold": cold[0],
                                  "cold": med[:2], "warm": med[2:]}), flush=True)


def _sub(cmd, timeout):
    env = dict(os.environ, PYTHONPATH=ROOT)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, "timed out"
    for line in p.stdout.splitlines():
        at = line.find("RESULT {")        # zray.launch prefixes a rank's lines with its name
        if at >= 0:
            data = json.loads(line[at + 7:])
            if "rounds" in data:           # formation figures
                return data, ""
            return {int(k): v for k, v in data.items()}, ""
    return None, (p.stderr.strip().splitlines() or ["no output"])[-1]


def run_raw_mpi(world, args, size_list):
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        return None, "no mpiexec"
    return _sub([mpiexec, "-n", str(world), sys.executable, os.path.abspath(__file__),
                 "--raw-mpi", *args], 900)


def run_spmd_mpi(world, args):
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        return None, "no mpiexec"
    return _sub([mpiexec, "-n", str(world), sys.executable, "-m", "zray.launch", "--spmd",
                 os.path.abspath(__file__), "--spmd-mpi", *args], 900)


def run_ray(world, args):
    if not os.path.exists(RAY_PYTHON):
        return None, "no Ray venv"
    check = subprocess.run([RAY_PYTHON, "-c", "import ray, torch"], capture_output=True,
                           timeout=120)
    if check.returncode:
        return None, "Ray or torch not importable in " + RAY_PYTHON
    if "--ray-formation" not in args:
        args = ["--ray-gloo", *args]
    return _sub([RAY_PYTHON, os.path.abspath(__file__), *args], 900)


def table(label, results, world):
    """nccl-tests' columns, and the CPU time per call of the busiest rank's process (all its
    threads: gloo moves data on its own threads): on a node shared with other work the wall
    time also counts waiting for a descheduled peer, the CPU time the work itself."""
    lines = [f"# {label}", f"{'bytes':>12} {'time(us)':>12} {'algbw(GB/s)':>12} "
                           f"{'busbw(GB/s)':>12} {'cpu(us)':>12}"]
    for nbytes, (t, cpu) in sorted(results.items()):
        alg = nbytes / t / 1e9
        lines.append(f"{nbytes:>12} {t * 1e6:>12.1f} {alg:>12.3f} "
                     f"{alg * 2 * (world - 1) / world:>12.3f} {cpu * 1e6:>12.1f}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--min", type=int, default=4096)
    ap.add_argument("--max", type=int, default=64 << 20)
    ap.add_argument("--tiny", action="store_true", help="one small size, 2 iterations")
    ap.add_argument("--raw-mpi", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ray-gloo", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--spmd-mpi", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the two mpiexec columns (zray-mpi-spmd, raw-mpi4py) this many "
                         "times, alternated, and show each size's median run")
    ap.add_argument("--formation-rounds", type=int, default=5,
                    help="rounds of the group-formation figures (0: skip them)")
    ap.add_argument("--formation-only", action="store_true")
    ap.add_argument("--ray-formation", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.tiny:
        a.min = a.max = 4096
    size_list = sizes(a.min, a.max)
    if a.raw_mpi:
        return raw_mpi_main(size_list, a.tiny)
    if a.ray_gloo:
        return ray_gloo_main(a.world, size_list, a.tiny)
    if a.spmd_mpi:
        return spmd_mpi_main(size_list, a.tiny)
    if a.ray_formation:
        return ray_formation_main(a.ray_formation)
    fwd = ["--world", str(a.world), "--min", str(a.min), "--max", str(a.max)] + \
        (["--tiny"] if a.tiny else [])
    if a.formation_rounds > 0:
        rounds = 1 if a.tiny else a.formation_rounds
        print(formation_table(run_formation(rounds)), flush=True)
        ray_f, why = (None, "skipped (--no-ray)") if a.no_ray else run_ray(
            a.world, ["--ray-formation", str(rounds)])
        print(formation_table(ray_f, "Ray's gloo backend") if ray_f
              else f"# Ray's group formation: n/a ({why})", flush=True)
    if a.formation_only:
        return 0
    results = run_zray(a.world, size_list, a.tiny)
    paired_actors = results.pop("paired", None)
    spmd_runs, raw_runs, spmd_why, why = [], [], "", ""
    for _ in range(max(1, a.repeat)):      # alternated: both see the same machine
        if "zray-mpi" in results:
            time.sleep(SETTLE_S)
            spmd, spmd_why = run_spmd_mpi(a.world, fwd)
            if spmd:
                spmd_runs.append(spmd)
        time.sleep(SETTLE_S)
        raw, why = run_raw_mpi(a.world, fwd, size_list)
        if raw:
            raw_runs.append(raw)
    raw_in_spmd = None
    if spmd_runs:
        results["zray-mpi-spmd"] = _median_runs([{k: v[:2] for k, v in r.items()}
                                                 for r in spmd_runs])
        raw_in_spmd = _median_runs([{k: v[2:] for k, v in r.items()} for r in spmd_runs])
    elif "zray-mpi" in results:
        log.warning("zray-mpi-spmd: n/a (%s)", spmd_why)
        print(f"# zray-mpi-spmd: n/a ({spmd_why})")
    raw = _median_runs(raw_runs) if raw_runs else None
    time.sleep(SETTLE_S)
    ray_res, ray_why = (None, "skipped (--no-ray)") if a.no_ray else run_ray(a.world, fwd)
    print(f"allreduce, float32, world size {a.world}, one node")
    for label, res in results.items():
        print(table(label, res, a.world))
    print(table("raw-mpi4py", raw, a.world) if raw else f"# raw-mpi4py: n/a ({why})")
    print(table("ray-gloo", ray_res, a.world) if ray_res else f"# ray-gloo: n/a ({ray_why})")
    print("# ratios (time of the reference / time of zray; > 1 means zray is faster)")
    print(f"{'bytes':>12} " + " ".join(f"{lbl + '/mpi':>18}" for lbl in results) +
          " " + " ".join(f"{lbl + '/ray':>18}" for lbl in results))
    for nbytes in size_list:
        cells = []
        for ref in (raw, ray_res):
            for label in results:
                cells.append(f"{ref[nbytes][0] / results[label][nbytes][0]:>18.2f}" if ref
                             else f"{'n/a':>18}")
        print(f"{nbytes:>12} " + " ".join(cells))
    paired = [(label, rows) for label, rows in (
        ("actors", paired_actors),
        ("spmd", raw_in_spmd and {n: results["zray-mpi-spmd"][n] + raw_in_spmd[n]
                                  for n in size_list})) if rows]
    if paired:
        print("# paired: the mpi backend and raw mpi4py Allreduce(IN_PLACE) on the same "
              "communicator in the same ranks, alternating blocks (median block, us; "
              "raw/zray > 1 means zray is faster)")
        print(f"{'bytes':>12} " + " ".join(f"{label + ' ' + col:>16}" for label, _ in paired
                                           for col in ("zray", "raw", "raw/zray")))
        for nbytes in size_list:
            cells = []
            for _, rows in paired:
                z, r = rows[nbytes][0], rows[nbytes][2]
                cells += [f"{z * 1e6:>16.1f}", f"{r * 1e6:>16.1f}", f"{r / z:>16.2f}"]
            print(f"{nbytes:>12} " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
