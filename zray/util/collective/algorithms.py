"""Schedules of the cpu backend between nodes, free of I/O.

A schedule is the list of Steps one rank takes; a Step posts its sends, then takes its receives
(copying or reducing each into the work buffer). Ranges are element offsets. The same
`execute` generator drives the ZeroMQ transport (backends/net.py) and the in-memory network
below (MemoryNetwork), so the tests check the real schedules with no process and no socket.

    execute() yields  Send(peer, array)     -> the driver posts it (a copy) and resumes
                      Recv(peer, n_elems)   -> the driver resumes it with the next array
                                               that `peer` sent to this rank (FIFO per pair)

Algorithms (n ranks, L elements, segments split L as evenly as possible):
    ring_allreduce     reduce-scatter then allgather around the ring: 2(n-1) steps, each
                       moving L/n; every rank sends 2(n-1)/n * L (bandwidth-optimal).
    tree_allreduce     binomial reduce to rank 0, then binomial broadcast: 2 ceil(log2 n)
                       steps of L each (latency-optimal, chosen below tree_threshold_bytes).
    ring_reducescatter n-1 steps; rank r ends holding the reduced segment r.
    ring_allgather     n-1 steps; rank r starts holding segment r.
    tree_reduce, tree_broadcast   binomial trees rooted at any rank.
    direct gather/scatter, pairwise alltoall (n-1 steps, rank r meets r+s and r-s).
Every transfer is cut in chunks of at most chunk_elems elements (<= chunk_bytes on the wire).
"""
from collections import deque
from dataclasses import dataclass, field
from typing import Tuple

WORK, INPUT = "work", "input"


@dataclass(frozen=True)
class Transfer:
    peer: int
    start: int
    stop: int
    buf: str = WORK        # sends only: which buffer the data comes from


@dataclass(frozen=True)
class Step:
    sends: Tuple[Transfer, ...] = ()
    recvs: Tuple[Transfer, ...] = ()
    reduce: bool = False   # receives reduce into the work buffer instead of overwriting it


@dataclass(frozen=True)
class Send:
    peer: int
    array: object


@dataclass(frozen=True)
class Recv:
    peer: int
    n_elems: int


