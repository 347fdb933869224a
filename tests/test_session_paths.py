"""A deep ZRAY_TMPDIR must not break Unix socket paths (107 bytes at most)."""
import os
import subprocess
import sys


def test_a_deep_tmpdir_still_works_and_leaves_nothing(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    code = ("import zray\n"
            "zray.init(num_cpus=1)\n"
            "@zray.remote\n"
            "def f(x):\n"
            "    return x + 1\n"
            "print(zray.get(f.remote(1)), zray.core.runtime.current().session_dir)\n"
            "zray.shutdown()\n")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, ZRAY_TMPDIR=str(deep)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    value, session_dir = out.stdout.split()
    assert value == "2"
    assert not os.path.exists(session_dir)


def _run_in(tmpdir):
    code = ("import zray\n"
            "zray.init(num_cpus=1)\n"
            "@zray.remote\n"
            "def f(x):\n"
            "    return x + 1\n"
            "print(zray.get(f.remote(1)), zray.core.runtime.current().session_dir)\n"
            "zray.shutdown()\n")
    return subprocess.run([sys.executable, "-c", code], env=dict(os.environ, ZRAY_TMPDIR=str(tmpdir)),
                          capture_output=True, text=True, timeout=120)


def test_a_user_root_taken_by_someone_else_falls_back_to_a_private_one(tmp_path):
    """Another local user (or a link) pre-creating $TMPDIR/zray-<uid> must not stop init()."""
    root = tmp_path / f"zray-{os.getuid()}"
    if os.getuid() == 0:
        root.mkdir()
        os.chown(root, 65534, 65534)      # as if user nobody made it
    else:
        os.symlink(tmp_path / "elsewhere", root)
    out = _run_in(tmp_path)
    assert out.returncode == 0, out.stderr
    value, session_dir = out.stdout.split()
    assert value == "2"
    assert not session_dir.startswith(str(root) + "/")
    assert "using the private directory" in out.stderr
    assert not os.path.exists(session_dir)
