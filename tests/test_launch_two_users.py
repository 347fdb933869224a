"""Two Unix users' zray clusters on one host at once (root only: the test makes a throwaway
user with useradd and removes it after).

Each user runs `mpiexec -n 2 python -m zray.launch app.py` (two ranks, a mesh, a data channel)
under one shared, world-writable ZRAY_TMPDIR, like /tmp on a shared Slurm node. The two apps
overlap in time (each waits for the other to be up), use the same actor name, and check that
they see only their own nodes and objects; the second user cannot read the first's session
directories. After both end, neither leaves a process, socket file, session or shm segment.

Root's Python, its venv or this checkout may live under /root (mode 0700 here), which another
user cannot traverse: the second user's job then runs in a private mount namespace where /root
is a 0711 directory holding only those (nothing else of root's is visible through it).
"""
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time

import psutil
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER = "zraytest2"
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")

APP = """
import json, os, sys, time
import numpy as np
import zray
name, other, out = sys.argv[1], sys.argv[2], sys.argv[3]
zray.init()

@zray.remote
class Named:
    def owner(self):
        return name, os.getuid()

@zray.remote(resources={"zray_rank:1": 0.01})
def checksum(array):
    return float(array.sum()), os.getuid()

actor = Named.options(name="same-name-in-both").remote()
big = zray.put(np.full(1 << 20, 3.0 if name == "a" else 5.0))      # 8 MB: the data channel
total, task_uid = zray.get(checksum.remote(big), timeout=120)
base = os.environ["ZRAY_TMPDIR"]
open(os.path.join(base, name + ".up"), "w").close()
deadline = time.monotonic() + 90                  # both clusters up at once
while not os.path.exists(os.path.join(base, other + ".up")) and time.monotonic() < deadline:
    time.sleep(0.05)
both_up = os.path.exists(os.path.join(base, other + ".up"))
others = {}
for entry in os.listdir(base):
    path = os.path.join(base, entry)
    if entry.startswith("zray-") and os.path.isdir(path):
        try:
            others[entry] = sorted(os.listdir(path))
        except PermissionError:
            others[entry] = "denied"
report = dict(
    uid=os.getuid(), both_up=both_up,
    nodes=len([n for n in zray.nodes() if n["Alive"]]),
    actor=zray.get(zray.get_actor("same-name-in-both").owner.remote(), timeout=60),
    total=total, task_uid=task_uid, listing=others,
    secret_modes=sorted({oct(os.stat(os.path.join(base, d, s, "cluster.secret")).st_mode & 0o777)
                         for d in os.listdir(base) if d == "zray-%d" % os.getuid()
                         for s in os.listdir(os.path.join(base, d))
                         if os.path.exists(os.path.join(base, d, s, "cluster.secret"))}))
with open(out, "w") as f:
    json.dump(report, f)
"""


