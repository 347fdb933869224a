"""The mpi backend (mpi4py; MPICH >= 4.3 and < 5 for groups of actors).

Two ways to form a group:
  * actors (processes zray forked, never started by mpiexec): MPI starts lazily in the actor
    (a singleton); rank 0 opens a port and passes its name through the rendezvous; the group
    grows one member at a time: the members so far Accept together, the newcomer Connects,
    and the inter-communicator is Merged; a final Split orders the ranks. Never fork after
    this (zray's workers are forked from the zygote before).
  * init_from_world(): under mpiexec/srun the group is a duplicate of COMM_WORLD.
Every call is nonblocking underneath (Iallreduce, Ibcast, ...) and polled with Test: spin
first, then sleep, checking the deadline and the peers (by process, same node) every
liveness_interval_ms, so that a dead member or a timeout is an error instead of a hang. An
MPI collective cannot be cancelled: after such an error the communicator is abandoned and
the group broken. With verify_calls, every collective first compares (size, dtype, root,
op) over the group with one tiny MIN-allreduce, so mismatched shapes raise an argument error
on every rank instead of corrupting memory.

A small allreduce (below the ring's threshold) on MPICH's ABI runs its verification and
its data in C (zray._mpi_hot, one call without the GIL) and comes back to the Python waits
below only when a peer is late; mpi4py's per-call objects cost 2.5x raw MPI at 4 KiB.
"""
import importlib.util
import logging
import os
import socket
import time

import numpy as np

from .. import algorithms as alg
from ..errors import (CollectiveArgumentError, CollectiveError, CollectiveTimeoutError,
                      PeerDiedError)
from ..tensors import reducer
from ..types import ReduceOp
from .base import BaseGroup, MemberInfo
from .liveness import LocalPeers, ProcessId

_HOT_S = 5e-5             # polls back to back this long,
_HOT_S_PER_BYTE = 2e-9    # and until this much CPU per byte of the message (0.5 GB/s),
_SPIN_S = 0.005           # then polls yielding the core now and then this long, then sleeps
_MAX_PAUSE_S = 2e-4      # then sleeps no longer than this between polls
_POLLS_PER_CLOCK = 16    # polls between two reads of the clock while spinning
_QUICK_POLLS = 32        # polls (~0.15 us each) before the first clock read of a wait
_MAX_ROWS = 64           # verification rows kept (one per distinct call shape)
_ROW_WORDS = 10          # a verification row: 5 fields and their negations
_VERIFY_WORDS = 12       # the row, then the C path's two flags (kept request fits, a repeat)
_RING_TAG = 8            # point-to-point messages of _ring_allreduce (send/recv use 7)
# Allreduces from this size take _ring_allreduce instead of MPI's Iallreduce. Measured,
# 2 ranks on one node (us, the median of 12 interleaved blocks beside raw Allreduce):
#   a job's communicator (MPICH's shared memory), Iallreduce polled in C -> ring: 1 MiB
#   224-226 -> 224-242 (raw 203), 4 MiB 1,024 -> 1,073 (raw 989), 8 MiB 2,068-2,103 ->
#   2,047-2,052 (raw 1,942), 16 MiB 4,032 -> 3,852, 64 MiB 37,422 -> 20,718;
#   a joined communicator (UCX; Iallreduce polled in Python): 256 KiB 50 -> 90 and 1 MiB
#   181 -> 252 (its point-to-point costs more per message), 16 MiB 2,329 -> 2,144, 64 MiB
#   25,233 -> 15,371.
RING_MIN_BYTES_WORLD = 8 << 20
RING_MIN_BYTES_JOINED = 4 << 20
log = logging.getLogger("zray.util.collective")
_yield = getattr(os, "sched_yield", lambda: None)
_thread_time = getattr(time, "thread_time", time.process_time)
_OPS = {"barrier": 1, "allreduce": 2, "reduce": 3, "broadcast": 4, "allgather": 5,
        "reducescatter": 6, "gather": 7, "scatter": 8, "alltoall": 9}


