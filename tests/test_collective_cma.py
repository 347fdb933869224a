"""backends/cma.py: reads of another process's memory (process_vm_readv), and its errors."""
import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from zray.util.collective.backends import cma

pytestmark = pytest.mark.skipif(not cma.available(), reason="no process_vm_readv here")


def test_reads_a_range_of_a_process():
    src = np.arange(100_000, dtype=np.int64)
    dst = np.zeros(50_000, np.int64)
    cma.Reader().read(os.getpid(), src.ctypes.data + 8 * 25_000, dst.ctypes.data, dst.nbytes)
    np.testing.assert_array_equal(dst, np.arange(25_000, 75_000))


def test_a_dead_process_is_esrch():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()                                   # reaped: the pid names no process
    dst = np.zeros(1, np.int64)
    with pytest.raises(OSError) as info:
        cma.Reader().read(child.pid, dst.ctypes.data, dst.ctypes.data, 8)
    assert info.value.errno == errno.ESRCH


def test_a_bad_range_is_an_error_not_a_crash():
    dst = np.zeros(1, np.int64)
    with pytest.raises(OSError) as info:
        cma.Reader().read(os.getpid(), 8, dst.ctypes.data, 8)      # page 0 is never mapped
    assert info.value.errno == errno.EFAULT
