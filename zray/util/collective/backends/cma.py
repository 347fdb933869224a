"""Cross-memory attach: copy a range of a peer process's memory into ours with one kernel copy
(process_vm_readv, Linux >= 3.2), for the shared-memory allreduce of large tensors.

Through the group's segment a tensor crosses memory four times per rank (copy in, read for
the reduction, copy out); read straight from the peers' tensors it crosses about half as
often (backends/shm.py, allreduce_cma). The kernel allows it where the caller may ptrace the
peer (same user, and Yama's ptrace_scope < 2 or CAP_SYS_PTRACE): `available()` only says the
syscall exists; the group probes its peers once at formation and keeps the copying path when
any member cannot read any other.
"""
import ctypes
import ctypes.util
import errno
import logging
import sys

log = logging.getLogger("zray.util.collective")


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def _load():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.process_vm_readv
    except (OSError, AttributeError) as exc:
        log.debug("no process_vm_readv: %r", exc)
        return None
    fn.restype = ctypes.c_ssize_t
    fn.argtypes = [ctypes.c_int, ctypes.POINTER(_Iovec), ctypes.c_ulong,
                   ctypes.POINTER(_Iovec), ctypes.c_ulong, ctypes.c_ulong]
    return fn


_readv = _load()


def available():
    return _readv is not None


class Reader:
    """Reads of one process's memory (its two iovecs reused: no allocation per call)."""

    def __init__(self):
        self._local, self._remote = _Iovec(), _Iovec()
        self._plocal, self._premote = ctypes.pointer(self._local), ctypes.pointer(self._remote)

    def read(self, pid, remote_address, local_address, nbytes):
        """Copy nbytes at remote_address in process pid to local_address; OSError on failure
        (ESRCH: the process is gone; EPERM: not allowed; EFAULT: a bad range)."""
        done = 0
        while done < nbytes:
            self._local.base, self._local.len = local_address + done, nbytes - done
            self._remote.base, self._remote.len = remote_address + done, nbytes - done
            got = _readv(pid, self._plocal, 1, self._premote, 1, 0)
            if got <= 0:
                err = ctypes.get_errno() if got < 0 else errno.EFAULT
                raise OSError(err, f"process_vm_readv from pid {pid}: "
                                   f"{errno.errorcode.get(err, err)}")
            done += got
