"""runtime_env costs, zray and (where found) Ray 2.x side by side.

    python benchmarks/runtime_env.py [--tasks 1000] [--files 200] [--file-kib 16]
                                     [--pip tabulate==0.8.10] [--ray-python PATH | --no-ray]
                                     [--json FILE]

Rows (each side in its own interpreter and cluster, num_cpus=2; seconds):
  init              init() of a one-node cluster
  plain tasks       --tasks no-op tasks with no runtime_env, submitted then all fetched
  env tasks         the same with a job runtime_env of env_vars (workers of that environment)
  new env first     the first task in a new env_vars environment (a worker started for it)
  pip first / again with --pip: the first task in that pip environment (built from the
                    registry), then the first task of another environment with the same
                    requirements (the node's virtual environment is reused)
  init working_dir  init(runtime_env={"working_dir": ...}) with --files files of --file-kib KiB
                    (Ray zips and uploads it here; zray ships it at the first task)
  working_dir first the first task of that job (zray: zipped, put, fetched and unpacked)
  working_dir again the first task of another environment with the same working_dir (the
                    node's unpacked copy is reused; a worker is still started)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

DEFAULT_RAY_PYTHON = "/opt/rayvenv/bin/python"
MARK = "RUNTIME_ENV_BENCH "


def _side(runtime, args):
    if runtime == "ray":
        import ray
    else:
        import zray as ray
    rows = {}

    @ray.remote
    def noop():
        return os.getpid()

    with tempfile.TemporaryDirectory() as wd:
        for i in range(args.files):
            with open(os.path.join(wd, f"f{i}.bin"), "wb") as f:
                f.write(os.urandom(args.file_kib * 1024))

        def timed(name, fn):
            t0 = time.perf_counter()
            fn()
            rows[name] = time.perf_counter() - t0

        extra = {"include_dashboard": False} if runtime == "ray" else {}
        timed("init", lambda: ray.init(num_cpus=2, **extra))
        ray.get(noop.remote())
        timed("plain tasks", lambda: ray.get([noop.remote() for _ in range(args.tasks)]))
        timed("new env first", lambda: ray.get(
            noop.options(runtime_env={"env_vars": {"NEW": "1"}}).remote()))
        if args.pip:
            timed("pip first", lambda: ray.get(
                noop.options(runtime_env={"pip": [args.pip]}).remote()))
            timed("pip again", lambda: ray.get(
                noop.options(runtime_env={"pip": [args.pip], "env_vars": {"Y": "1"}}).remote()))
        ray.shutdown()
        ray.init(num_cpus=2, runtime_env={"env_vars": {"JOB": "1"}}, **extra)
        ray.get(noop.remote())
        timed("env tasks", lambda: ray.get([noop.remote() for _ in range(args.tasks)]))
        ray.shutdown()
        # Ray takes a local working_dir at the job level only: the same for both.
        timed("init working_dir", lambda: ray.init(num_cpus=2, runtime_env={"working_dir": wd},
                                                   **extra))
        timed("working_dir first", lambda: ray.get(noop.remote()))
        timed("working_dir again", lambda: ray.get(
            noop.options(runtime_env={"env_vars": {"X": "1"}}).remote()))
        ray.shutdown()
    print(MARK + json.dumps(rows), flush=True)


def _run_side(python, runtime, args, timeout):
    cmd = [python, os.path.abspath(__file__), "--side", runtime, "--tasks", str(args.tasks),
           "--files", str(args.files), "--file-kib", str(args.file_kib)]
    if args.pip:
        cmd += ["--pip", args.pip]
    env = dict(os.environ)
    if runtime == "zray":
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    for line in out.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise RuntimeError(f"the {runtime} side failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


def run(args):
    results = {"zray": _run_side(sys.executable, "zray", args, args.timeout)}
    ray_python = None if args.no_ray else args.ray_python
    if ray_python and os.path.exists(ray_python):
        results["ray"] = _run_side(ray_python, "ray", args, args.timeout)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--side", choices=["zray", "ray"], help=argparse.SUPPRESS)
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--file-kib", type=int, default=16)
    p.add_argument("--pip", default=None, help="a requirement to build an environment for")
    p.add_argument("--ray-python", default=DEFAULT_RAY_PYTHON)
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.side:
        _side(args.side, args)
        return 0
    results = run(args)
    names = list(results["zray"])
    print(f"{'row':<20}" + "".join(f"{side:>12}" for side in results))
    for name in names:
        print(f"{name:<20}" + "".join(f"{results[s].get(name, float('nan')):>11.3f}s"
                                      for s in results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
