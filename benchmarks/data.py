"""zray.data, Ray Data and Polars side by side, in one run on this machine.

    python benchmarks/data.py [--scale 1.0] [--repeat 3] [--no-ray] [--no-polars]
                              [--ray-python PATH] [--json FILE]

Each side runs in a subprocess of its own (this file with --side zray|ray|polars), so the
runtimes never share a process or an idle cluster. zray and Ray run the same workload code with
the module as a parameter (`import zray as ray` / `import ray`); Polars runs the same computation
single-process, as the floor. Each row is run twice to warm up (worker starts, imports), then
--repeat times; the median is reported.

Rows (the issue's targets for zray, in seconds at scale 1):
    map_batches+iter_batches  range(10M).map_batches(numpy fn).iter_batches()   <= 1.5
    groupby-sum               1M rows, 100 keys, groupby("k").sum("v")           <= 0.5
    sort                      1M random ints, sort("x").materialize()            <= 0.7
    small pipeline            from_items(150 rows).map_batches(fn).take_batch()  <= 0.020
    actor inference           range(1M).map_batches(Model, concurrency=1)        <= 1.0

This file imports neither zray nor Ray at module level: the Ray side runs it under Ray's
interpreter (default /opt/rayvenv/bin/python).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RAY_PYTHON = "/opt/rayvenv/bin/python"
ROWS = [
    ("map_batches+iter_batches", "range(10M).map_batches(numpy).iter_batches", 10_000_000, 1.5),
    ("groupby-sum", "groupby-sum, 1M rows / 100 keys", 1_000_000, 0.5),
    ("sort", "sort of 1M ints", 1_000_000, 0.7),
    ("small pipeline", "150-row from_items -> map_batches -> take_batch", 150, 0.020),
    ("actor inference", "callable-class inference, 1M rows, pool of 1", 1_000_000, 1.0),
]


def _double(batch):
    return {"id": batch["id"] * 2}


def _area(batch):
    batch["area"] = batch["a"] * batch["b"]
    return batch


class Model:
    """A stand-in for a model: weights made once per actor, a vectorized forward pass."""

    def __init__(self):
        import numpy as np
        self.w = np.float64(0.5)

    def __call__(self, batch):
        return {"pred": batch["id"] * self.w}


# ------------------------------------------------------------------------------- ray / zray

def _data_side(module, scale, repeat):
    import numpy as np
    import pyarrow as pa
    rt = __import__(module)
    data = __import__(f"{module}.data", fromlist=["data"])
    init_args = {"num_cpus": 2}
    if module == "ray":
        init_args.update(include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR")
    rt.init(**init_args)
    ctx = data.DataContext.get_current()
    ctx.enable_progress_bars = False
    if hasattr(ctx, "print_on_execution_start"):
        ctx.print_on_execution_start = False
    rng = np.random.default_rng(0)
    n = {name: max(1, int(size * scale)) if name != "small pipeline" else size
         for name, _, size, _ in ROWS}

    gb_table = pa.table({"k": np.arange(n["groupby-sum"]) % 100,
                         "v": rng.random(n["groupby-sum"])})
    gb = data.from_arrow(gb_table, override_num_blocks=4).materialize()
    sort_table = pa.table({"x": rng.integers(0, 1 << 40, n["sort"])})
    srt = data.from_arrow(sort_table, override_num_blocks=4).materialize()
    items = [{"a": float(i), "b": float(i % 7)} for i in range(150)]

    def map_iter():
        rows = 0
        for batch in data.range(n["map_batches+iter_batches"]).map_batches(_double).iter_batches():
            rows += len(batch["id"])
        assert rows == n["map_batches+iter_batches"]

    def groupby():
        out = gb.groupby("k").sum("v").take_all()
        assert len(out) == min(100, n["groupby-sum"])

    def sort():
        out = srt.sort("x").materialize()
        assert out.count() == n["sort"]

    def small():
        batch = data.from_items(items).map_batches(_area).take_batch()
        assert len(batch["area"]) == 20

    def inference():
        rows = 0
        ds = data.range(n["actor inference"]).map_batches(Model, concurrency=1)
        for batch in ds.iter_batches(batch_size=None):
            rows += len(batch["pred"])
        assert rows == n["actor inference"]

    fns = {"map_batches+iter_batches": map_iter, "groupby-sum": groupby, "sort": sort,
           "small pipeline": small, "actor inference": inference}
    return _measure(fns, repeat)


# ------------------------------------------------------------------------------- polars

def _polars_side(scale, repeat):
    import numpy as np
    import polars as pl
    rng = np.random.default_rng(0)
    n = {name: max(1, int(size * scale)) if name != "small pipeline" else size
         for name, _, size, _ in ROWS}
    gb = pl.DataFrame({"k": np.arange(n["groupby-sum"]) % 100, "v": rng.random(n["groupby-sum"])})
    srt = pl.DataFrame({"x": rng.integers(0, 1 << 40, n["sort"])})
    items = [{"a": float(i), "b": float(i % 7)} for i in range(150)]

    def map_iter():
        df = pl.DataFrame({"id": np.arange(n["map_batches+iter_batches"])})
        df = df.with_columns(pl.col("id") * 2)
        rows = 0
        for part in df.iter_slices(256):
            rows += len(part["id"].to_numpy())
        assert rows == n["map_batches+iter_batches"]

    def groupby():
        out = gb.group_by("k").agg(pl.col("v").sum())
        assert out.height == min(100, n["groupby-sum"])

    def sort():
        assert srt.sort("x").height == n["sort"]

    def small():
        df = pl.DataFrame(items).with_columns((pl.col("a") * pl.col("b")).alias("area"))
        assert len(df.head(20).to_dict(as_series=False)["area"]) == 20

    def inference():
        model = Model()
        df = pl.DataFrame({"id": np.arange(n["actor inference"])})
        out = model({"id": df["id"].to_numpy()})
        assert len(out["pred"]) == n["actor inference"]

    fns = {"map_batches+iter_batches": map_iter, "groupby-sum": groupby, "sort": sort,
           "small pipeline": small, "actor inference": inference}
    return _measure(fns, repeat)


def _measure(fns, repeat):
    results = {}
    for name, fn in fns.items():
        fn()                                  # warm-up: worker start, imports, first actor
        fn()                                  # a second: every worker of the pool is warm
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        results[name] = statistics.median(times)
        print(json.dumps({"row": name, "seconds": results[name]}), flush=True)
    return results


# ------------------------------------------------------------------------------- driver

def run_side(python, side, scale, repeat, timeout):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if side == "zray":
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    else:
        env.pop("PYTHONPATH", None)
    cmd = [python, os.path.abspath(__file__), "--side", side, "--scale", str(scale),
           "--repeat", str(repeat)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                             cwd="/tmp")
    except subprocess.TimeoutExpired:
        return {}, f"{side}: timed out after {timeout:.0f} s"
    results = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            try:
                rec = json.loads(line)
                results[rec["row"]] = rec["seconds"]
            except (ValueError, KeyError):
                pass
    error = None
    if out.returncode != 0:
        error = f"{side}: exit code {out.returncode}: {(out.stderr or out.stdout)[-1200:]}"
    return results, error


def _fmt(s):
    if s is None:
        return "n/a"
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def report(results, scale):
    z, r, p = results.get("zray", {}), results.get("ray", {}), results.get("polars", {})
    lines = ["| row | zray | Ray Data | Polars | Ray/zray | zray/Polars | zray target |",
             "|---|---|---|---|---|---|---|"]
    for name, title, _, target in ROWS:
        zs, rs, ps = z.get(name), r.get(name), p.get(name)
        speedup = f"{rs / zs:.1f}x" if zs and rs else "n/a"
        vs_polars = f"{zs / ps:.1f}x" if zs and ps else "n/a"
        ok = ""
        if zs is not None and scale == 1.0:
            ok = " (met)" if zs <= target else " (missed)"
        lines.append(f"| {title} | {_fmt(zs)} | {_fmt(rs)} | {_fmt(ps)} | {speedup} | "
                     f"{vs_polars} | <= {_fmt(target)}{ok} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", choices=["zray", "ray", "polars"])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--no-polars", action="store_true")
    ap.add_argument("--ray-python", default=DEFAULT_RAY_PYTHON)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.side in ("zray", "ray"):
        _data_side(args.side, args.scale, args.repeat)
        return 0
    if args.side == "polars":
        _polars_side(args.scale, args.repeat)
        return 0
    sides = [("zray", sys.executable)]
    if not args.no_ray:
        if os.path.exists(args.ray_python):
            sides.append(("ray", args.ray_python))
        else:
            print(f"(no Ray interpreter at {args.ray_python}: Ray column is n/a)")
    if not args.no_polars:
        sides.append(("polars", sys.executable))
    results, errors = {}, []
    for side, python in sides:
        res, err = run_side(python, side, args.scale, args.repeat, args.timeout)
        results[side] = res
        if err:
            errors.append(err)
    print(report(results, args.scale))
    for err in errors:
        print("error:", err, file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"scale": args.scale, "results": results, "errors": errors}, f, indent=1)
    return 1 if errors and not results.get("zray") else 0


if __name__ == "__main__":
    sys.exit(main())
