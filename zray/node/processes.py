"""Is a process alive? One answer for every part of the node."""
import os


def pid_alive(pid):
    """True while `pid` runs. A zombie (exited, not yet reaped: a worker whose zygote is gone
    waits for init) counts as dead; a process of another user counts as alive."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return True    # no /proc to ask: kill(0) said it exists
