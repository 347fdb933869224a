"""Results that worker threads hand to an event loop's thread, with an eventfd to wake it.

A thread calls `put(item)`; the loop registers `fd` in its poller and, when it is readable,
calls `take_all()`. Used by the store's spill thread and the data channel's stream threads: the
loop never blocks on their I/O and never misses a result (the eventfd counts puts until read).
"""
import collections
import os
import threading


class Completions:
    def __init__(self):
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._lock = threading.Lock()
        self._items = collections.deque()

    def put(self, item):
        with self._lock:
            self._items.append(item)
        try:
            os.eventfd_write(self.fd, 1)
        except OSError:     # closed while the thread finished: the loop is gone too
            pass

    def take_all(self):
        try:
            os.eventfd_read(self.fd)
        except (BlockingIOError, OSError):
            pass
        with self._lock:
            items = list(self._items)
            self._items.clear()
        return items

    def close(self):
        try:
            os.close(self.fd)
        except OSError:
            pass