def bounds(length, n):
    """n segments of [0, length) as even as possible: [(start, stop), ...]."""
    return [(i * length // n, (i + 1) * length // n) for i in range(n)]


def ring_reducescatter(rank, n, segs):
    nxt, prv = (rank + 1) % n, (rank - 1) % n
    steps = []
    for s in range(n - 1):
        out, inn = segs[(rank - s - 1) % n], segs[(rank - s - 2) % n]
        steps.append(Step((Transfer(nxt, *out),), (Transfer(prv, *inn),), reduce=True))
    return steps


def ring_allgather(rank, n, segs):
    nxt, prv = (rank + 1) % n, (rank - 1) % n
    steps = []
    for s in range(n - 1):
        out, inn = segs[(rank - s) % n], segs[(rank - s - 1) % n]
        steps.append(Step((Transfer(nxt, *out),), (Transfer(prv, *inn),)))
    return steps


def ring_allreduce(rank, n, length):
    segs = bounds(length, n)
    return ring_reducescatter(rank, n, segs) + ring_allgather(rank, n, segs)


def tree_reduce(rank, n, length, root=0):
    v, steps, mask = (rank - root) % n, [], 1
    while mask < n:
        if v & mask:
            steps.append(Step(sends=(Transfer((v - mask + root) % n, 0, length),)))
            break
        if v + mask < n:
            steps.append(Step(recvs=(Transfer((v + mask + root) % n, 0, length),), reduce=True))
        mask <<= 1
    return steps


def tree_broadcast(rank, n, length, root=0):
    v, steps, mask = (rank - root) % n, [], 1
    while mask < n:
        if v & mask:
            steps.append(Step(recvs=(Transfer((v - mask + root) % n, 0, length),)))
            break
        mask <<= 1
    mask >>= 1
    while mask > 0:
        if v + mask < n:
            steps.append(Step(sends=(Transfer((v + mask + root) % n, 0, length),)))
        mask >>= 1
    return steps


def tree_allreduce(rank, n, length):
    return tree_reduce(rank, n, length, 0) + tree_broadcast(rank, n, length, 0)


def ring_reduce(rank, n, length, root):
    """Large reduce: ring reduce-scatter, then every segment goes straight to the root."""
    segs = bounds(length, n)
    steps = ring_reducescatter(rank, n, segs)
    if rank != root:
        steps.append(Step(sends=(Transfer(root, *segs[rank]),)))
    else:
        steps.append(Step(recvs=tuple(Transfer(p, *segs[p]) for p in range(n) if p != root)))
    return steps


def direct_gather(rank, n, seg_len, root):
    """Buffer of n * seg_len; rank r's data sits in segment r; the root receives the rest."""
    if rank != root:
        return [Step(sends=(Transfer(root, rank * seg_len, (rank + 1) * seg_len),))]
    return [Step(recvs=tuple(Transfer(p, p * seg_len, (p + 1) * seg_len)
                             for p in range(n) if p != root))]


def direct_scatter(rank, n, seg_len, root):
    """Buffer of n * seg_len at the root; rank r receives segment r into its segment r."""
    if rank == root:
        return [Step(sends=tuple(Transfer(p, p * seg_len, (p + 1) * seg_len)
                                 for p in range(n) if p != root))]
    return [Step(recvs=(Transfer(root, rank * seg_len, (rank + 1) * seg_len),))]


def pairwise_alltoall(rank, n, seg_len):
    """INPUT segment j goes to rank j's WORK segment `rank` (the caller copies its own)."""
    steps = []
    for s in range(1, n):
        to, frm = (rank + s) % n, (rank - s) % n
        steps.append(Step((Transfer(to, to * seg_len, (to + 1) * seg_len, INPUT),),
                          (Transfer(frm, frm * seg_len, (frm + 1) * seg_len),)))
    return steps


def choose_allreduce(rank, n, length, nbytes, tree_threshold_bytes):
    if n <= 1:
        return []
    if nbytes < tree_threshold_bytes or length < n:
        return tree_allreduce(rank, n, length)
    return ring_allreduce(rank, n, length)


def choose_reduce(rank, n, length, nbytes, tree_threshold_bytes, root):
    if n <= 1:
        return []
    if nbytes < tree_threshold_bytes or length < n:
        return tree_reduce(rank, n, length, root)
    return ring_reduce(rank, n, length, root)


def _chunks(start, stop, chunk_elems):
    pos = start
    while pos < stop:
        end = min(stop, pos + chunk_elems)
        yield pos, end
        pos = end


def execute(steps, buffers, chunk_elems, reduce_into):
    """Run one rank's schedule: a generator of Send/Recv (see the module docstring)."""
    work = buffers[WORK]
    for step in steps:
        for t in step.sends:
            src = buffers[t.buf]
            for a, b in _chunks(t.start, t.stop, chunk_elems):
                yield Send(t.peer, src[a:b])
        for t in step.recvs:
            for a, b in _chunks(t.start, t.stop, chunk_elems):
                data = yield Recv(t.peer, b - a)
                if step.reduce:
                    reduce_into(work[a:b], data)
                else:
                    work[a:b] = data


class DeadlockError(RuntimeError):
    pass


@dataclass
class MemoryNetwork:
    """n ranks exchanging arrays through FIFO queues, run round-robin in one thread."""
    n: int
    copy_sends: bool = True       # False: queue views, as a zero-copy transport sends the
    #                               tensor itself; a schedule that writes a range it sent
    #                               before the peer took it then gives a wrong result
    queues: dict = field(default_factory=dict)
    messages: int = 0
    max_message_elems: int = 0
    sent_elems: list = None

    def __post_init__(self):
        self.queues = {(s, d): deque() for s in range(self.n) for d in range(self.n)}
        self.sent_elems = [0] * self.n

    def run(self, generators):
        """Drive one generator per rank to the end; DeadlockError if none can move."""
        waiting = {}                  # rank -> Recv it waits on
        live = dict(enumerate(generators))
        for rank, gen in list(live.items()):
            self._advance(rank, gen, None, waiting, live)
        while live:
            moved = False
            for rank in list(live):
                want = waiting[rank]
                q = self.queues[(want.peer, rank)]
                if q:
                    data = q.popleft()
                    if len(data) != want.n_elems:
                        raise ValueError(f"rank {rank} expected {want.n_elems} elements from "
                                         f"{want.peer}, got {len(data)}")
                    self._advance(rank, live[rank], data, waiting, live)
                    moved = True
            if not moved and live:
                raise DeadlockError(f"ranks {sorted(live)} wait forever: "
                                    f"{ {r: waiting[r].peer for r in live} }")
        if any(self.queues.values()):
            raise DeadlockError("messages left unreceived: "
                                f"{[k for k, q in self.queues.items() if q]}")

    def _advance(self, rank, gen, value, waiting, live):
        try:
            op = gen.send(value)
            while isinstance(op, Send):
                if op.peer == rank or not 0 <= op.peer < self.n:
                    raise ValueError(f"rank {rank} sends to invalid peer {op.peer}")
                self.queues[(rank, op.peer)].append(
                    op.array.copy() if self.copy_sends else op.array)
                self.messages += 1
                self.sent_elems[rank] += len(op.array)
                self.max_message_elems = max(self.max_message_elems, len(op.array))
                op = next(gen)
            waiting[rank] = op
        except StopIteration:
            live.pop(rank, None)
            waiting.pop(rank, None)
