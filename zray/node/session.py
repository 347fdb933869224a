"""Session directories: per user, per session, 0700, and gone after shutdown.

Except after a crash: when a node daemon died on its own (a signal, an exception, a non-zero
exit), whoever cleans up after it keeps the session's logs/ (and only them: `keep_logs_only`)
and says where they are.

    $TMPDIR/zray-<uid>/            the user's root (0700)
        s<pid>-<rand>/             one session: sock/ (ipc sockets), logs/, spill/
Paths stay short because a Unix socket path is limited to 107 bytes: when the user's root is
too deep for that (a long ZRAY_TMPDIR), sessions go under /tmp/zray-<uid> instead (`zray start`
still keeps its node file in the given directory, and that file names the session).
"""
import logging
import os
import shutil
import stat
import tempfile


# The longest socket path under a session: "<root>/s<pid>-<6 hex>/sock/<13 chars>".
ROOT_MAX = 107 - len("/s4194304-abcdef/sock/") - 14


def user_root(base=None, fallback=True):
    """The user's zray directory under `base`. When another user made it first (or it is not
    a directory: a link, say), it cannot be trusted: with `fallback`, a fresh private one is
    made instead (and the user told); without, PermissionError."""
    base = base or os.environ.get("ZRAY_TMPDIR") or tempfile.gettempdir()
    root = os.path.join(base, f"zray-{os.getuid()}")
    os.makedirs(base, exist_ok=True)      # a ZRAY_TMPDIR that does not exist yet is made
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        st = os.lstat(root)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            problem = f"{root} exists and is not a directory owned by this user"
            if not fallback:
                raise PermissionError(problem) from None
            private = tempfile.mkdtemp(prefix=f"zray-{os.getuid()}-", dir=base)   # 0700, ours
            logging.getLogger("zray").warning(
                "%s (another user may have created it): using the private directory %s "
                "for this session instead", problem, private)
            return private
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(root, 0o700)
    return root


def create_session_dir():
    root = user_root()
    if len(root) > ROOT_MAX:
        root = user_root("/tmp")
    while True:
        path = os.path.join(root, f"s{os.getpid()}-{os.urandom(3).hex()}")
        try:
            os.mkdir(path, 0o700)
            break
        except FileExistsError:
            continue
    for sub in ("sock", "logs", "spill"):
        os.mkdir(os.path.join(path, sub), 0o700)
    return path


def keep_logs_only(path):
    """A session whose node crashed: remove everything (sockets, spill files, the cluster
    secret) but its logs, which say why; returns the logs directory, or None when there were
    none (then nothing is kept)."""
    logs = os.path.join(path, "logs")
    if not os.path.isdir(logs) or not os.listdir(logs):
        remove_session_dir(path)
        return None
    try:
        names = os.listdir(path)
    except OSError:
        return None
    for name in names:
        if name == "logs":
            continue
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            try:
                os.unlink(full)
            except OSError:
                pass
    return logs


def remove_session_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(path))   # the user's root, when no other session uses it
    except OSError:
        pass