def mpi_available():
    return importlib.util.find_spec("mpi4py") is not None


def _mpi():
    from mpi4py import MPI          # starts MPI in this process on first import
    return MPI


def _int_handle(handle):
    """mpi4py's handle of an int-handle MPI, as the signed C int it is."""
    return ((handle & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000


def _bind_hot(MPI):
    """zray._mpi_hot bound to the libmpi mpi4py loaded, or None where it cannot serve:
    an MPI whose handles are not C ints (MPICH's ABI), no persistent collectives (the
    verification is one), or the extension missing."""
    global _HOT
    if _HOT is not None:
        return _HOT or None
    _HOT = False
    try:
        import ctypes
        from zray import _mpi_hot
        if any(MPI._sizeof(t) != 4 for t in (MPI.Comm, MPI.Request, MPI.Datatype, MPI.Op)) \
                or not hasattr(MPI.Comm, "Allreduce_init"):
            return None
        lib = ctypes.CDLL(MPI.__file__)        # its dependencies: the libmpi in use
        _mpi_hot.bind(*(ctypes.cast(getattr(lib, f), ctypes.c_void_p).value
                        for f in ("MPI_Start", "MPI_Test", "MPI_Iallreduce",
                                  "MPI_Allreduce_init", "MPI_Request_free")))
        _HOT = _mpi_hot
    except (ImportError, OSError, AttributeError, TypeError, ValueError) as exc:
        log.debug("the mpi backend's C allreduce is off: %r", exc)
    return _HOT or None


_HOT = None                # zray._mpi_hot once bound, False where it cannot be


def _dtype_code(dtype):
    s = np.dtype(dtype).str.encode()
    return int.from_bytes(s[:8].ljust(8, b"\0"), "little", signed=True)


class MpiGroup(BaseGroup):
    backend = "mpi"
    use_shm = False

    def __init__(self, name, world_size, rank, config, node_id):
        super().__init__(name, world_size, rank, config)
        self.node_id = node_id
        self.MPI = _mpi()
        self.comm = None
        self.port = None
        self.peers = LocalPeers(name, rank, {})
        self.verify = config.verify_calls
        self.ring_min_bytes = RING_MIN_BYTES_JOINED
        self._init_fast_state()

    def _init_fast_state(self):
        """What every call reuses: MPI's ops by ReduceOp, the verification rows and buffer."""
        MPI = self.MPI
        self._ops = {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD,
                     ReduceOp.MIN: MPI.MIN, ReduceOp.MAX: MPI.MAX}
        self._in_place = MPI.IN_PLACE
        self._rows = {}
        self._verify_in = np.zeros(_VERIFY_WORDS, np.int64)
        self._verify_in_bytes = memoryview(self._verify_in).cast("B")
        self._verify_out = np.zeros(_VERIFY_WORDS, np.int64)
        self._verify_req = None        # the persistent MIN-allreduce, made on first use
        self._scratch = None           # _ring_allreduce's receive buffer, kept
        self._ring_steps = {}          # _ring_allreduce's schedule by length
        self._hot = _bind_hot(MPI)     # the C allreduce, or None
        self._hot_state = None         # its int64 slots, made with the verification request
        self._hot_plans = {}           # (size, dtype, op) -> its plan (row, count, type, op)

    # -- formation -------------------------------------------------------------------------
    def my_info(self):
        extra = {}
        if self.rank == 0 and self.world_size > 1:
            self.port = self.MPI.Open_port()
            extra["port"] = self.port
        return MemberInfo(self.rank, self.node_id, ProcessId.current(), "", extra)

    def form(self, members, deadline):
        MPI = self.MPI
        self.peers = LocalPeers(self.name, self.rank,
                                {m.rank: m.process for m in members
                                 if m.node_id == self.node_id and m.rank != self.rank})
        if self.world_size == 1:
            self.comm = MPI.COMM_SELF.Dup()
            return
        port = members[0].extra["port"]
        t0 = time.perf_counter()
        if self.rank == 0:
            comm = MPI.COMM_SELF
        else:
            inter = MPI.COMM_SELF.Connect(port, MPI.INFO_NULL, 0)
            comm = inter.Merge(True)
            inter.Disconnect()
        while comm.Get_size() < self.world_size:
            inter = comm.Accept(port, MPI.INFO_NULL, 0)
            merged = inter.Merge(False)
            inter.Disconnect()
            if comm is not MPI.COMM_SELF:
                comm.Free()
            comm = merged
        self.comm = comm.Split(0, self.rank)
        if comm is not MPI.COMM_SELF:
            comm.Free()
        if self.rank == 0:
            MPI.Close_port(port)
            self.port = None
        assert self.comm.Get_rank() == self.rank   # Split by key: cannot differ
        log.debug("mpi group %r joined in %.1f ms", self.name, (time.perf_counter() - t0) * 1e3)

    @classmethod
    def from_comm(cls, comm, name, config):
        """A group over an existing communicator (the job's COMM_WORLD, duplicated)."""
        MPI = _mpi()
        self = cls.__new__(cls)
        BaseGroup.__init__(self, name, comm.Get_size(), comm.Get_rank(), config)
        self.MPI, self.port, self.verify = MPI, None, config.verify_calls
        self.comm = comm.Dup()
        self.ring_min_bytes = RING_MIN_BYTES_WORLD
        self._init_fast_state()
        self.node_id = socket.gethostname()
        procs = self.comm.allgather((self.node_id, ProcessId.current()))
        self.peers = LocalPeers(name, self.rank, {r: p for r, (node, p) in enumerate(procs)
                                                  if node == self.node_id and r != self.rank})
        return self

    def subgroup(self, ranks, name, timeout_ms=None):
        """MPI_Comm_create_group over `ranks` (collective over those ranks only)."""
        sub = self.comm.Create_group(self.comm.Get_group().Incl(ranks), tag=11)
        g = MpiGroup.__new__(MpiGroup)
        BaseGroup.__init__(g, name, len(ranks), ranks.index(self.rank), self.config)
        g.MPI, g.port, g.verify, g.node_id, g.comm = self.MPI, None, self.verify, \
            self.node_id, sub
        g.ring_min_bytes = self.ring_min_bytes
        g._init_fast_state()
        g.peers = LocalPeers(name, g.rank, {ranks.index(r): p for r, p in self.peers.peers.items()
                                            if r in ranks})
        return g

    def destroy(self):
        hot, state = getattr(self, "_hot", None), getattr(self, "_hot_state", None)
        self._hot = self._hot_state = None
        if state is not None and state[hot.SLOT_HAS_KEPT] and \
                not getattr(self, "_abandoned", False):
            try:                             # the C path's kept (persistent) data request
                self.MPI.Request.fromhandle(int(state[hot.SLOT_KEPT]) % 2 ** 64).Free()
            except self.MPI.Exception as exc:
                log.debug("freeing the kept request of %r: %r", self.name, exc)
        req, self._verify_req = getattr(self, "_verify_req", None), None
        if req and not getattr(self, "_abandoned", False):
            try:
                req.Free()
            except self.MPI.Exception as exc:
                log.debug("freeing the verification request of %r: %r", self.name, exc)
        if self.port is not None:
            self.MPI.Close_port(self.port)
            self.port = None
        if self.comm is not None and not getattr(self, "_abandoned", False):
            try:
                self.comm.Free()
            except self.MPI.Exception as exc:
                log.debug("freeing the communicator of %r: %r", self.name, exc)
        self.comm = None

    def abort(self):
        self._abandoned = True      # a pending collective may still reference it

    # -- waiting ---------------------------------------------------------------------------
    def _wait(self, req, deadline, what, nbytes=0):
        MPI = self.MPI
        try:
            # MPI moves data only inside Test. Three phases:
            #   hot    polls back to back for _HOT_S of wall time, and for a large message
            #          until this thread spent nbytes * _HOT_S_PER_BYTE of CPU: over MPICH's
            #          own shared memory (a job's communicator) a message moves a cell per
            #          Test, and a sleep or a yield (a time slice of another process on a busy
            #          node) between cells made 64 MiB take 5-10x raw's time. CPU time, not
            #          wall: on a loaded node the wall clock runs while this rank is not.
            #   yield  polls, yielding the core every _POLLS_PER_CLOCK polls, for _SPIN_S
            #          (a late peer on a busy node may need it; sched_yield returns at once
            #          when nobody is waiting);
            #   sleep  10 us doubling to _MAX_PAUSE_S between rounds of polls.
            # The clock is read every _POLLS_PER_CLOCK polls (~1 us each); the peers and the
            # deadline are checked every liveness_interval_ms in every phase.
            test = req.Test
            for _ in range(_QUICK_POLLS):      # a small message: done before any clock read
                if test():
                    return
            now = time.monotonic()
            hot_until = now + _HOT_S
            cpu_budget = nbytes * _HOT_S_PER_BYTE
            cpu_until = _thread_time() + cpu_budget if cpu_budget > _HOT_S else None
            interval = self.config.liveness_interval_ms / 1000
            next_check = now + interval
            yield_until = None                 # set when the hot phase ends
            pause = 1e-5
            while True:
                for _ in range(_POLLS_PER_CLOCK):
                    if test():
                        return
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + interval
                    self.peers.check()
                    if now >= deadline:
                        raise CollectiveTimeoutError(f"{what} timed out", group=self.name,
                                                     rank=self.rank)
                if yield_until is None:
                    if now < hot_until or (cpu_until is not None and
                                           _thread_time() < cpu_until):
                        continue
                    yield_until = now + _SPIN_S
                if now < yield_until:
                    _yield()
                else:
                    time.sleep(pause)
                    pause = min(pause * 2, _MAX_PAUSE_S)
        except MPI.Exception as exc:
            self._raise_mpi(exc, what)

    def _raise_mpi(self, exc, what):
        text = exc.Get_error_string()
        if exc.Get_error_class() == self.MPI.ERR_TRUNCATE:
            raise CollectiveArgumentError(f"{what}: mismatched sizes ({text})",
                                          group=self.name, rank=self.rank) from None
        raise CollectiveError(f"{what}: MPI error {text}", group=self.name,
                              rank=self.rank) from None

    def _verify(self, op_name, array, root, op, deadline):
        """Every rank compares (op, size, dtype, root, reduce op) with one MIN-allreduce of
        the fields and their negations: the result equals my row iff min == max == mine for
        every field, i.e. iff every rank passed the same. The rows are built once per
        distinct call shape (a training loop repeats a few), the comparison is on bytes."""
        if not self.verify or self.world_size == 1:
            return
        mine_bytes = self._row(op_name, array, root, op)
        req = self._verify_req
        if req is None:
            req = self._verify_req = self._persistent_verify()
        self._verify_in_bytes[:len(mine_bytes)] = mine_bytes
        self._verify_in[_ROW_WORDS:] = 0        # the C path's flags: no kept request here
        if req is False:
            req = self.comm.Iallreduce(self._verify_in, self._verify_out, self.MPI.MIN)
        else:
            req.Start()
        self._wait(req, deadline, op_name)
        if self._verify_out[:_ROW_WORDS].tobytes() != mine_bytes:
            raise self._mismatch(op_name, array, root)

    def _row(self, op_name, array, root, op):
        key = (op_name, array.size if array is not None else -1,
               array.dtype if array is not None else None, root, op)
        mine_bytes = self._rows.get(key)
        if mine_bytes is None:
            if len(self._rows) >= _MAX_ROWS:
                self._rows.clear()
            fields = [_OPS[op_name], key[1], _dtype_code(key[2]) if array is not None else 0,
                      root, op.value if op is not None else -1]
            mine_bytes = self._rows[key] = np.array(fields + [-f for f in fields],
                                                    dtype=np.int64).tobytes()
        return mine_bytes

    def _mismatch(self, op_name, array, root):
        return CollectiveArgumentError(
            f"mismatched {op_name}: the ranks passed different sizes, dtypes, roots or "
            f"ops (mine: {array.size if array is not None else '-'} elements of "
            f"{array.dtype if array is not None else '-'}, root {root})",
            group=self.name, rank=self.rank)

    def _hot_setup(self):
        """The C path's slots, made at this rank's first allreduce, and with them the
        persistent verification request where calls are verified (_verify makes it at the
        first verified call otherwise: either way every rank's first, the same place in
        the call order). The C path needs that request: without it, the Python path."""
        verifying = verify = 0
        if self.verify and self.world_size > 1:
            if self._verify_req is None:
                self._verify_req = self._persistent_verify()
            if self._verify_req is False:
                self._hot = None
                return
            verifying, verify = 1, _int_handle(self._verify_req.handle)
        slots = np.zeros(self._hot.SLOTS, np.int64)
        slots[:9] = (_int_handle(self.comm.handle), verifying, verify,
                     self._verify_in.ctypes.data, self._verify_out.ctypes.data,
                     int(self.MPI.IN_PLACE), int(_HOT_S * 1e9), 0,
                     _int_handle(self.MPI.INFO_NULL.handle))
        self._hot_state = slots

    def _persistent_verify(self):
        """One persistent MIN-allreduce (MPI 4) over fixed buffers, restarted by every
        call: half the cost of building a new Iallreduce each time (0.9 against 1.9 us,
        2 ranks). Every rank makes it at its first verified call, in the same place of the
        call order, and every later call restarts the same one, so the ranks always start
        matching operations (a request per call shape would not: a mismatch is exactly
        when the ranks' shapes differ). False where the MPI has no persistent
        collectives."""
        try:
            return self.comm.Allreduce_init(self._verify_in, self._verify_out, self.MPI.MIN)
        except (AttributeError, NotImplementedError, self.MPI.Exception) as exc:
            log.debug("no persistent collectives (%r): a new Iallreduce per call", exc)
            return False

    # -- operations ------------------------------------------------------------------------
    def barrier(self, deadline):
        self._wait(self.comm.Ibarrier(), deadline, "barrier")

    def allreduce(self, view, op, deadline):
        self.allreduce_flat(view.flat(), op, deadline)

    def allreduce_hot(self, a, op, deadline=None):
        """The C path: True when it ran this allreduce (to its end: with the Python waits
        when a peer was late), False when the call cannot take it and nothing was started.
        `deadline` None: the group's default timeout from now (the API's hot path computes
        no deadline for the calls that need none)."""
        hot = self._hot_state
        if hot is None or a.nbytes >= self.ring_min_bytes:
            return False
        plan = self._hot_plans.get((a.size, a.dtype, op))
        if plan is None:
            plan = self._hot_plan(a, op)
        if not plan:
            return False
        rc = self._hot.allreduce(hot, a, plan)
        if rc:
            if deadline is None:
                deadline = time.monotonic() + self.config.timeout_ms / 1000
            self._hot_finish(rc, a, op, plan, deadline)
        if op is ReduceOp.AVG:
            np.divide(a, self.world_size, out=a)
        return True

    def allreduce_flat(self, a, op, deadline):
        if self.allreduce_hot(a, op, deadline):
            return
        if self._hot_state is None and self._hot is not None:
            self._hot_setup()                # this rank's first allreduce: the C path next
        self._verify("allreduce", a, 0, op, deadline)
        if a.nbytes >= self.ring_min_bytes and a.size >= self.world_size > 1:
            self._ring_allreduce(a, op, deadline)
        else:
            self._wait(self.comm.Iallreduce(self._in_place, a, self._ops[op]), deadline,
                       "allreduce", a.nbytes)
        if op is ReduceOp.AVG:
            np.divide(a, self.world_size, out=a)

    def _hot_plan(self, a, op):
        """The C path's plan for this shape: the verification row, then count, datatype and
        op handles. False (the Python path) where mpi4py has no predefined type for it."""
        if len(self._hot_plans) >= _MAX_ROWS:
            self._hot_plans.clear()
        mpi_type = self.MPI._typedict.get(a.dtype.char)
        if mpi_type is None or a.size >= 2 ** 31:
            self._hot_plans[(a.size, a.dtype, op)] = False
            return False
        row = self._row("allreduce", a, 0, op) if self.verify else bytes(8 * _ROW_WORDS)
        words = np.frombuffer(row, np.int64).tolist() + [
            a.size, _int_handle(mpi_type.handle), _int_handle(self._ops[op].handle),
            int(max(_HOT_S, a.nbytes * _HOT_S_PER_BYTE) * 1e9)]
        plan = self._hot_plans[(a.size, a.dtype, op)] = np.array(words, np.int64).tobytes()
        return plan

    def _hot_finish(self, rc, a, op, plan, deadline):
        """The C path came back before the end: a late peer (wait here, with the deadline
        and the peers' liveness), a mismatch, or an MPI error."""
        MPI = self.MPI
        if rc == 1:                                  # the verification is pending
            self._wait(self._verify_req, deadline, "allreduce")
            if self._verify_out[:_ROW_WORDS].tobytes() != self._row("allreduce", a, 0, op):
                raise self._mismatch("allreduce", a, 0)
            rc = self._hot.data(self._hot_state, a, plan)
            if rc:
                self._hot_finish(rc, a, op, plan, deadline)
        elif rc == 2:
            raise self._mismatch("allreduce", a, 0)
        elif rc == 3:                                # the data is pending
            handle = int(self._hot_state[self._hot.SLOT_REQUEST]) % 2 ** 64
            self._wait(MPI.Request.fromhandle(handle), deadline, "allreduce", a.nbytes)
        else:
            self._raise_mpi(MPI.Exception(-rc), "allreduce")

    def _ring_allreduce(self, a, op, deadline):
        """A large allreduce as algorithms.ring_allreduce over MPI point-to-point: each
        step posts its receives first (into a scratch to reduce from, or straight into
        place), then its sends, waits for the receives and reduces, and waits for its sends
        before the next step may change what they read. MPICH's nonblocking Iallreduce
        picks slower schedules than its blocking Allreduce at these sizes (2 ranks, one
        node, polled back to back: 1 MiB 199-204 against 186 us); this matched the blocking
        one (184 us) and beat it at 16 MiB (3.7 against 4.0 ms). Receives posted after the
        sends cost 20 us more at 256 KiB (67 against 47)."""
        comm, reduce_into = self.comm, reducer(op)
        steps = self._ring_steps.get(a.size)
        if steps is None:            # made once per length: building it cost 12 us a call
            if len(self._ring_steps) >= _MAX_ROWS:
                self._ring_steps.clear()
            steps = self._ring_steps[a.size] = alg.ring_allreduce(self.rank, self.world_size,
                                                                  a.size)
        largest = -(-a.size // self.world_size)        # a segment: one receive per step
        scratch = self._scratch
        if scratch is None or scratch.dtype != a.dtype or scratch.size < largest:
            scratch = self._scratch = np.empty(largest, a.dtype)
        for step in steps:
            recvs = []
            for t in step.recvs:
                buf = scratch[:t.stop - t.start] if step.reduce else a[t.start:t.stop]
                recvs.append((t, buf, comm.Irecv(buf, t.peer, _RING_TAG)))
            sends = [comm.Isend(a[t.start:t.stop], t.peer, _RING_TAG) for t in step.sends]
            for t, buf, req in recvs:
                self._wait(req, deadline, "allreduce", buf.nbytes)
                if step.reduce:
                    reduce_into(a[t.start:t.stop], buf)
            for req in sends:
                self._wait(req, deadline, "allreduce")

    def reduce(self, view, op, root, deadline):
        a = view.flat()
        self._verify("reduce", a, root, op, deadline)
        mop = self._ops[op]
        if self.rank == root:
            req = self.comm.Ireduce(self.MPI.IN_PLACE, a, mop, root)
        else:
            req = self.comm.Ireduce(a, None, mop, root)
        self._wait(req, deadline, "reduce", a.nbytes)
        if op is ReduceOp.AVG and self.rank == root:
            np.divide(a, self.world_size, out=a)

    def broadcast(self, view, root, deadline):
        a = view.flat()
        self._verify("broadcast", a, root, None, deadline)
        self._wait(self.comm.Ibcast(a, root), deadline, "broadcast", a.nbytes)

    def allgather(self, outs, view, deadline):
        a = view.flat()
        self._verify("allgather", a, 0, None, deadline)
        buf = np.empty((self.world_size, a.size), a.dtype)
        self._wait(self.comm.Iallgather(a, buf), deadline, "allgather", buf.nbytes)
        for k, o in enumerate(outs):
            o.flat()[:] = buf[k]

    def gather(self, outs, view, root, deadline):
        a = view.flat()
        self._verify("gather", a, root, None, deadline)
        buf = np.empty((self.world_size, a.size), a.dtype) if self.rank == root else None
        self._wait(self.comm.Igather(a, buf, root), deadline, "gather",
                   a.nbytes * self.world_size)
        if outs is not None:
            for k, o in enumerate(outs):
                o.flat()[:] = buf[k]

    def reducescatter(self, out, ins, op, deadline):
        a = out.flat()
        self._verify("reducescatter", a, 0, op, deadline)
        src = np.concatenate([v.flat() for v in ins])
        self._wait(self.comm.Ireduce_scatter_block(src, a, self._ops[op]), deadline,
                   "reducescatter", src.nbytes)
        if op is ReduceOp.AVG:
            np.divide(a, self.world_size, out=a)

    def scatter(self, out, ins, root, deadline):
        a = out.flat()
        self._verify("scatter", a, root, None, deadline)
        src = np.concatenate([v.flat() for v in ins]) if self.rank == root else None
        self._wait(self.comm.Iscatter(src, a, root), deadline, "scatter",
                   a.nbytes * self.world_size)

    def alltoall(self, outs, ins, deadline):
        src = np.concatenate([v.flat() for v in ins])
        self._verify("alltoall", ins[0].flat(), 0, None, deadline)
        buf = np.empty_like(src)
        self._wait(self.comm.Ialltoall(src, buf), deadline, "alltoall", buf.nbytes)
        m = ins[0].array.size
        for k, o in enumerate(outs):
            o.flat()[:] = buf[k * m:(k + 1) * m]

    def send(self, view, dst, deadline):
        a = view.flat()
        self._wait(self.comm.Isend(a, dst, 7), deadline, f"send to {dst}", a.nbytes)

    def recv(self, view, src, deadline):
        a = view.flat()
        self._wait(self.comm.Irecv(a, src, 7), deadline, f"recv from {src}", a.nbytes)


def init_from_world(backend="mpi", group_name="default", *, config=None):
    """Make the MPI job's COMM_WORLD the group `group_name` (every rank calls this)."""
    from .. import collective as api
    from ..types import normalize_backend
    backend = normalize_backend(backend)
    if backend != "mpi":
        raise CollectiveArgumentError(
            f"init_collective_group_from_world supports backend 'mpi', got {backend!r}",
            group=group_name)
    if not mpi_available():
        from ..errors import BackendUnavailableError
        raise BackendUnavailableError("the mpi backend needs mpi4py", group=group_name)
    MPI = _mpi()
    impl = MpiGroup.from_comm(MPI.COMM_WORLD, group_name, config or api.get_config())
    api._register(group_name, impl)
    return impl.rank, impl.world_size


__all__ = ["MpiGroup", "init_from_world", "mpi_available", "PeerDiedError"]