def _privileged_setup_missing():
    if os.geteuid() != 0:
        return "needs root (useradd, a mount namespace)"
    for tool in ("useradd", "userdel", "unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists(MPIEXEC):
        return "no mpiexec beside this Python (pip install 'mpich>=4.3,<5' mpi4py)"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        return f"cannot make a mount namespace here: {probe.stderr.decode()[-200:]}"
    return None


@pytest.fixture
def second_user():
    why = _privileged_setup_missing()
    if why:
        pytest.skip(why)
    made = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", USER], check=True, capture_output=True, timeout=60)
        made = True
    entry = pwd.getpwnam(USER)
    try:
        yield entry
    finally:
        for p in psutil.process_iter(["uids"]):
            try:
                if p.info["uids"] and p.info["uids"].real == entry.pw_uid:
                    p.kill()          # only if the test failed: the check below names them
            except psutil.Error:
                continue
        if made:
            subprocess.run(["userdel", USER], capture_output=True, timeout=60)


def _under_root(*paths):
    """The entries of /root that hold any of `paths` (what the second user must reach)."""
    tops = set()
    for path in paths:
        rel = os.path.relpath(os.path.realpath(path), "/root")
        if not rel.startswith(".."):
            tops.add(rel.split(os.sep)[0])
    return sorted(tops)


def _procs_of(uid, base):
    found = []
    for p in psutil.process_iter(["uids", "cmdline", "environ"]):
        try:
            if p.info["uids"] is None:
                continue
            if p.info["uids"].real == uid and uid != 0:
                found.append((p.pid, " ".join(p.info["cmdline"] or [])[:120]))
            elif uid == 0 and (p.info["environ"] or {}).get("ZRAY_TMPDIR") == base:
                found.append((p.pid, " ".join(p.info["cmdline"] or [])[:120]))
        except (psutil.Error, TypeError):
            continue
    return found


def _shm_of(uid):
    found = []
    for name in os.listdir("/dev/shm"):
        try:
            if os.stat(os.path.join("/dev/shm", name)).st_uid == uid:
                found.append(name)
        except OSError:
            continue
    return found


@pytest.mark.privileged
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_users_clusters_on_one_host_do_not_meet(second_user):
    uid2 = second_user.pw_uid
    base = tempfile.mkdtemp(prefix="zray-2users-", dir="/tmp")
    os.chmod(base, 0o1777)                       # a shared /tmp: sticky, world-writable
    view = tempfile.mkdtemp(prefix="zray-rootview-", dir="/tmp")   # /root in B's namespace
    os.chmod(view, 0o711)
    exposed = _under_root(sys.base_prefix, sys.prefix, os.path.realpath(sys.executable), REPO)
    for top in exposed:
        os.mkdir(os.path.join(view, top))
    try:
        app = os.path.join(base, "app.py")
        with open(app, "w") as f:
            f.write(textwrap.dedent(APP))
        os.chmod(app, 0o644)
        env = dict(os.environ, PYTHONPATH=REPO, ZRAY_TMPDIR=base, HOME=base,
                   PYTHONDONTWRITEBYTECODE="1")
        env.pop("ZRAY_ADDRESS", None)
        cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "zray.launch", "--no-prefix", app]
        root_job = subprocess.Popen(cmd + ["a", "b", os.path.join(base, "a.json")], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        inner = " ".join([
            "set -e;",
            *[f"mount --bind /root/{top} {view}/{top};" for top in exposed],
            f"mount --rbind {view} /root;" if exposed else "",
            f"exec setpriv --reuid={uid2} --regid={second_user.pw_gid} --clear-groups --",
            *cmd, "b", "a", os.path.join(base, "b.json")])
        user_job = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                     inner], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
        outputs = {}

        def collect(name, job):
            try:
                outputs[name] = job.communicate(timeout=240)[0]
            except subprocess.TimeoutExpired:
                job.kill()
                outputs[name] = job.communicate()[0] + "\n(killed after 240 s)"
        import threading
        readers = [threading.Thread(target=collect, args=("a", root_job)),
                   threading.Thread(target=collect, args=("b", user_job))]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
        out_a, out_b = outputs["a"], outputs["b"]
        assert root_job.returncode == 0, out_a[-3000:]
        assert user_job.returncode == 0, out_b[-3000:]
        a = json.load(open(os.path.join(base, "a.json")))
        b = json.load(open(os.path.join(base, "b.json")))

        assert (a["uid"], b["uid"]) == (0, uid2)
        assert a["both_up"] and b["both_up"]               # the two ran at the same time
        assert a["nodes"] == 2 and b["nodes"] == 2         # each sees its own two ranks only
        assert a["actor"] == ["a", 0] and b["actor"] == ["b", uid2]   # one name, two actors
        assert a["total"] == 3.0 * (1 << 20) and b["total"] == 5.0 * (1 << 20)
        assert a["task_uid"] == 0 and b["task_uid"] == uid2
        assert b["listing"]["zray-0"] == "denied"          # B cannot look into root's sessions
        assert f"zray-{uid2}" in b["listing"] and f"zray-{uid2}" in a["listing"]
        assert b["secret_modes"] == ["0o600"] and a["secret_modes"] == ["0o600"]
        st = os.stat(os.path.join(base, f"zray-{uid2}")) if os.path.exists(
            os.path.join(base, f"zray-{uid2}")) else None
        if st is not None:                                 # (removed when its last session ended)
            assert st.st_uid == uid2 and stat.S_IMODE(st.st_mode) == 0o700

        # Nothing of either is left: processes, sessions, socket files, shm segments.
        deadline = time.monotonic() + 20
        while True:
            left = {"procs_b": _procs_of(uid2, base), "procs_a": _procs_of(0, base),
                    "dirs": sorted(os.path.join(d, f) for d, _, fs in os.walk(base)
                                   for f in fs if f not in ("app.py", "a.up", "b.up", "a.json",
                                                            "b.json")),
                    "shm": _shm_of(uid2)}
            if not any(left.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert not any(left.values()), left
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(view, ignore_errors=True)
