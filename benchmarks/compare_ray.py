"""Ray and zray side by side, in one run on this machine.

    python benchmarks/compare_ray.py [--duration 2] [--filter SUBSTRING] [--markdown FILE]

Every row of `ray microbenchmark` (the same workload code, parametrized by the module name) runs
once for Ray and once for zray, alternating, each in a fresh subprocess of its own interpreter,
so the two runtimes never share a process and one's idle cluster never steals CPU from the
other's measurement. Extra rows: large objects (100 MB put/get, 1 GB get), the time from init()
to the first task result in a fresh process, the memory of an idle cluster, and a raw pyzmq
REQ/REP round trip over ipc:// between two processes, which is the floor of a synchronous call.

The Ray side runs under --ray-python (default: this interpreter if it can import ray, else
/opt/rayvenv/bin/python if that exists); without a Ray interpreter (or with --no-ray) only zray
is measured and the Ray column says n/a.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import REPO, ROWS_SCRIPT, microbenchmark  # noqa: E402

DEFAULT_RAY_VENV_PYTHON = "/opt/rayvenv/bin/python"
INIT_ROW = "init() to first task result"
IMPORT_ROW = "import + init() to first task result"
RSS_ROW = "idle cluster memory, RSS summed (num_cpus=2)"
PSS_ROW = "idle cluster memory, PSS summed (num_cpus=2)"
PROCS_ROW = "idle cluster processes (num_cpus=2)"
ZMQ_ROW = "raw pyzmq REQ/REP round trip, ipc://"
# Rows whose synchronous calls are compared with the raw pyzmq round trip.
SYNC_ROWS = ("single client tasks sync", "1:1 actor calls sync", "1:1 async-actor calls sync")
# The targets for zray/Ray (">=": rates, "<=": seconds and memory).
TARGETS = {
    "single client tasks sync": (">=", 2), "single client tasks async": (">=", 2),
    "1:1 actor calls sync": (">=", 2), "1:1 actor calls async": (">=", 2),
    "n:n actor calls async": (">=", 2), "single client put calls": (">=", 2),
    INIT_ROW: ("<=", 0.2), RSS_ROW: ("<=", 1 / 3), PSS_ROW: ("<=", 1 / 3),
}
ZMQ_TARGET = 0.5   # sync actor calls >= half the raw round-trip rate


def default_ray_python():
    spec = importlib.util.find_spec("ray")
    # A bare directory named ray (e.g. Ray's session root /tmp/ray, seen from cwd /tmp) is a
    # namespace package, not Ray.
    if spec is not None and spec.origin and spec.origin.endswith("__init__.py"):
        return sys.executable
    if os.path.exists(DEFAULT_RAY_VENV_PYTHON):
        return DEFAULT_RAY_VENV_PYTHON
    return None


def run_script(python, args, timeout):
    """Run the rows script under `python`; the JSON objects it printed (its stdout lines that
    parse), or raise RuntimeError with the tail of its stderr."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        out = subprocess.run([python, ROWS_SCRIPT, *args], capture_output=True, text=True,
                             timeout=timeout, cwd=REPO, env=env)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"timed out after {timeout:.0f} s") from exc
    results = []
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            try:
                results.append(json.loads(line))
            except ValueError:
                pass
    if out.returncode != 0 or not results:
        tail = (out.stderr or out.stdout)[-1500:]
        raise RuntimeError(f"exit code {out.returncode}: {tail}")
    return results


