"""A zygote's start modes (zray/node/zygote.py): what it imports at its start, and what on
warm() or its first fork. Real zygotes in a fresh process each (a fork needs a process
without threads); a marker module on $ZRAY_WORKER_PRELOAD tells when the zygote imported what
every worker needs, and /proc/<pid>/maps whether numpy (one of the extras) is loaded."""
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import os, sys, time
from zray.node.zygote import Zygote

marks = sys.argv[2]

def wait_for(path, timeout=60):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.01)

def probe(zygote, n):
    # requests are served in order: once this module is imported, what came before is done
    zygote.preload([f"zray_probe_{n}"])
    wait_for(os.path.join(marks, f"zray_probe_{n}"))

def state(zygote):
    with open(f"/proc/{zygote.pid}/maps") as f:
        numpy = "_multiarray_umath" in f.read()
    return f"core={int(os.path.exists(os.path.join(marks, 'zray_core_marker')))} numpy={int(numpy)}"

zygote = Zygote.start(sys.argv[1])
try:
    probe(zygote, 1)
    print("START", state(zygote))
    if sys.argv[3] == "warm":
        zygote.warm()
    else:
        os.makedirs(os.path.join(marks, "s", "logs"), exist_ok=True)
        zygote.spawn({"worker_id": "w1", "job_id": "j", "session": os.path.join(marks, "s"),
                      "daemon": "ipc:///nonexistent", "driver": None, "mesh": None,
                      "runtime_env": ""})
        deadline = time.monotonic() + 60
        while not any(w == "w1" for w, _ in zygote.read_replies()):
            assert time.monotonic() < deadline, "no fork"
            time.sleep(0.01)
    probe(zygote, 2)
    print("AFTER", state(zygote))
finally:
    zygote.stop()
"""

MARKER = "import os\nopen(os.path.join({marks!r}, {name!r}), 'w').close()\n"


def _run(tmp_path, mode, then):
    marks = tmp_path / "marks"
    mods = tmp_path / "mods"
    marks.mkdir()
    mods.mkdir()
    for name in ("zray_core_marker", "zray_probe_1", "zray_probe_2"):
        (mods / f"{name}.py").write_text(MARKER.format(marks=str(marks), name=name))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, str(mods)]),
               ZRAY_WORKER_PRELOAD="zray_core_marker")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), mode, str(marks), then],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line.startswith(("START", "AFTER"))]


@pytest.mark.parametrize("mode, start", [
    ("eager", "START core=1 numpy=1"),
    ("core", "START core=1 numpy=0"),
    ("lazy", "START core=0 numpy=0"),
])
def test_warm_leaves_nothing_for_later(tmp_path, mode, start):
    assert _run(tmp_path, mode, "warm") == [start, "AFTER core=1 numpy=1"]


def test_a_lazy_zygote_imports_what_a_worker_needs_before_its_first_fork(tmp_path):
    assert _run(tmp_path, "lazy", "spawn") == ["START core=0 numpy=0", "AFTER core=1 numpy=0"]


def test_a_bad_mode_is_a_clear_error():
    from zray.node.zygote import Zygote
    with pytest.raises(ValueError, match="mode must be one of eager, core, lazy"):
        Zygote.start("sometimes")
