"""$ZRAY_WORKER_PRELOAD: modules the zygote imports once, so every worker forked from it starts
with them (zray.train's workers with torch, instead of seconds of import per fit)."""
import os
import sys

import pytest

import zray


@zray.remote
def loaded(names):
    return {name: name in sys.modules for name in names}


def test_workers_start_with_the_preloaded_modules(zray_cluster, monkeypatch):
    # a stdlib module nothing in zray imports, and a name that cannot be imported: the
    # bad one is reported in the zygote's log and workers still run
    monkeypatch.setenv("ZRAY_WORKER_PRELOAD", "colorsys, no_such_module_zray ,")
    zray_cluster(num_cpus=2)
    got = zray.get(loaded.remote(["colorsys", "no_such_module_zray"]), timeout=60)
    assert got == {"colorsys": True, "no_such_module_zray": False}


def test_without_it_workers_import_nothing_extra(zray_cluster, monkeypatch):
    monkeypatch.delenv("ZRAY_WORKER_PRELOAD", raising=False)
    zray_cluster(num_cpus=2)
    assert zray.get(loaded.remote(["colorsys"]), timeout=60) == {"colorsys": False}


# -- asked for by libraries (zray/util/worker_preload.py, zray/node/preload_service.py) ---------
@zray.remote
class Probe:
    def loaded(self, names):
        return {name: name in sys.modules for name in names}

    def torch_works(self):
        import os
        import torch
        # the intra-op pool starts here, in the worker (the zygote never ran a parallel op)
        a = torch.arange(256 * 256, dtype=torch.float64).reshape(256, 256) / 1000
        got = float((a @ a.T).sum())
        want = float((a.numpy() @ a.numpy().T).sum())
        return {"matmul_ok": abs(got - want) <= 1e-9 * abs(want), "threads": torch.get_num_threads(),
                "sum": float(torch.ones(10_000).sum()), "pid": os.getpid()}


@zray.remote
def ask(names):
    from zray.util.worker_preload import preload_worker_modules
    preload_worker_modules(names)


def _fresh_probe():
    """An actor: a worker forked for it now (after the request reached the zygote)."""
    return Probe.options(num_cpus=0).remote()


def test_a_library_asks_and_later_workers_start_with_the_modules(zray_cluster):
    from zray.util.worker_preload import preload_worker_modules
    zray_cluster(num_cpus=2)
    before = _fresh_probe()
    assert zray.get(before.loaded.remote(["colorsys"]), timeout=60) == {"colorsys": False}
    preload_worker_modules(["colorsys", "no_such_module_zray", "bad name"])
    preload_worker_modules(["colorsys"])            # again: nothing sent
    after = _fresh_probe()
    assert zray.get(after.loaded.remote(["colorsys", "no_such_module_zray"]), timeout=60) == {
        "colorsys": True, "no_such_module_zray": False}
    # the node keeps serving after the failed import and the refused name
    assert zray.get(loaded.remote(["colorsys"]), timeout=60) == {"colorsys": True}
    # asked again, from a worker (another process): the node imports nothing twice, and the
    # failure was reported once, in the node's log
    zray.get(ask.remote(["no_such_module_zray", "colorsys"]), timeout=60)
    assert zray.get(_fresh_probe().loaded.remote(["colorsys"]), timeout=60) == {"colorsys": True}
    from zray.objects.object_ref import get_runtime
    session = get_runtime().context.session_dir
    with open(os.path.join(session, "logs", "node.err")) as f:
        assert f.read().count("could not preload no_such_module_zray") == 1


def test_modules_asked_for_before_init_are_imported_by_the_node_it_starts(zray_cluster):
    from zray.util import worker_preload
    if zray.is_initialized():
        zray.shutdown()
    worker_preload.preload_worker_modules(["colorsys", "no_such_module_zray"])
    zray_cluster(num_cpus=1)
    assert worker_preload.take_pending() == ()          # this init() took them
    # a worker forked at the node's start (no preload request since) has them
    got = zray.get(loaded.remote(["colorsys", "no_such_module_zray"]), timeout=60)
    assert got == {"colorsys": True, "no_such_module_zray": False}
    from zray.objects.object_ref import get_runtime
    session = get_runtime().context.session_dir
    with open(os.path.join(session, "logs", "node.err")) as f:
        assert f.read().count("could not preload no_such_module_zray") == 1
    # init() told the node again: known there, so no second import (and no second error)
    preload_again = _fresh_probe()
    assert zray.get(preload_again.loaded.remote(["colorsys"]), timeout=60) == {"colorsys": True}
    with open(os.path.join(session, "logs", "node.err")) as f:
        assert f.read().count("could not preload no_such_module_zray") == 1


def test_after_a_train_fit_workers_start_with_torch_and_run_it(zray_cluster):
    pytest.importorskip("torch")
    from zray.train import ScalingConfig
    from zray.train.torch import TorchTrainer

    def loop(config):
        import torch
        import zray.train
        zray.train.report({"s": float(torch.ones(4).sum())})

    zray_cluster(num_cpus=4)
    result = TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=2)).fit()
    assert result.metrics["s"] == 4.0
    probe = _fresh_probe()
    assert zray.get(probe.loaded.remote(["torch", "torch.distributed", "torch.nn.parallel"]),
                    timeout=60) == {"torch": True, "torch.distributed": True,
                                    "torch.nn.parallel": True}
    works = zray.get(probe.torch_works.remote(), timeout=120)
    assert works["matmul_ok"] and works["sum"] == 10_000.0 and works["threads"] >= 1
    # a second worker forked from the same zygote runs torch too
    works2 = zray.get(_fresh_probe().torch_works.remote(), timeout=120)
    assert works2["matmul_ok"] and works2["pid"] != works["pid"]


def test_after_a_data_run_workers_start_with_pyarrow(zray_cluster):
    pytest.importorskip("pyarrow")
    import zray.data
    zray_cluster(num_cpus=2)
    assert zray.get(_fresh_probe().loaded.remote(["pyarrow"]), timeout=60) == {"pyarrow": False}
    assert zray.data.range(10).map_batches(lambda b: b).count() == 10
    got = zray.get(_fresh_probe().loaded.remote(
        ["pyarrow", "pyarrow.compute", "zray.data._internal.remote"]), timeout=60)
    assert got == {"pyarrow": True, "pyarrow.compute": True, "zray.data._internal.remote": True}
    import importlib.util
    if importlib.util.find_spec("pandas"):   # pyarrow imports it at its first table otherwise
        assert zray.get(_fresh_probe().loaded.remote(["pandas"]), timeout=60) == {"pandas": True}
