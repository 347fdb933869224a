"""Shipping local directories (working_dir, py_modules) to the nodes through the object store.

A directory becomes a zip archive built the same way every time (files in sorted order, fixed
timestamps, permission bits kept), so its SHA-256 names its content: nodes unpack each archive
once, in a directory named by that hash (worker_setup.py). The archive is `put` by the submitting
process, which keeps the ref for as long as its runtime lives, so any worker of any node can
fetch it while a task of that process may run.

`excludes` are glob patterns (fnmatch) matched against each path relative to the directory
(`data/*.csv`), against each of its parts (`__pycache__`, `*.log`), and a pattern ending in "/"
leaves out a whole directory (`data/`); one starting with "/" only matches from the top
(`/build`, not `src/build`).
"""
import fnmatch
import hashlib
import io
import os
import stat
import threading
import weakref
import zipfile

MAX_PACKAGE_BYTES = 512 * 1024 * 1024     # Ray's limit is about the same; more belongs in storage
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)

_lock = threading.Lock()
_shipped = weakref.WeakKeyDictionary()   # runtime -> {archive hash: ObjectRef}, while it lives


def excluded(relpath, patterns):
    parts = relpath.split("/")
    for pattern in patterns:
        pattern = pattern.strip()
        if pattern.startswith("/"):     # anchored at the directory's top: that path only
            base = pattern.strip("/")
            if any(fnmatch.fnmatch("/".join(parts[:i + 1]), base) for i in range(len(parts))):
                return True
            continue
        if pattern.endswith("/"):
            base = pattern.rstrip("/")
            if any(fnmatch.fnmatch("/".join(parts[:i + 1]), base) or fnmatch.fnmatch(part, base)
                   for i, part in enumerate(parts)):
                return True
            continue
        if fnmatch.fnmatch(relpath, pattern) or any(fnmatch.fnmatch(p, pattern) for p in parts):
            return True
    return False


def archive(path, excludes=(), top=None):
    """(zip bytes, sha256 hex) of a directory's content, or of one file. `top` puts everything
    under that directory name in the archive (a py_modules package keeps its name)."""
    buf = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        def add(full, rel):
            nonlocal total
            st = os.stat(full)
            total += st.st_size
            if total > MAX_PACKAGE_BYTES:
                raise ValueError(f"runtime_env: {path} is larger than "
                                 f"{MAX_PACKAGE_BYTES >> 20} MiB; leave big data out with "
                                 "'excludes' and read it from shared storage")
            info = zipfile.ZipInfo(rel, _FIXED_TIME)
            info.external_attr = (stat.S_IMODE(st.st_mode) | stat.S_IFREG) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(full, "rb") as f:
                zf.writestr(info, f.read())

        if os.path.isfile(path):
            add(path, os.path.basename(path))
        else:
            for root, dirs, files in os.walk(path):
                rel_root = os.path.relpath(root, path)
                rel_root = "" if rel_root == "." else rel_root.replace(os.sep, "/") + "/"
                dirs[:] = sorted(d for d in dirs if not excluded(rel_root + d, excludes))
                for name in sorted(files):
                    rel = rel_root + name
                    if excluded(rel, excludes):
                        continue
                    full = os.path.join(root, name)
                    if not os.path.isfile(full):
                        continue    # a dangling link, a socket: nothing to ship
                    add(full, (top + "/" if top else "") + rel)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def read_zip(path):
    with open(path, "rb") as f:
        data = f.read()
    return data, hashlib.sha256(data).hexdigest()


def ship(path, excludes, core, put, top=None):
    """The encoded package of a local directory, .py or .zip file: put in the object store
    (once per content and runtime) and described by {"hash", "object_id", "owner"}."""
    if path.endswith(".zip") and os.path.isfile(path):
        data, digest = read_zip(path)
    else:
        data, digest = archive(path, excludes, top=top)
    with _lock:
        refs = _shipped.setdefault(core, {})
        ref = refs.get(digest)
        if ref is None:
            ref = refs[digest] = put(data)
    return {"hash": digest, "object_id": ref.hex(), "owner": ref.owner_address()}
