"""Every benchmark runs once at a tiny size, so none rots. No timing is asserted.

The Ray side of benchmarks/compare_ray.py runs only where an interpreter with ray is found
(this one, or /opt/rayvenv/bin/python); otherwise that test is skipped.
"""
import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:   # benchmarks/ is not an installed package
    sys.path.insert(0, REPO)

from benchmarks import compare_ray, scaling  # noqa: E402
from benchmarks.common import ROWS_SCRIPT, microbenchmark  # noqa: E402
TINY = ["--duration", "0.02", "--warmup", "0", "--rounds", "1"]


def _check(result, name=None):
    assert result["mean"] > 0 and math.isfinite(result["mean"]), result
    assert result["std"] >= 0, result
    if name is not None:
        assert result["name"] == name


def test_every_row_runs_at_a_tiny_size(shared_cluster):
    ctx = microbenchmark.Context(shared_cluster, scale=0.002)
    rows = microbenchmark.select_rows(extras=True)
    assert len(rows) == 26
    for r in rows:
        _check(microbenchmark.measure(ctx, r, duration=0.01, rounds=1, warmup=0), r.name)


def test_row_names_are_rays():
    names = [r.name for r in microbenchmark.select_rows()]
    assert names[0] == "single client get calls"
    assert "n:n async-actor calls async" in names
    assert microbenchmark.select_rows(filter="wait") == [r for r in microbenchmark.ROWS
                                                           if r.name == "single client wait 1k refs"]


def test_timeit_counts_calls():
    calls = []
    mean, std = microbenchmark.timeit(lambda: calls.append(1), multiplier=10, duration=0.01,
                                      rounds=2, warmup=0)
    assert len(calls) >= 3 and mean > 0 and std >= 0


def _run(cmd, timeout=60):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_zray_microbenchmark_cli_and_module_entry():
    for entry in ([sys.executable, "-m", "zray.scripts.cli", "microbenchmark"],
                  [sys.executable, "-m", "benchmarks.micro"]):
        lines = _run(entry + ["--filter", "single client get calls", "--json", *TINY]).splitlines()
        assert len(lines) == 1
        _check(json.loads(lines[0]), "single client get calls")
    text = _run([sys.executable, "-m", "benchmarks.micro", "--filter", "put calls", *TINY])
    assert "single client put calls" in text and "multi client put calls" in text


def test_probes_init_memory_and_zmq():
    init = json.loads(_run([sys.executable, ROWS_SCRIPT, "--probe", "init"]).splitlines()[-1])
    assert init["first_result"] >= init["init"] > 0
    memory = json.loads(_run([sys.executable, ROWS_SCRIPT, "--probe", "memory",
                              "--settle", "0.1"]).splitlines()[-1])
    assert memory["processes"] >= 3 and memory["rss_mb"] > 0   # driver, daemon, zygote, ...
    mean, _ = microbenchmark.zmq_roundtrip(duration=0.05, rounds=1, warmup=0)
    assert mean > 0


def test_compare_zray_only(tmp_path, capsys):
    md = tmp_path / "table.md"
    rc = compare_ray.main(["--no-ray", "--filter", "single client get calls", "--settle", "0",
                           "--gap", "0", "--markdown", str(md), *TINY])
    assert rc == 0
    out = capsys.readouterr().out
    assert "single client get calls" in out and "n/a" in out
    assert md.read_text().startswith("| row (unit) | Ray | zray |")


def test_compare_table_formats_targets():
    args = compare_ray.parse_args(["--no-ray"])
    comp = compare_ray.Comparison(args)
    comp._record("1:1 actor calls sync", "ray", 1000.0, 1.0, "per second")
    comp._record("1:1 actor calls sync", "zray", 1500.0, 1.0, "per second")
    comp._record(compare_ray.INIT_ROW, "ray", 5.0, 0.1, "seconds")
    comp._record(compare_ray.INIT_ROW, "zray", 0.5, 0.1, "seconds")
    comp.results[compare_ray.ZMQ_ROW] = {"zmq": {"mean": 10000.0, "std": 1.0}}
    comp.unit[compare_ray.ZMQ_ROW] = "per second"
    rows = {line[0]: line for line in comp.table()}
    sync = rows["1:1 actor calls sync (per second)"]
    assert sync[3] == "1.50" and sync[4] == "0.15" and sync[6] == "BELOW"
    init = rows[f"{compare_ray.INIT_ROW} (seconds)"]
    assert init[3] == "0.10" and init[6] == "ok"
    assert "1:1 actor calls sync" in compare_ray.format_text(comp.table())


def test_compare_with_ray_side():
    ray_python = compare_ray.default_ray_python()
    if ray_python is None:
        pytest.skip("no interpreter with ray (pip install -e '.[bench]' or /opt/rayvenv)")
    out = _run([sys.executable, os.path.join(REPO, "benchmarks", "compare_ray.py"),
                "--ray-python", ray_python, "--filter", "single client get calls",
                "--settle", "0", "--gap", "0", *TINY], timeout=120)
    line = next(x for x in out.splitlines() if x.startswith("single client get calls"))
    assert "n/a" not in line and "failed" not in line


def test_scaling_at_tiny_levels(shared_cluster):
    for r in scaling.queue_costs(shared_cluster, [20, 50]):
        assert r["us_per_task"] > 0
    for r in scaling.object_costs(shared_cluster, [20, 50], duration=0.01):
        assert r["us_per_put_get"] > 0
    assert scaling.levels_up_to(10000) == [1000, 10000]


def test_scaling_command(capsys):
    assert scaling.main(["--max", "30", "--duration", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "tasks submitted at once" in out and "refs are held" in out


def test_transfer_benchmark_at_a_tiny_size(capsys):
    from benchmarks import transfer
    assert transfer.main(["--sizes-mb", "0.5", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "GB/s" in out and "0.5 MB" in out


@pytest.mark.privileged
@pytest.mark.slow
def test_transfer_benchmark_over_a_veth_pair_at_a_tiny_size(capsys):
    """The --netns mode: two hosts in network namespaces, raw TCP and both channels across
    the veth pair between them; nothing of the namespaces is left after."""
    sys.path.insert(0, os.path.join(REPO, "tests"))
    import netns
    if not netns.available():
        pytest.skip("needs root and ip netns")
    from benchmarks import transfer
    assert transfer.main(["--netns", "--sizes-mb", "2", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "veth pair" in out and "raw-tcp" in out and "curve" in out and "2.0 MB" in out
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"zp{str(os.getpid())[-8:]}" not in left


def test_transfer_benchmark_refuses_mtu_without_netns():
    from benchmarks import transfer
    with pytest.raises(SystemExit):
        transfer.main(["--mtu", "9000"])