class Comparison:
    def __init__(self, args):
        self.args = args
        self.sides = [("ray", args.ray_python), ("zray", args.zray_python)]
        self.sides = [(name, py) for name, py in self.sides if py]
        self.results = {}   # row name -> {"ray": {...}, "zray": {...}}
        self.errors = {}    # (row, side) -> message
        self.unit = {}
        self.flip = False

    def _order(self):
        """Alternate which runtime goes first, so slow drift of the machine hits both."""
        self.flip = not self.flip
        return self.sides if self.flip else self.sides[::-1]

    def _record(self, row, side, mean, std, unit):
        self.results.setdefault(row, {})[side] = {"mean": mean, "std": std}
        self.unit[row] = unit
        log(f"  {side:<5} {row:<48} {mean:>14,.2f} ± {std:,.2f} {unit}")

    def rows(self):
        a = self.args
        chosen = microbenchmark.select_rows(a.filter, extras=True)
        budget = 120 + 30 * a.duration
        for r in chosen:
            for side, python in self._order():
                cmd = ["--runtime", side, "--row", r.name, "--duration", str(a.duration),
                       "--warmup", str(a.warmup), "--rounds", str(a.rounds),
                       "--scale", str(a.scale), "--settle", str(a.settle), "--json"]
                try:
                    res = run_script(python, cmd, budget)[-1]
                    self._record(r.name, side, res["mean"], res["std"], res["unit"])
                except RuntimeError as exc:
                    self.errors[(r.name, side)] = str(exc)
                    log(f"  {side:<5} {r.name}: FAILED {exc}")
                time.sleep(a.gap)

    def probes(self):
        a = self.args
        wanted = lambda name: not a.filter or a.filter in name  # noqa: E731
        if wanted(INIT_ROW) or wanted(IMPORT_ROW):
            samples = {side: [] for side, _ in self.sides}
            for _ in range(a.init_repeats):
                for side, python in self._order():
                    try:
                        samples[side].append(run_script(python, ["--runtime", side, "--probe",
                                                                 "init"], 300)[-1])
                    except RuntimeError as exc:
                        self.errors[(INIT_ROW, side)] = str(exc)
                    time.sleep(a.gap)
            for side, got in samples.items():
                if got:
                    for row, key in ((INIT_ROW, "first_result"), (IMPORT_ROW, None)):
                        vals = [s["first_result"] + (s["import"] if key is None else 0) for s in got]
                        self._record(row, side, _mean(vals), _std(vals), "seconds")
        if wanted(RSS_ROW) or wanted(PSS_ROW) or wanted(PROCS_ROW):
            for side, python in self._order():
                try:
                    m = run_script(python, ["--runtime", side, "--probe", "memory", "--settle",
                                            str(a.memory_settle)], 300)[-1]
                    self._record(RSS_ROW, side, m["rss_mb"], 0.0, "MB")
                    self._record(PSS_ROW, side, m["pss_mb"], 0.0, "MB")
                    self._record(PROCS_ROW, side, m["processes"], 0.0, "processes")
                except RuntimeError as exc:
                    self.errors[(RSS_ROW, side)] = str(exc)
                time.sleep(a.gap)
        if wanted(ZMQ_ROW) or any(wanted(r) for r in SYNC_ROWS):
            mean, std = microbenchmark.zmq_roundtrip(duration=max(1.0, a.duration))
            self.results[ZMQ_ROW] = {"zmq": {"mean": mean, "std": std}}
            self.unit[ZMQ_ROW] = "per second"
            log(f"  zmq   {ZMQ_ROW:<48} {mean:>14,.2f} ± {std:,.2f} per second")

    def table(self):
        """[(row, ray, zray, ratio, vs_zmq, target, verdict)] as strings."""
        zmq = self.results.get(ZMQ_ROW, {}).get("zmq")
        lines = []
        for row, by_side in self.results.items():
            if row == ZMQ_ROW:
                lines.append((f"{row} (per second)", "", _value(zmq), "", "", "", ""))
                continue
            unit = self.unit[row]
            ray, zr = by_side.get("ray"), by_side.get("zray")
            ray_s = _value(ray) if ray else _missing(self, row, "ray")
            zr_s = _value(zr) if zr else _missing(self, row, "zray")
            ratio = zr["mean"] / ray["mean"] if ray and zr and ray["mean"] else None
            vs_zmq = ""
            if row in SYNC_ROWS and zr and zmq:
                vs_zmq = f"{zr['mean'] / zmq['mean']:.2f}"
            op, bound = TARGETS.get(row, (">=", 1) if "second" in unit and unit != "seconds"
                                    else ("", None))
            target = f"{op} {bound:.2g}" if bound is not None else ""
            verdict = ""
            if ratio is not None and bound is not None:
                ok = ratio >= bound if op == ">=" else ratio <= bound
                verdict = "ok" if ok else "BELOW"
            if row in SYNC_ROWS and "actor" in row and vs_zmq:
                target += f"; zmq >= {ZMQ_TARGET}"
                if float(vs_zmq) < ZMQ_TARGET:
                    verdict = "BELOW"
            lines.append((f"{row} ({unit})", ray_s, zr_s,
                          "" if ratio is None else f"{ratio:.2f}", vs_zmq, target, verdict))
        return lines


