"""Futex wait/wake on a 32-bit word of a shared mapping (Linux, x86-64 / aarch64), for the
shared-memory barriers: a member that finds a peer's step counter behind sleeps in the kernel
on that counter until the peer bumps it and wakes it (or a short timeout passes), instead of
spinning or yielding. On a node with more runnable processes than cores a spinning waiter eats
the time slice the late peer needs (measured here: 4 KiB allreduce between 2 actors, 425 us
median with no spin against 4.5 ms with 200 spins of numpy polls, load ~6 on 2 cores).

No lost wake-ups: the kernel compares the word with the value the waiter saw, atomically with
going to sleep; a peer that stored its new value before returns EAGAIN at once. Shared (not
FUTEX_PRIVATE) because the word is in a MAP_SHARED segment mapped by several processes.
`available()` is False where the syscall cannot be reached; the callers then poll.
"""
import ctypes
import ctypes.util
import logging
import platform
import sys

log = logging.getLogger("zray.util.collective")

FUTEX_WAIT, FUTEX_WAKE = 0, 1
_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine())
_WAKE_ALL = 0x7FFFFFFF


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _load_libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError as exc:
        log.debug("no libc through ctypes: %r", exc)
        return None


_libc = _load_libc()


def _load():
    if not sys.platform.startswith("linux") or _SYS_FUTEX is None or _libc is None:
        return None
    try:
        fn = _libc.syscall
        fn.restype = ctypes.c_long
        return fn
    except (OSError, AttributeError) as exc:
        log.debug("no futex syscall: %r", exc)
        return None


_syscall = _load()


def _load_getcpu():
    if _libc is None:
        return None
    try:
        fn = _libc.sched_getcpu
        fn.restype, fn.argtypes = ctypes.c_int, []
        return fn if fn() >= 0 else None
    except AttributeError as exc:
        log.debug("no sched_getcpu: %r", exc)
        return None


_getcpu = _load_getcpu()


def current_cpu():
    """The CPU this thread runs on now (-1 where unknown): glibc's sched_getcpu, a vDSO
    read (~0.3 us through ctypes)."""
    return _getcpu() if _getcpu is not None else -1


def available():
    return _syscall is not None


def wait(address, expected, timeout_s):
    """Sleep while the u32 at `address` equals `expected` (low 32 bits), at most timeout_s.
    Returns on a wake, a changed word, a signal or the timeout: the caller re-checks."""
    ts = _Timespec(int(timeout_s), int((timeout_s % 1) * 1e9))
    _syscall(_SYS_FUTEX, ctypes.c_void_p(address), FUTEX_WAIT,
             ctypes.c_uint32(expected & 0xFFFFFFFF), ctypes.byref(ts), None, 0)


def wake(address):
    """Wake every waiter on the word at `address`."""
    _syscall(_SYS_FUTEX, ctypes.c_void_p(address), FUTEX_WAKE, _WAKE_ALL, None, None, 0)
