"""Session directories: per user, per session, 0700, and gone after shutdown.

    $TMPDIR/zray-<uid>/            the user's root (0700)
        s<pid>-<rand>/             one session: sock/ (ipc sockets), logs/, spill/
Paths stay short because a Unix socket path is limited to 107 bytes.
"""
import os
import shutil
import stat
import tempfile


def user_root():
    base = os.environ.get("ZRAY_TMPDIR") or tempfile.gettempdir()
    root = os.path.join(base, f"zray-{os.getuid()}")
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        st = os.lstat(root)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise PermissionError(f"{root} exists and is not a directory owned by this user")
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(root, 0o700)
    return root


def create_session_dir():
    root = user_root()
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


def remove_session_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(path))   # the user's root, when no other session uses it
    except OSError:
        pass
