"""What the benchmarks share: the timing helper and the row definitions, which live in
`zray/scripts/microbenchmark.py` (so that the installed `zray microbenchmark` has them too).

In an interpreter that has Ray but not zray's dependencies (e.g. a separate Ray venv), that file
is loaded by path, without importing the zray package."""
import importlib.util
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROBENCHMARK_PATH = os.path.join(REPO, "zray", "scripts", "microbenchmark.py")


def _load():
    try:
        from zray.scripts import microbenchmark
        return microbenchmark
    except ImportError:
        spec = importlib.util.spec_from_file_location("zray_microbenchmark", MICROBENCHMARK_PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


microbenchmark = _load()
timeit = microbenchmark.timeit
cluster_processes = microbenchmark.cluster_processes
memory_of = microbenchmark.memory_of
# The file to run as a script, under any interpreter, to measure rows in a fresh process.
ROWS_SCRIPT = os.path.abspath(microbenchmark.__file__)
