"""Collectives inside one node through one shared-memory segment per group.

Layout (every word an int64; each rank's counter on its own 64-byte line):
    word 0                    abort word: 0, or 1 + the rank that gave up
    line 1 + r                rank r's step counter (monotonic for the group's lifetime),
                              then the CPU it ran on at its last barrier
    line 1 + n + 2r + parity  rank r's descriptor of its current op (seq, op, size, dtype, root)
    data                      2 buffer sets (double buffering) x n slots x slot_bytes

A barrier is "store my counter = step, futex-wake it; wait until every counter >= step": a
spin on the flags of up to spin_us (none for a late peer on this member's own CPU, which the
higher rank of the two leaves: _move_off), then spin_iterations polls, then a futex wait on
the counter of a late peer (backends/futex.py; sched_yield and short sleeps where there is no
futex), with the abort word, the peers' processes and the deadline checked every
liveness_interval_ms. Reductions of at most SMALL_BYTES take one barrier (_reduce_small). One chunk
iteration of a reduction:
    1. copy in   each rank copies its chunk into its own slot           barrier
    2. reduce    rank r reduces part r of the chunk over all slots
                 into slot 0 of the set                                 barrier
    3. copy out  each rank copies the reduced chunk where it wants it
Iteration i uses set i % 2: passing barrier i-1 proves every rank finished reading set
i % 2 of iteration i-2, so a third barrier is not needed. The descriptors are compared at
the first barrier of every op: all ranks see the same table and raise the same
CollectiveArgumentError for mismatched shapes, and the group stays usable.
"""
import errno
import logging
import mmap
import os
import time

import numpy as np

from ..errors import (CollectiveArgumentError, CollectiveError, CollectiveTimeoutError,
                      PeerDiedError)
from . import cma, futex

log = logging.getLogger("zray.util.collective")
_yield = getattr(os, "sched_yield", lambda: None)

LINE = 8          # int64 words per 64-byte line
PURE_S = 20e-6    # a barrier's spin polls back to back this long, then yields between polls
MOVE_EVERY_S = 0.005  # _move_off at most this often (two syscalls, ~10 us)
SMALL_BYTES = 64 << 10   # reductions up to this size take one barrier (_reduce_small)
OPS = {"barrier": 1, "allreduce": 2, "reduce": 3, "broadcast": 4, "allgather": 5,
       "reducescatter": 6, "gather": 7, "scatter": 8, "alltoall": 9}


def segment_bytes(n, slot_bytes):
    return _data_offset(n) + 2 * n * slot_bytes


def _data_offset(n):
    return 64 * (1 + n + 2 * n)


class Pieces:
    """Arrays seen as one virtual flat array (a list of tensors as a concatenation)."""

    def __init__(self, arrays):
        self.arrays, self.offsets, pos = [a.reshape(-1) for a in arrays], [], 0
        for a in self.arrays:
            self.offsets.append(pos)
            pos += a.size
        self.size = pos

    def _overlaps(self, start, stop):
        for off, a in zip(self.offsets, self.arrays):
            lo, hi = max(start, off), min(stop, off + a.size)
            if lo < hi:
                yield a, lo - off, hi - off, lo - start, hi - start

    def read(self, start, stop, out):
        for a, a0, a1, o0, o1 in self._overlaps(start, stop):
            out[o0:o1] = a[a0:a1]

    def write(self, start, stop, src):
        for a, a0, a1, s0, s1 in self._overlaps(start, stop):
            a[a0:a1] = src[s0:s1]


