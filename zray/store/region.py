"""The store's shared memory: one memfd per node, mapped by every process of the node.

A memfd has no name in /dev/shm: it disappears when the last process holding it exits, so a
crashed node can never leave a segment behind, and container limits on /dev/shm do not apply.
Other processes map it through /proc/<daemon pid>/fd/<fd> (same user only).
"""
import mmap
import os
import threading

PREFAULT_CHUNK = 64 << 20


class Region:
    def __init__(self, fd, size, owner=False):
        self.fd = fd
        self.size = size
        self.owner = owner
        self.mmap = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.mmap)

    @classmethod
    def create(cls, size):
        fd = os.memfd_create("zray-object-store", os.MFD_CLOEXEC)
        os.ftruncate(fd, size)
        return cls(fd, size, owner=True)

    @classmethod
    def attach(cls, daemon_pid, fd_number, size):
        fd = os.open(f"/proc/{daemon_pid}/fd/{fd_number}", os.O_RDWR | os.O_CLOEXEC)
        return cls(fd, size)

    def prefault_in_background(self):
        """Give the region its memory pages now, off the start-up path, so puts never wait for
        the kernel to find pages. Uses fallocate on the memfd: no page tables are touched.
        The thread runs at the lowest CPU priority: zeroing a 2 GiB store takes the kernel a
        CPU-second or more, which must not slow the start of this node, its workers, or other
        nodes starting on the same host (several ranks of a job per host)."""
        def run():
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)   # this thread only
            except OSError:
                pass
            pos = 0
            try:
                while pos < self.size:
                    n = min(PREFAULT_CHUNK, self.size - pos)
                    os.posix_fallocate(self.fd, pos, n)
                    pos += n
            except OSError:
                pass   # not enough memory to hold it all now: pages come on first touch
        t = threading.Thread(target=run, name="zray-prefault", daemon=True)
        t.start()
        return t

    def close(self):
        try:
            self.view.release()
            self.mmap.close()
        except (BufferError, ValueError):
            pass  # live zero-copy arrays still point into it; the mapping goes with the process
        try:
            os.close(self.fd)
        except OSError:
            pass
