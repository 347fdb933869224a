"""What a zray cluster leaves on the machine: processes, memfds, session dirs."""
import glob
import os
import time

import psutil


def cluster_footprint(info, session_dir):
    pids = [info["daemon_pid"], info["zygote_pid"], *info["worker_pids"]]
    return {"pids": pids, "session_dir": session_dir}


def live(pids):
    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def store_memfds():
    """(pid, fd) of every open memfd of a zray object store on this machine."""
    found = []
    for link in glob.glob("/proc/[0-9]*/fd/*"):
        try:
            if os.readlink(link).startswith("/memfd:zray-object-store"):
                parts = link.split("/")
                found.append((int(parts[2]), int(parts[4])))
        except OSError:
            pass
    return found


def wait_gone(footprint, timeout=15.0, exclude_pid=None):
    """Wait until nothing of the cluster is left; return what is left after the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = {
            "pids": live(footprint["pids"]),
            "session_dir": os.path.exists(footprint["session_dir"]),
            "memfds": [m for m in store_memfds() if m[0] in footprint["pids"] or m[0] == exclude_pid],
        }
        if not left["pids"] and not left["session_dir"] and not left["memfds"]:
            return None
        if time.monotonic() > deadline:
            return left
        time.sleep(0.05)
