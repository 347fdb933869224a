"""backends/futex.py: a waiter on a word of a shared mapping sleeps until woken, returns at
once when the word already changed, and returns after its timeout otherwise."""
import mmap
import os
import threading

import numpy as np
import pytest

from zray.util.collective.backends import futex

pytestmark = pytest.mark.skipif(not futex.available(), reason="no futex syscall here")


@pytest.fixture
def word():
    mm = mmap.mmap(-1, 4096)          # freed with the array (pytest keeps the value a while)
    return np.frombuffer(mm, dtype=np.int64, count=8)


def test_a_waiter_sleeps_until_woken(word):
    woke = threading.Event()

    def waiter():
        while word[0] == 0:
            futex.wait(word.ctypes.data, 0, 60)
        woke.set()
    t = threading.Thread(target=waiter)
    t.start()
    assert not woke.wait(0.2)          # asleep: the word did not change
    word[0] = 1
    futex.wake(word.ctypes.data)
    t.join(30)
    assert woke.is_set() and not t.is_alive()


def test_a_changed_word_returns_at_once_and_a_timeout_returns(word):
    word[0] = 5
    futex.wait(word.ctypes.data, 4, 60)     # not 4: EAGAIN, no sleep (else the test times out)
    futex.wait(word.ctypes.data, 5, 0.01)   # equal: sleeps, the timeout ends it


def test_a_wake_reaches_another_process():
    mm = mmap.mmap(-1, 4096)                # MAP_SHARED | MAP_ANONYMOUS: shared with the child
    arr = np.frombuffer(mm, dtype=np.int64, count=8)
    pid = os.fork()
    if pid == 0:                            # the child: sleep until the parent's wake
        try:
            while arr[0] == 0:
                futex.wait(arr.ctypes.data, 0, 60)
            arr[1] = 7
        finally:
            os._exit(0)
    try:
        arr[0] = 1
        futex.wake(arr.ctypes.data)
        _, status = os.waitpid(pid, 0)
        assert status == 0 and arr[1] == 7
    finally:
        del arr
        mm.close()
