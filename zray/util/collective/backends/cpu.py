"""The cpu backend ("gloo"): shared memory when every member is on this node, ZeroMQ else.

Collectives of a one-node group go through backends/shm.py; a group spanning nodes runs the
schedules of algorithms.py over backends/net.py (ring above tree_threshold_bytes, tree below).
send/recv always use ZeroMQ. Set CollectiveConfig(force_network=True) to take the ZeroMQ
path inside one node (tests, benchmarks).
"""
import logging
import uuid

import numpy as np

from .. import algorithms as alg
from ..errors import CollectiveArgumentError
from ..tensors import reducer
from ..types import ReduceOp
from .base import BaseGroup, MemberInfo
from .liveness import LocalPeers, ProcessId
from .net import DATA, P2P, NetTransport
from .shm import Pieces, ShmSegment

log = logging.getLogger("zray.util.collective")


class CpuGroup(BaseGroup):
    backend = "cpu"

    def __init__(self, name, world_size, rank, config, node_id):
        super().__init__(name, world_size, rank, config)
        self.node_id = node_id
        self.net = NetTransport(name, rank, world_size, config)
        self.shm = None
        self.seq = 0
        self.p2p_seq = {}

    def my_info(self):
        extra = {"segment": f"zraycoll-{uuid.uuid4().hex[:16]}"} if self.rank == 0 else {}
        return MemberInfo(self.rank, self.node_id, ProcessId.current(), self.net.address, extra)

    def form(self, members, deadline):
        same = [m.node_id == self.node_id for m in members]
        local = LocalPeers(self.name, self.rank,
                           {m.rank: m.process for m in members if same[m.rank] and
                            m.rank != self.rank})
        self.net.local_peers = local
        self.net.connect([m.address for m in members], same)
        self.use_shm = all(same) and not self.config.force_network and self.world_size > 1
        if self.use_shm:
            self.shm = ShmSegment(members[0].extra["segment"], self.world_size, self.rank,
                                  self.config.shm_slot_bytes, self.name, self.config, local)
            self.shm.barrier(deadline)     # everyone mapped it: its name can go
            if self.rank == 0:
                self.shm.unlink()
            used = self.shm.probe_cma({m.rank: m.process.pid for m in members
                                       if m.rank != self.rank}, self.config.cma,
                                      self.config.cma_min_bytes, deadline)
            log.debug("group %r: cross-memory reads %s", self.name,
                      "on" if used else "off or refused: the segment only")
        elif self.world_size > 1:
            self.barrier(deadline)         # collective, like the shm path: every peer is up

    def destroy(self):
        if self.shm is not None:
            self.shm.close()
            self.shm = None
        self.net.close()

    def abort(self):
        if self.shm is not None:
            self.shm.abort()
        self.net.abort_all(self.seq)

    # -- helpers ---------------------------------------------------------------------------
    def _net(self, steps, buffers, dtype, op, deadline):
        self.seq += 1
        reduce_into = reducer(op) if op is not None else None
        self.net.run(steps, buffers, self.seq, reduce_into, dtype, deadline)

    def _threshold(self):
        return self.config.tree_threshold_bytes

    # -- operations ------------------------------------------------------------------------
    def barrier(self, deadline):
        if self.world_size == 1:
            return
        if self.use_shm:
            return self.shm.barrier(deadline)
        one = np.zeros(1, np.uint8)
        self._net(alg.tree_allreduce(self.rank, self.world_size, 1), {alg.WORK: one},
                  np.uint8, ReduceOp.MAX, deadline)

    def allreduce(self, view, op, deadline):
        self.allreduce_flat(view.flat(), op, deadline)

    def allreduce_flat(self, flat, op, deadline):
        n = self.world_size
        if n == 1:
            return
        avg = n if op is ReduceOp.AVG else 0
        if self.use_shm:
            if self.shm.use_cma and flat.nbytes >= self.shm.cma_min_bytes:
                return self.shm.allreduce_cma(flat, reducer(op), avg,
                                              self.config.cma_chunk_bytes, deadline)
            p = Pieces([flat])
            return self.shm.reduce_like("allreduce", p, (0, p), flat.dtype, reducer(op), avg,
                                        0, deadline)
        steps = alg.choose_allreduce(self.rank, n, flat.size, flat.nbytes, self._threshold())
        self._net(steps, {alg.WORK: flat}, flat.dtype, op, deadline)
        if avg:
            np.divide(flat, n, out=flat)

    def reduce(self, view, op, root, deadline):
        flat = view.flat()
        n = self.world_size
        if n == 1:
            return
        avg = n if op is ReduceOp.AVG else 0
        if self.use_shm:
            p = Pieces([flat])
            dst = (0, p) if self.rank == root else None
            return self.shm.reduce_like("reduce", p, dst, flat.dtype, reducer(op), avg, root,
                                        deadline)
        work = flat if self.rank == root else flat.copy()
        steps = alg.choose_reduce(self.rank, n, flat.size, flat.nbytes, self._threshold(), root)
        self._net(steps, {alg.WORK: work}, flat.dtype, op, deadline)
        if avg and self.rank == root:
            np.divide(flat, n, out=flat)

    def broadcast(self, view, root, deadline):
        flat = view.flat()
        n = self.world_size
        if n == 1:
            return
        if self.use_shm:
            p = Pieces([flat])
            return self.shm.broadcast_like("broadcast", flat.size, p, None if self.rank == root
                                           else (0, p), flat.dtype, root, deadline)
        self._net(alg.tree_broadcast(self.rank, n, flat.size, root), {alg.WORK: flat},
                  flat.dtype, None, deadline)

    def allgather(self, outs, view, deadline):
        self._gather(outs, view, None, deadline)

    def gather(self, outs, view, root, deadline):
        self._gather(outs, view, root, deadline)

    def _gather(self, outs, view, root, deadline):
        mine, n = view.flat(), self.world_size
        out_flats = [o.flat() for o in outs] if outs is not None else None
        if n == 1:
            if out_flats is not None:
                out_flats[0][:] = mine
            return
        if self.use_shm:
            return self.shm.gather_like("allgather" if root is None else "gather", mine,
                                        out_flats, mine.dtype, root or 0, deadline)
        m = mine.size
        work = np.empty(n * m, mine.dtype)
        work[self.rank * m:(self.rank + 1) * m] = mine
        if root is None:
            steps = alg.ring_allgather(self.rank, n, [(k * m, (k + 1) * m) for k in range(n)])
        else:
            steps = alg.direct_gather(self.rank, n, m, root)
        self._net(steps, {alg.WORK: work}, mine.dtype, None, deadline)
        if out_flats is not None:
            for k in range(n):
                out_flats[k][:] = work[k * m:(k + 1) * m]

    def reducescatter(self, out, ins, op, deadline):
        n, flat = self.world_size, out.flat()
        in_flats = [v.flat() for v in ins]
        avg = n if op is ReduceOp.AVG else 0
        if n == 1:
            flat[:] = in_flats[0]
            return
        m = flat.size
        if self.use_shm:
            return self.shm.reduce_like("reducescatter", Pieces(in_flats),
                                        (self.rank * m, Pieces([flat])), flat.dtype,
                                        reducer(op), avg, 0, deadline)
        work = np.concatenate(in_flats)
        segs = [(k * m, (k + 1) * m) for k in range(n)]
        self._net(alg.ring_reducescatter(self.rank, n, segs), {alg.WORK: work}, flat.dtype, op,
                  deadline)
        flat[:] = work[self.rank * m:(self.rank + 1) * m]
        if avg:
            np.divide(flat, n, out=flat)

    def scatter(self, out, ins, root, deadline):
        n, flat = self.world_size, out.flat()
        m = flat.size
        if n == 1:
            flat[:] = ins[0].flat()
            return
        if self.use_shm:
            src = Pieces([v.flat() for v in ins]) if self.rank == root else None
            return self.shm.broadcast_like("scatter", n * m, src,
                                           (self.rank * m, Pieces([flat])), flat.dtype, root,
                                           deadline)
        if self.rank == root:
            work = np.concatenate([v.flat() for v in ins])
        else:
            work = np.empty(n * m, flat.dtype)
        self._net(alg.direct_scatter(self.rank, n, m, root), {alg.WORK: work}, flat.dtype,
                  None, deadline)
        flat[:] = work[self.rank * m:(self.rank + 1) * m]

    def alltoall(self, outs, ins, deadline):
        n = self.world_size
        out_flats, in_flats = [v.flat() for v in outs], [v.flat() for v in ins]
        if n == 1:
            out_flats[0][:] = in_flats[0]
            return
        if self.use_shm:
            return self.shm.alltoall(in_flats, out_flats, in_flats[0].dtype, deadline)
        m = in_flats[0].size
        src, work = np.concatenate(in_flats), np.empty(n * m, in_flats[0].dtype)
        work[self.rank * m:(self.rank + 1) * m] = in_flats[self.rank]
        self._net(alg.pairwise_alltoall(self.rank, n, m), {alg.WORK: work, alg.INPUT: src},
                  work.dtype, None, deadline)
        for k in range(n):
            out_flats[k][:] = work[k * m:(k + 1) * m]

    def send(self, view, dst, deadline):
        flat = view.flat()
        seq = self.p2p_seq[("to", dst)] = self.p2p_seq.get(("to", dst), 0) + 1
        self.net.send(dst, P2P, seq, flat)

    def recv(self, view, src, deadline):
        flat = view.flat()
        seq = self.p2p_seq[("from", src)] = self.p2p_seq.get(("from", src), 0) + 1
        (their_seq, n_elems, dt), frame = self.net.recv(src, P2P, deadline)
        if n_elems != flat.size or dt != flat.dtype.str:
            raise CollectiveArgumentError(
                f"recv expected {flat.size} elements of {flat.dtype.str}, the sender sent "
                f"{n_elems} of {dt}", group=self.name, rank=self.rank, peer=src)
        flat[:] = np.frombuffer(frame.buffer, dtype=flat.dtype)


__all__ = ["CpuGroup", "DATA"]
