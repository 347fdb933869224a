"""From the launcher's start to the driver's first task result, on a real Slurm on this host.

    python benchmarks/launch.py [--repeat 3] [--nodes 1 3] [--no-ray]

zray: `srun -N n -n n python -m zray.launch app.py` (the app: init(), one task, print the
time). Ray (when /opt/rayvenv/bin/ray exists, one node only: Ray's nodes on one host would
fight over its fixed ports): its documented Slurm recipe, a head started with `ray start --head`
then the app with `ray.init(address="auto")`, without the recipe's sleeps (we poll for the
head instead, which favours Ray). The Slurm daemons come from tests/helpers/slurm.py.

Bytecode: an installed zray has its .pyc files; a checkout run with PYTHONDONTWRITEBYTECODE=1
compiles every module in every process (~1 s more per process here). The runs use a bytecode
cache of their own (PYTHONPYCACHEPREFIX in the work dir), filled by one untimed run first, so
the figures are those of an installed package. The load average is printed beside each row:
the machine these figures come from is shared, and its load moves them more than anything.
So is, for zray, the CPU time of the job's processes (srun, launchers, node daemons, zygotes,
workers: every process whose environment has the run's ZRAY_TMPDIR) when the first result
arrives, read from /proc by the app after it took its timestamp: steadier than the wall time
when the cores are shared.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from helpers.slurm import SlurmCluster  # noqa: E402

RAY_PYTHON = "/opt/rayvenv/bin/python"
APP = """
import time, sys
import {module} as rt
rt.init({init_args})
@rt.remote
def one():
    return 1
assert rt.get(one.remote()) == 1
print("FIRST", time.time(), flush=True)
{cpu}
"""
JOB_CPU = """
import os
mark = ("ZRAY_TMPDIR=" + os.environ["ZRAY_TMPDIR"]).encode()
ticks = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if mark not in f.read().split(b"\\0"):
                continue
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
    except OSError:
        continue
    ticks += int(fields[11]) + int(fields[12])
print("JOBCPU", ticks / os.sysconf("SC_CLK_TCK"), flush=True)
"""


def _first(stdout):
    for line in stdout.splitlines():
        if "FIRST" in line:
            return float(line.split()[-1])
    raise RuntimeError(f"no result in output: {stdout[-2000:]}")


def _job_cpu(stdout):
    for line in stdout.splitlines():
        if "JOBCPU" in line:
            return float(line.split()[-1])
    return None


def _bytecode_env(workdir):
    """An installed package's start: .pyc files are read from (and written to) a cache."""
    return {"PYTHONPYCACHEPREFIX": os.path.join(workdir, "pycache"),
            "PYTHONDONTWRITEBYTECODE": ""}


def zray_once(slurm, nodes, workdir):
    app = os.path.join(workdir, "zray_app.py")
    with open(app, "w") as f:
        f.write(APP.format(module="zray", init_args="", cpu=JOB_CPU))
    env = {"PYTHONPATH": REPO, "ZRAY_TMPDIR": workdir, **_bytecode_env(workdir)}
    start = time.time()
    done = slurm.run(["srun", "-N", str(nodes), "-n", str(nodes), sys.executable, "-m",
                      "zray.launch", "--no-prefix", app], env=env, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return _first(done.stdout) - start, _job_cpu(done.stdout)


def ray_once(slurm, workdir):
    app = os.path.join(workdir, "ray_app.py")
    with open(app, "w") as f:
        f.write(APP.format(module="ray", init_args="address='auto'", cpu=""))
    env = {"RAY_USAGE_STATS_ENABLED": "0", "PATH": os.path.dirname(RAY_PYTHON) + ":" + os.environ["PATH"],
           **_bytecode_env(workdir)}
    start = time.time()
    head = slurm.run(["srun", "-N", "1", "-n", "1", "-w", "n1", os.path.join(os.path.dirname(RAY_PYTHON), "ray"),
                      "start", "--head", "--num-cpus", "1", "--disable-usage-stats"], env=env,
                     timeout=180)
    try:
        if head.returncode != 0:
            raise RuntimeError(head.stderr[-3000:])
        done = subprocess.run([RAY_PYTHON, app], env=dict(os.environ, **env), capture_output=True,
                              text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-3000:])
        return _first(done.stdout) - start
    finally:
        subprocess.run([os.path.join(os.path.dirname(RAY_PYTHON), "ray"), "stop", "--force"],
                       env=dict(os.environ, **env), capture_output=True, timeout=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="zray-launch-bench-") as workdir, \
            SlurmCluster(nodes=max(args.nodes), cpus=2) as slurm:
        rows = []
        zray_once(slurm, max(args.nodes), workdir)          # fills the bytecode cache
        for n in args.nodes:
            load = os.getloadavg()[0]
            runs = [zray_once(slurm, n, workdir) for _ in range(args.repeat)]
            cpus = [cpu for _, cpu in runs if cpu is not None]
            rows.append((f"zray srun -N {n} -> first result", [t for t, _ in runs], load,
                         statistics.median(cpus) if cpus else None))
        if not args.no_ray and os.path.exists(RAY_PYTHON):
            ray_once(slurm, workdir)
            load = os.getloadavg()[0]
            times = [ray_once(slurm, workdir) for _ in range(args.repeat)]
            rows.append(("Ray head via srun + app, 1 node -> first result", times, load, None))
        print(f"{'row':<52} {'median s':>9} {'min s':>7} {'load':>6} {'CPU-s':>6}   "
              f"({os.cpu_count()} CPUs)")
        for name, times, load, cpu in rows:
            cpu_text = f"{cpu:>6.2f}" if cpu is not None else f"{'-':>6}"
            print(f"{name:<52} {statistics.median(times):>9.2f} {min(times):>7.2f} {load:>6.1f} "
                  f"{cpu_text}")
        return [(name, times) for name, times, _, _ in rows]


if __name__ == "__main__":
    main()
