"""Where the time of benchmarks/train.py's zray fit() goes, phase by phase, with CPU time.

    python benchmarks/train_phases.py [--rows 4096] [--epochs 5] [--workers 2] [--repeat 1]
                                      [--backend gloo]

Runs the zray case of benchmarks/train.py (the same loop, data and trainer) in a fresh
subprocess per repeat and prints, from the driver's and the workers' timestamps
(Result._stats), the wall time of each phase of fit() and the CPU seconds of every process of
the run: the driver, the node daemon, the zygote (which imports torch for the workers), the
workers (their own CPU, from their fork), and anything else the node started. On a shared
machine CPU time is the steadier figure; wall time is what fit() costs.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid):
    """utime + stime of a live process, in seconds (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return None


def _children():
    """{pid: (ppid, name)} of every process on the machine."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        out[int(entry)] = (ppid, cmd)
    return out


def _descendants(root):
    procs = _children()
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, cmd) in procs.items():
            if ppid == parent and pid not in found:
                found[pid] = (ppid, cmd)
                frontier.append(pid)
    return found


def child(args):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import resource
    t_start = time.time()
    import zray
    from zray.train import RunConfig, ScalingConfig
    from zray.train.torch import TorchConfig, TorchTrainer
    from benchmarks.train import train_loop
    t_import = time.time()
    zray.init(num_cpus=args.workers)
    t_init = time.time()
    me = os.getpid()
    procs = _descendants(me)
    cpu_before = {pid: _cpu_of(pid) for pid in procs}
    storage = tempfile.mkdtemp(prefix="zray_train_phases_")
    trainer = TorchTrainer(
        train_loop, train_loop_config={"lib": "zray", "rows": args.rows, "epochs": args.epochs},
        torch_config=TorchConfig(backend=args.backend),
        scaling_config=ScalingConfig(num_workers=args.workers),
        run_config=RunConfig(name="bench", storage_path=storage, verbose=0))
    driver_cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    t0 = time.time()
    result = trainer.fit()
    t1 = time.time()
    driver_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - driver_cpu0
    after = _descendants(me)
    procs.update(after)
    node = {}
    for pid, (ppid, cmd) in procs.items():
        c1 = _cpu_of(pid)
        if c1 is None:
            continue               # a worker of the group, gone: its own figure is below
        node[pid] = (ppid, cmd, c1 - (cpu_before.get(pid) or 0.0), cpu_before.get(pid) or 0.0)
    zray.shutdown()
    import shutil
    shutil.rmtree(storage, ignore_errors=True)
    return {"import_s": t_import - t_start, "init_s": t_init - t_import, "fit_s": t1 - t0,
            "fit_start": t0, "fit_end": t1, "driver_cpu_s": driver_cpu,
            "phases": result._stats["phases"], "workers": result._stats["workers"],
            "history": result.metrics_history if hasattr(result, "metrics_history") else None,
            "metrics": result.metrics, "node": {str(k): v for k, v in node.items()},
            "driver_pid": me}


def _name(pid, node):
    """What a process of the node is: the daemon, its zygote (a child running the same
    command), a worker (the zygote's child), or its command line."""
    def depth(p):                  # how many ancestors run the daemon's command
        n = 0
        while p in node and node[p][1] == node[pid][1]:
            n, p = n + 1, str(node[p][0])
        return n
    if "zray.node.daemon" in node[pid][1]:
        return ("daemon", "zygote", "other worker")[min(depth(pid) - 1, 2)]
    words = node[pid][1].split()
    return " ".join(words[words.index("-m"):][:2] if "-m" in words else words[:2])[-40:]


def show(res):
    t0 = res["fit_start"]
    ph = res["phases"]
    rel = lambda t: t - t0              # noqa: E731
    print(f"  import zray+torch {res['import_s']:.2f} s, init {res['init_s']:.2f} s, "
          f"fit {res['fit_s']:.2f} s")
    marks = sorted(((rel(v), k) for k, v in ph.items()), key=lambda x: x[0])
    for r, w in sorted(res["workers"].items()):
        marks += [(rel(w["created"]), f"rank {r} actor created (pid {w['pid']})"),
                  (rel(w["run_start"]), f"rank {r} run() starts"),
                  (rel(w["backend_up"]), f"rank {r} process group up"),
                  (rel(w["loop_end"]), f"rank {r} loop returned"),
                  (rel(w["backend_end"]), f"rank {r} process group destroyed")]
    marks.append((res["fit_end"] - t0, "fit() returned"))
    marks.sort(key=lambda x: x[0])
    prev = 0.0
    for at, what in marks:
        print(f"    {at:6.2f} s  (+{at - prev:5.2f})  {what}")
        prev = at
    loop_s = res["metrics"].get("loop_s")
    print(f"  rank 0's loop (first epoch to last report): {loop_s:.2f} s")
    print("  CPU seconds during fit() (and before it: init and after)")
    print(f"    driver            {res['driver_cpu_s']:6.2f}")
    workers = {str(w["pid"]) for w in res["workers"].values()}
    for pid, (ppid, cmd, cpu, before) in sorted(res["node"].items(), key=lambda x: -x[1][2]):
        if pid not in workers and (cpu >= 0.01 or before >= 0.01):
            print(f"    {_name(pid, res['node']):<17} {cpu:6.2f}  ({before:.2f} before; pid {pid})")
    for r, w in sorted(res["workers"].items()):
        print(f"    worker rank {r}     {w['cpu_s']:6.2f}  (pid {w['pid']}, to its loop's end)")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--backend", default="gloo")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return 0
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for i in range(args.repeat):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--rows",
                              str(args.rows), "--epochs", str(args.epochs), "--workers",
                              str(args.workers), "--backend", args.backend],
                             capture_output=True, text=True, env=env, timeout=600)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode != 0 or not line:
            print(out.stdout[-3000:], out.stderr[-3000:])
            return 1
        res = json.loads(line[-1][len("RESULT "):])
        print(f"# run {i + 1}: load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")
        show(res)
        print("JSON " + json.dumps({k: res[k] for k in ("fit_s", "init_s", "driver_cpu_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