class ShmSegment:
    """One group's segment, mapped by every member on this node (all members, here)."""

    def __init__(self, name, n, rank, slot_bytes, group, config, local_peers):
        self.name, self.n, self.rank, self.slot_bytes = name, n, rank, slot_bytes
        self.group, self.config, self.peers = group, config, local_peers
        size = segment_bytes(n, slot_bytes)
        path = f"/dev/shm/{name}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self.mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.path = path
        words = np.frombuffer(self.mm, dtype=np.int64, count=_data_offset(n) // 8)
        self.abort_word = words[0:1]
        self.counters = words[LINE:LINE * (1 + n):LINE]
        self.cpus = words[LINE + 1:LINE * (1 + n):LINE]    # beside each counter, its line
        self.counters_address = self.counters.ctypes.data
        self.use_futex = config.futex and futex.available()
        self.desc = words[LINE * (1 + n):].reshape(n, 2, LINE)
        data = np.frombuffer(self.mm, dtype=np.uint8, offset=_data_offset(n))
        self.slots = data.reshape(2, n, slot_bytes)
        self.step = 0          # my last barrier step
        self.iteration = 0     # chunk iterations so far (selects the buffer set)
        self.op_seq = 0
        self.spin_s = config.spin_us / 1e6
        self.unlinked = False
        self._small_buf = None
        self._next_move = 0.0
        self.use_cma, self.cma_reader, self.cma_pids, self.cma_min_bytes = False, None, {}, 0

    # -- flags -----------------------------------------------------------------------------
    def _counter_address(self, rank):
        return self.counters_address + rank * self.counters.strides[0]

    def _wake_all(self):
        if self.use_futex:
            for r in range(self.n):
                futex.wake(self._counter_address(r))

    def barrier_wait(self, deadline):
        self.step += 1
        counters = self.counters
        cpu = self.cpus[self.rank] = futex.current_cpu()
        counters[self.rank] = self.step
        if self.use_futex:
            futex.wake(self._counter_address(self.rank))
        target = self.step
        if counters.min() >= target:
            return
        # Spin only for a peer on another CPU: one on this CPU cannot run while this member
        # spins. Such pairs happen (the scheduler keeps two busy processes on one core of
        # an otherwise idle pair for seconds: measured, 4 KiB took 56 us a call instead of
        # 13), and for them a futex sleep hands the core over at once.
        if self.spin_s > 0:
            late = int(np.argmin(counters))
            if cpu < 0 or self.cpus[late] != cpu:
                if self._spin(target, time.perf_counter() + self.spin_s):
                    return
            elif late < self.rank:
                self._move_off(cpu)
        self._wait_sleeping(target, deadline)

    def _move_off(self, cpu):
        """Leave this CPU, shared with a peer (the higher rank of the two moves): allowed
        every CPU but this one for an instant, the thread migrates at once, and gets its
        own mask back (the scheduler leaves it where it went). Sleeping alone would not
        part them: a peer woken by this member is placed beside it again (wake-affine),
        and a sleeping task is never pulled to an idle CPU. At most every MOVE_EVERY_S."""
        now = time.monotonic()
        if now < self._next_move or not hasattr(os, "sched_setaffinity"):
            return
        self._next_move = now + MOVE_EVERY_S
        try:
            mask = os.sched_getaffinity(0)
            if len(mask) > 1 and cpu in mask:
                os.sched_setaffinity(0, mask - {cpu})
                os.sched_setaffinity(0, mask)
        except OSError as exc:      # a mask this process may not change: stay
            log.debug("group %s: could not move off CPU %d: %r", self.group, cpu, exc)
            self._next_move = float("inf")

    def _spin(self, target, until):
        """Poll the counters until every one reaches target (True) or `until` passes,
        yielding the core between polls: a sleeping waiter costs the peer that wakes it a
        syscall and itself a wake-up (tens of us), while a yield returns at once when
        nothing else wants this core and otherwise hands it over (a late peer on a busy
        node gets it)."""
        counters, abort_word, clock = self.counters, self.abort_word, time.perf_counter
        polls = 0
        pure_until = clock() + PURE_S
        while counters.min() < target:
            if abort_word[0]:
                self._raise_aborted()
            polls += 1
            if not polls & 7:
                now = clock()
                if now >= until:
                    return False
                if now >= pure_until:
                    _yield()
        return True

    def _wait_sleeping(self, target, deadline):
        counters, spin = self.counters, self.config.spin_iterations
        interval = self.config.liveness_interval_ms / 1000
        next_check = time.monotonic() + interval
        polls = 0
        while counters.min() < target:
            if self.abort_word[0]:
                self._raise_aborted()
            polls += 1
            if polls > spin:
                if self.use_futex:
                    late = int(np.argmin(counters))
                    seen = int(counters[late])
                    if seen < target:      # sleep until that peer's counter moves
                        futex.wait(self._counter_address(late), seen,
                                   max(0.0, min(interval, next_check - time.monotonic())))
                else:
                    os.sched_yield()
                    if polls > spin + 1000:
                        time.sleep(0.00005)
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + interval
                    if now >= deadline:
                        self.abort()
                        late = [r for r in range(self.n) if counters[r] < target]
                        raise CollectiveTimeoutError(
                            "timed out in a shared-memory barrier waiting for ranks "
                            f"{late}", group=self.group, rank=self.rank,
                            peer=late[0] if late else None)
                    try:
                        self.peers.check()
                    except PeerDiedError:
                        self.abort()
                        raise

    def _raise_aborted(self):
        who = int(self.abort_word[0]) - 1
        raise PeerDiedError("the member gave up its call (it timed out or saw a member die)",
                            group=self.group, rank=self.rank, peer=who)

    def abort(self):
        if not self.abort_word[0]:
            self.abort_word[0] = self.rank + 1
            self._wake_all()               # the sleepers see the abort word now

    def unlink(self):
        if not self.unlinked:
            self.unlinked = True
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def close(self):
        self.unlink()
        self.abort_word = self.counters = self.desc = self.slots = None
        try:
            self.mm.close()
        except BufferError:      # a view still exported: the mapping goes with the process
            log.debug("segment %s still referenced at close", self.name)

    # -- op framing ------------------------------------------------------------------------
    def begin(self, op, size, dtype, root, deadline, address=0):
        """Publish my descriptor (and my tensor's address, for cross-memory reads), wait for
        all, compare: every rank raises the same error."""
        self.op_seq += 1
        parity = self.op_seq % 2
        row = self.desc[self.rank, parity]
        row[0], row[1], row[2], row[3], row[4], row[5] = (
            self.op_seq, OPS[op], size, _dtype_code(dtype), root, address)
        self.barrier_wait(deadline)
        table = self.desc[:, parity, :5]
        if table.tobytes() == row[:5].tobytes() * self.n:   # the common case, in one compare
            return
        table = table.copy()
        for peer in range(self.n):
            theirs = table[peer]
            if theirs[0] != self.op_seq:
                self.abort()
                raise PeerDiedError(f"out of step (op {theirs[0]} vs {self.op_seq})",
                                    group=self.group, rank=self.rank, peer=peer)
            if not np.array_equal(theirs, table[0]):
                raise CollectiveArgumentError(
                    f"mismatched {op}: rank 0 passed {_describe(table[0])}, rank {peer} "
                    f"passed {_describe(theirs)}", group=self.group, rank=self.rank, peer=peer)

    def _set(self):
        self.iteration += 1
        return self.slots[self.iteration % 2]

    # -- operations ------------------------------------------------------------------------
    def barrier(self, deadline):
        self.begin("barrier", 0, np.uint8, 0, deadline)

    def reduce_like(self, op_name, src, dst, dtype, reduce_into, avg_n, root, deadline):
        """src: my Pieces (length L) or None; dst: (virtual start, Pieces) to fill or None."""
        dtype = np.dtype(dtype)
        length = src.size
        if length * dtype.itemsize <= min(self.slot_bytes, SMALL_BYTES):
            return self._reduce_small(op_name, src, dst, dtype, reduce_into, avg_n, root,
                                      deadline)
        self.begin(op_name, length, dtype, root, deadline)
        per_slot = self.slot_bytes // dtype.itemsize
        bounds = [(i * per_slot // self.n, (i + 1) * per_slot // self.n) for i in range(self.n)]
        for start in range(0, length, per_slot):
            stop = min(length, start + per_slot)
            count = stop - start
            slots = self._set()
            mine = slots[self.rank].view(dtype)
            src.read(start, stop, mine[:count])
            self.barrier_wait(deadline)
            lo, hi = bounds[self.rank]
            hi = min(hi, count)
            if lo < hi:
                acc = slots[0].view(dtype)[lo:hi]
                for peer in range(1, self.n):
                    reduce_into(acc, slots[peer].view(dtype)[lo:hi])
                if avg_n:
                    np.divide(acc, avg_n, out=acc)
            self.barrier_wait(deadline)
            if dst is not None:
                base, pieces = dst
                lo, hi = max(start, base), min(stop, base + pieces.size)
                if lo < hi:
                    pieces.write(lo - base, hi - base, slots[0].view(dtype)[lo - start:hi - start])

    def _reduce_small(self, op_name, src, dst, dtype, reduce_into, avg_n, root, deadline):
        """One barrier, not three: each rank copies its data into its slot of the next set
        before the descriptors' barrier, then reduces, alone, the range it wants over all
        slots (n reads of a small range cost less than two more barriers). The ranks reduce
        in the same rank order as reduce_like, so all get the same bits. The set is taken
        only once the descriptors matched: on a mismatch every rank keeps its iteration."""
        length = src.size
        slots = self.slots[(self.iteration + 1) % 2]
        src.read(0, length, slots[self.rank].view(dtype)[:length])
        self.begin(op_name, length, dtype, root, deadline)
        self.iteration += 1
        if dst is None:
            return
        base, pieces = dst
        lo, hi = base, min(length, base + pieces.size)
        if lo >= hi:
            return
        acc = self._small_acc(hi - lo, dtype)
        acc[:] = slots[0].view(dtype)[lo:hi]
        for peer in range(1, self.n):
            reduce_into(acc, slots[peer].view(dtype)[lo:hi])
        if avg_n:
            np.divide(acc, avg_n, out=acc)
        pieces.write(0, hi - lo, acc)

    def _small_acc(self, count, dtype):
        buf = self._small_buf
        if buf is None:
            buf = self._small_buf = np.empty(SMALL_BYTES, np.uint8)
        return buf[:count * dtype.itemsize].view(dtype)

    def broadcast_like(self, op_name, length, src, dst, dtype, root, deadline):
        """The root's src (virtual length L) reaches every dst (start, Pieces) chunk by chunk."""
        dtype = np.dtype(dtype)
        self.begin(op_name, length, dtype, root, deadline)
        per_set = self.slot_bytes * self.n // dtype.itemsize     # the whole set is one buffer
        for start in range(0, length, per_set):
            stop = min(length, start + per_set)
            flat = self._set().reshape(-1).view(dtype)
            if self.rank == root:
                src.read(start, stop, flat[:stop - start])
            self.barrier_wait(deadline)
            if dst is not None:
                base, pieces = dst
                lo, hi = max(start, base), min(stop, base + pieces.size)
                if lo < hi:
                    pieces.write(lo - base, hi - base, flat[lo - start:hi - start])

    def gather_like(self, op_name, mine, outs, dtype, root, deadline):
        """Each rank's `mine` (flat, m elements) lands in outs[k] on ranks that pass outs."""
        dtype = np.dtype(dtype)
        m = mine.size
        self.begin(op_name, m, dtype, root, deadline)
        per_slot = self.slot_bytes // dtype.itemsize
        for start in range(0, m, per_slot):
            stop = min(m, start + per_slot)
            slots = self._set()
            slots[self.rank].view(dtype)[:stop - start] = mine[start:stop]
            self.barrier_wait(deadline)
            if outs is not None:
                for k in range(self.n):
                    outs[k][start:stop] = slots[k].view(dtype)[:stop - start]

    def alltoall(self, ins, outs, dtype, deadline):
        dtype = np.dtype(dtype)
        m = ins[0].size
        self.begin("alltoall", m, dtype, 0, deadline)
        per = self.slot_bytes // dtype.itemsize // self.n
        for start in range(0, m, per):
            stop = min(m, start + per)
            c = stop - start
            slots = self._set()
            mine = slots[self.rank].view(dtype)
            for k in range(self.n):
                mine[k * per:k * per + c] = ins[k][start:stop]
            self.barrier_wait(deadline)
            for k in range(self.n):
                outs[k][start:stop] = slots[k].view(dtype)[self.rank * per:self.rank * per + c]

    # -- reading the peers' tensors directly (backends/cma.py) -------------------------------
    def probe_cma(self, pids, enabled, min_bytes, deadline):
        """Collective, at formation (every member calls it, enabled or not): can every member
        read every other's memory? Each rank publishes a probe word's address and value,
        reads every peer's, and publishes whether all reads matched (and its size
        threshold); all ranks then decide alike from the same table: the path of a call
        must not depend on one member's settings."""
        self.cma_pids = pids                       # rank -> pid, every rank but mine
        self._probe = np.array([(os.getpid() << 20) ^ 0x5A5A5], np.int64)
        row = self.desc[self.rank, 0]
        row[5], row[6] = self._probe.ctypes.data, int(self._probe[0])
        self.desc[self.rank, 1, 6] = min_bytes
        self.barrier_wait(deadline)
        ok = enabled and cma.available()
        if ok:
            reader, got = cma.Reader(), np.zeros(1, np.int64)
            for peer, pid in pids.items():
                try:
                    reader.read(pid, int(self.desc[peer, 0, 5]), got.ctypes.data, 8)
                except OSError as exc:
                    log.debug("group %s: no cross-memory reads from rank %d: %s", self.group,
                              peer, exc)
                    ok = False
                    break
                if got[0] != self.desc[peer, 0, 6]:
                    ok = False
                    break
        row[7] = 1 if ok else 2
        self.barrier_wait(deadline)
        self.use_cma = bool((self.desc[:, 0, 7] == 1).all())
        self.cma_min_bytes = int(self.desc[:, 1, 6].max())
        self.cma_reader = cma.Reader() if self.use_cma else None
        self._cma_scratch = None
        return self.use_cma

    def _read_peer(self, peer, remote, local, nbytes):
        try:
            self.cma_reader.read(self.cma_pids[peer], remote, local, nbytes)
        except OSError as exc:
            self.abort()
            if exc.errno == errno.ESRCH:
                raise PeerDiedError("member process died (its memory is gone)",
                                    group=self.group, rank=self.rank, peer=peer) from None
            raise CollectiveError(f"reading rank {peer}'s tensor failed: {exc}",
                                  group=self.group, rank=self.rank, peer=peer) from None

    def allreduce_cma(self, flat, reduce_into, avg_n, chunk_bytes, deadline):
        """Allreduce of one flat array reading the peers' arrays in place (no slots):
            1. reduce-scatter  rank r reduces share r of the element range in its own
                               array, reading each peer's share r through a cache-sized
                               scratch, chunk by chunk                           barrier
            2. allgather       rank r reads every peer's (final) share straight into the
                               same range of its own array                       barrier
        Nobody writes a range that another rank reads in the same phase: in 1 each rank
        writes only its share of its own array and reads other shares of the others'; the
        last barrier keeps every array unchanged until all reads of it are done."""
        dtype, n, length = flat.dtype, self.n, flat.size
        self.begin("allreduce", length, dtype, 0, deadline, flat.ctypes.data)
        parity = self.op_seq % 2
        addresses = [int(a) for a in self.desc[:, parity, 5]]
        item = dtype.itemsize
        lo, hi = self.rank * length // n, (self.rank + 1) * length // n
        if lo < hi:
            scratch = self._cma_scratch
            if scratch is None or scratch.nbytes != chunk_bytes:
                scratch = self._cma_scratch = np.empty(chunk_bytes, np.uint8)
            per = max(1, chunk_bytes // item)
            tmp_all, tmp_address = scratch[:per * item].view(dtype), scratch.ctypes.data
            for start in range(lo, hi, per):
                stop = min(hi, start + per)
                count = stop - start
                acc, tmp = flat[start:stop], tmp_all[:count]
                for peer in range(n):
                    if peer != self.rank:
                        self._read_peer(peer, addresses[peer] + start * item, tmp_address,
                                        count * item)
                        reduce_into(acc, tmp)
            if avg_n:
                np.divide(flat[lo:hi], avg_n, out=flat[lo:hi])
        self.barrier_wait(deadline)
        base = flat.ctypes.data
        for peer in range(n):
            if peer != self.rank:
                p_lo, p_hi = peer * length // n, (peer + 1) * length // n
                if p_lo < p_hi:
                    self._read_peer(peer, addresses[peer] + p_lo * item, base + p_lo * item,
                                    (p_hi - p_lo) * item)
        self.barrier_wait(deadline)


_dtype_codes = {}


def _dtype_code(dtype):
    code = _dtype_codes.get(dtype)
    if code is None:
        s = np.dtype(dtype).str.encode()
        code = _dtype_codes[dtype] = int.from_bytes(s[:8].ljust(8, b"\0"), "little",
                                                    signed=True)
    return code


def _describe(row):
    code = int(row[3]).to_bytes(8, "little", signed=True).rstrip(b"\0").decode(errors="replace")
    return f"{int(row[2])} elements of {code} (root {int(row[4])})"
