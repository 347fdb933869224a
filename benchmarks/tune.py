"""zray.tune vs Ray Tune 2.x vs plain Optuna, side by side in one run.

    python benchmarks/tune.py [--tiny 100,200] [--asha 20x10] [--optuna 100]
                              [--ray-python PATH | --no-ray] [--json FILE]

Workloads (the same code for both runtimes, `tune` being `zray.tune` or `ray.tune`):
  tiny N      N trials of a function that reports one metric once (grid_search over N values)
  asha TxR    T trials x R reports each under ASHAScheduler(max_t=R, grace_period=1)
  optuna N    N trials with OptunaSearch(seed=0) on a 2-parameter space
Plain Optuna runs the same objective with study.optimize(n_trials=N): the floor.

Each side runs in a subprocess of its own interpreter (zray: this one; Ray: --ray-python,
default /opt/rayvenv/bin/python when it exists), so neither shares a process or an idle
cluster with the other. A side's cluster is started once (init() is timed apart); each
workload's time is `Tuner.fit()` wall time with the default TuneConfig/RunConfig except a
temporary storage_path. A Ray workload that exceeds --timeout is reported as such.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

DEFAULT_RAY_PYTHON = "/opt/rayvenv/bin/python"
MARK = "TUNE_BENCH_RESULT "


# ---------------------------------------------------------------- the side that runs

def _side(runtime, workloads, storage):
    if runtime == "optuna":
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        for kind, n, _ in workloads:
            def objective(trial):
                x = trial.suggest_float("x", -10, 10)
                y = trial.suggest_categorical("y", [0, 1])
                return (x - 2) ** 2 + y
            t0 = time.perf_counter()
            study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0),
                                        direction="minimize")
            study.optimize(objective, n_trials=n)
            _emit(kind, n, time.perf_counter() - t0, len(study.trials))
        return
    if runtime == "ray":
        import ray
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch
        from ray.tune.schedulers import ASHAScheduler
    else:
        import zray as ray
        from zray import tune
        from zray.tune.search.optuna import OptunaSearch
        from zray.tune.schedulers import ASHAScheduler
    t0 = time.perf_counter()
    ray.init()
    _emit("init", 0, time.perf_counter() - t0, 0)

    def tiny(config):
        tune.report({"score": config["i"]})

    def reports(config):
        for i in range(config["reports"]):
            tune.report({"score": config["q"] * (i + 1)})

    def objective(config):
        tune.report({"loss": (config["x"] - 2) ** 2 + config["y"]})

    for kind, n, r in workloads:
        run_config = tune.RunConfig(storage_path=storage, name=f"{runtime}_{kind}_{n}")
        if kind == "tiny":
            tuner = tune.Tuner(tiny, param_space={"i": tune.grid_search(list(range(n)))},
                               run_config=run_config)
        elif kind == "asha":
            tuner = tune.Tuner(
                reports, param_space={"q": tune.uniform(0, 1), "reports": r},
                tune_config=tune.TuneConfig(metric="score", mode="max", num_samples=n,
                                            scheduler=ASHAScheduler(max_t=r, grace_period=1)),
                run_config=run_config)
        else:
            tuner = tune.Tuner(
                objective, param_space={"x": tune.uniform(-10, 10), "y": tune.choice([0, 1])},
                tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=n,
                                            search_alg=OptunaSearch(seed=0)),
                run_config=run_config)
        t0 = time.perf_counter()
        results = tuner.fit()
        took = time.perf_counter() - t0
        _emit(kind, n, took, len(results), results.num_errors)
    ray.shutdown()


def _emit(kind, n, seconds, trials, errors=0):
    print(MARK + json.dumps({"kind": kind, "n": n, "seconds": seconds, "trials": trials,
                             "errors": errors}), flush=True)


# ---------------------------------------------------------------- the parent

def run_side(python, runtime, workloads, timeout):
    spec = ",".join(f"{k}:{n}:{r}" for k, n, r in workloads)
    with tempfile.TemporaryDirectory(prefix=f"tune_bench_{runtime}_") as storage:
        env = dict(os.environ)
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if runtime == "zray":
            env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
        else:
            env.pop("PYTHONPATH", None)
        cmd = [python, os.path.abspath(__file__), "--side", runtime, "--workloads", spec,
               "--storage", storage]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
            out, err, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err, rc = f"timed out after {timeout}s", "timeout"
    rows = {}
    for line in out.splitlines():
        if line.startswith(MARK):
            row = json.loads(line[len(MARK):])
            rows[(row["kind"], row["n"])] = row
    if rc != 0:
        sys.stderr.write(f"[{runtime}] exit {rc}: {err[-2000:]}\n")
    return rows


def parse_workloads(args):
    out = []
    for n in filter(None, args.tiny.split(",")):
        out.append(("tiny", int(n), 1))
    if args.asha:
        t, r = args.asha.lower().split("x")
        out.append(("asha", int(t), int(r)))
    for n in filter(None, args.optuna.split(",")):
        out.append(("optuna", int(n), 1))
    return out


def label(kind, n, r):
    return {"tiny": f"{n} tiny trials", "asha": f"ASHA {n} trials x {r} reports",
            "optuna": f"OptunaSearch {n} trials"}[kind]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", default="100,200")
    p.add_argument("--asha", default="20x10")
    p.add_argument("--optuna", default="100")
    p.add_argument("--ray-python", default=None)
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--no-optuna-floor", action="store_true")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--json", default=None)
    p.add_argument("--side", default=None, help=argparse.SUPPRESS)
    p.add_argument("--workloads", default=None, help=argparse.SUPPRESS)
    p.add_argument("--storage", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side:
        workloads = [(k, int(n), int(r)) for k, n, r in
                     (w.split(":") for w in args.workloads.split(","))]
        _side(args.side, workloads, args.storage)
        return 0

    workloads = parse_workloads(args)
    ray_python = None
    if not args.no_ray:
        ray_python = args.ray_python or (DEFAULT_RAY_PYTHON if os.path.exists(DEFAULT_RAY_PYTHON)
                                         else None)
    # Cheapest first, so a side that runs out of --timeout still reports the small ones.
    ordered = sorted(workloads, key=lambda w: w[1] * w[2])
    results = {"zray": run_side(sys.executable, "zray", ordered, args.timeout)}
    if ray_python:
        results["ray"] = run_side(ray_python, "ray", ordered, args.timeout)
    optuna_loads = [w for w in workloads if w[0] == "optuna"]
    if optuna_loads and not args.no_optuna_floor:
        results["optuna"] = run_side(sys.executable, "optuna", optuna_loads, args.timeout)

    def cell(side, key):
        row = results.get(side, {}).get(key)
        if row is None:
            return None
        return row["seconds"]

    header = f"{'workload':34} {'zray s':>9} {'Ray s':>9} {'Optuna s':>9} {'Ray/zray':>9} " \
             f"{'zray/Optuna':>11} {'zray trials/s':>13}"
    lines = [header, "-" * len(header)]
    init_z, init_r = cell("zray", ("init", 0)), cell("ray", ("init", 0))
    lines.append(f"{'init()':34} {_f(init_z):>9} {_f(init_r):>9} {'':>9} "
                 f"{_ratio(init_r, init_z):>9}")
    table = []
    for kind, n, r in workloads:
        z, ry, o = cell("zray", (kind, n)), cell("ray", (kind, n)), cell("optuna", (kind, n))
        rate = n / z if z else None
        lines.append(f"{label(kind, n, r):34} {_f(z):>9} {_f(ry):>9} {_f(o):>9} "
                     f"{_ratio(ry, z):>9} {_ratio(z, o):>11} {_f(rate, 1):>13}")
        table.append({"workload": label(kind, n, r), "zray_s": z, "ray_s": ry, "optuna_s": o,
                      "ray_over_zray": (ry / z) if z and ry else None,
                      "zray_trials_per_s": rate})
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": table, "init": {"zray": init_z, "ray": init_r}}, f, indent=2)
    return 0


def _f(v, digits=3):
    return "n/a" if v is None else f"{v:.{digits}f}"


def _ratio(a, b):
    return "n/a" if not a or not b else f"{a / b:.1f}x"


if __name__ == "__main__":
    sys.exit(main())
