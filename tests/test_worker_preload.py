"""$ZRAY_WORKER_PRELOAD: modules the zygote imports once, so every worker forked from it starts
with them (zray.train's workers with torch, instead of seconds of import per fit)."""
import sys

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
