"""Tuner.restore after `kill -9` of the driver: a real driver subprocess is killed while its
trials run; the restored experiment keeps its trials and configs, does not ask the searcher
for more than it had to, and resumes unfinished trials from their checkpoints."""
import os
import signal
import subprocess
import sys
import time

from zray import tune

STEPS = 6


def restorable(config):
    import tempfile
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with open(os.path.join(ckpt.path, "i")) as f:
            start = int(f.read()) + 1
    for i in range(start, STEPS):
        time.sleep(0.2)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "i"), "w") as f:
                f.write(str(i))
            tune.report({"i": i, "started_at": start, "u": config["u"]},
                        checkpoint=tune.Checkpoint.from_directory(d))


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
import zray
from zray import tune
from test_tune_restore import restorable
zray.init(num_cpus=2)
tune.Tuner(restorable,
           param_space={{"x": tune.grid_search([1, 2, 3, 4]), "u": tune.uniform(0, 1)}},
           tune_config=tune.TuneConfig(max_concurrent_trials=2),
           run_config=tune.RunConfig(storage_path={storage!r}, name="exp", verbose=0)).fit()
print("the driver finished before it was killed", flush=True)
"""


def _checkpoints(exp):
    out = []
    for root, dirs, _ in os.walk(exp):
        out += [os.path.join(root, d) for d in dirs if d.startswith("checkpoint_")]
    return out


def test_restore_after_driver_sigkill(shared_cluster, tmp_path):
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    exp = os.path.join(str(tmp_path), "exp")
    script = DRIVER.format(tests=tests_dir, storage=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        # Wait until two trials have checkpointed at least twice and the state has been saved
        # since (it is written at most every 0.5 s).
        while time.monotonic() < deadline:
            names = [os.path.basename(p) for p in _checkpoints(exp)]
            if names.count("checkpoint_000001") >= 2:
                time.sleep(0.8)
                break
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.05)
        else:
            raise AssertionError("the driver made no progress in 90 s")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

    from zray.tune.storage import load_state
    before = load_state(exp)
    ids_before = [t.trial_id for t in before["trials"]]
    statuses_before = [t.status for t in before["trials"]]
    assert "RUNNING" in statuses_before

    assert tune.Tuner.can_restore(exp)
    assert not tune.Tuner.can_restore(str(tmp_path / "nothing"))
    results = tune.Tuner.restore(exp, trainable=restorable).fit()
    assert results.num_errors == 0 and len(results) == 4
    ids_after = [r.metrics["trial_id"] for r in results]
    assert ids_after[:len(ids_before)] == ids_before          # same trials, same ids
    assert sorted(r.config["x"] for r in results) == [1, 2, 3, 4]
    for r, t in zip(results, before["trials"]):
        assert r.config == t.config                            # configs kept, not resampled
    assert all(r.metrics["i"] == STEPS - 1 for r in results)
    assert all(r.metrics["training_iteration"] == STEPS for r in results)
    resumed = [r for r in results if r.metrics["started_at"] > 0]
    assert resumed, "no trial resumed from its checkpoint"