HEADER = ("row (unit)", "Ray", "zray", "zray/Ray", "zray/zmq", "target", "")


def _missing(comp, row, side):
    if (row, side) in comp.errors:
        return "failed"
    return "n/a"


def _value(result):
    if not result["std"]:   # one sample (memory, process count)
        return _fmt(result["mean"])
    return f"{_fmt(result['mean'])} ± {_fmt(result['std'])}"


def _fmt(x):
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:,.2f}"
    return f"{x:.3f}"


def _mean(xs):
    return sum(xs) / len(xs)


def _std(xs):
    m = _mean(xs)
    return (sum((x - m) ** 2 for x in xs) / len(xs)) ** 0.5


def format_text(lines):
    widths = [max(len(str(line[i])) for line in [HEADER] + lines) for i in range(len(HEADER))]
    out = []
    for line in [HEADER] + lines:
        out.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                             for i, (c, w) in enumerate(zip(line, widths))).rstrip())
    return "\n".join(out)


def format_markdown(lines):
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" + "---:|" * (len(HEADER) - 1)]
    for line in lines:
        out.append("| " + " | ".join(str(c) for c in line) + " |")
    return "\n".join(out)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="timed seconds per row and side")
    parser.add_argument("--warmup", type=float, default=1.0, help="untimed seconds per row and side")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds per row (for ± std)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds between init() and a row, for start-up work to finish")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between subprocesses")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="factor on batch and array sizes (1: Ray's sizes)")
    parser.add_argument("--filter", default=None, metavar="SUBSTRING",
                        help="run only the rows whose name contains SUBSTRING")
    parser.add_argument("--init-repeats", type=int, default=3)
    parser.add_argument("--memory-settle", type=float, default=5.0,
                        help="seconds an idle cluster runs before its memory is measured")
    parser.add_argument("--ray-python", default=None,
                        help="interpreter with ray (default: this one if it imports ray, else "
                             f"{DEFAULT_RAY_VENV_PYTHON} if it exists)")
    parser.add_argument("--zray-python", default=sys.executable,
                        help="interpreter with zray (default: this one)")
    parser.add_argument("--no-ray", action="store_true", help="measure zray only")
    parser.add_argument("--no-probes", action="store_true",
                        help="skip init time, idle memory and the pyzmq round trip")
    parser.add_argument("--markdown", default=None, metavar="FILE",
                        help="also write the table here as Markdown (with --from-json: '-' "
                             "prints Markdown)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write raw results here")
    parser.add_argument("--from-json", default=None, metavar="FILE",
                        help="measure nothing: print the table of an earlier --json file")
    args = parser.parse_args(argv)
    if args.no_ray:
        args.ray_python = None
    elif args.ray_python is None:
        args.ray_python = default_ray_python()
        if args.ray_python is None:
            log("no interpreter with ray found: measuring zray only (see --ray-python)")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.from_json:
        comp = Comparison(args)
        with open(args.from_json) as f:
            saved = json.load(f)
        comp.results, comp.unit = saved["results"], saved["units"]
        lines = comp.table()
        print(format_markdown(lines) if args.markdown == "-" else format_text(lines))
        return 0
    started = time.monotonic()
    log(f"Ray: {args.ray_python or 'n/a'}   zray: {args.zray_python}")
    comp = Comparison(args)
    comp.rows()
    if not args.no_probes:
        comp.probes()
    lines = comp.table()
    print(format_text(lines))
    print(f"\n(duration {args.duration} s per row and side; took {time.monotonic() - started:.0f} s)")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(format_markdown(lines) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": comp.results, "units": comp.unit,
                       "errors": {f"{r} [{s}]": e for (r, s), e in comp.errors.items()}}, f, indent=1)
    for (row, side), err in comp.errors.items():
        log(f"FAILED: {row} [{side}]: {err.splitlines()[-1] if err else ''}")
    return 1 if comp.errors else 0


if __name__ == "__main__":
    sys.exit(main())
