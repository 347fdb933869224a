"""What every backend's group implements, and the member record exchanged at rendezvous."""
import time
from dataclasses import dataclass, field

from ..backends.liveness import ProcessId


@dataclass(frozen=True)
class MemberInfo:
    rank: int
    node_id: str
    process: ProcessId
    address: str = ""              # the member's ZeroMQ endpoint (cpu backend)
    extra: dict = field(default_factory=dict)   # backend specifics (segment, MPI port, ...)


class BaseGroup:
    """A formed group of one backend. The API layer has already validated the arguments
    (views, ranks, list lengths); a method raises a CollectiveError or returns None."""
    backend = "?"

    def __init__(self, name, world_size, rank, config):
        self.name, self.world_size, self.rank, self.config = name, world_size, rank, config

    @staticmethod
    def deadline(timeout_ms):
        return time.monotonic() + timeout_ms / 1000

    def allreduce(self, view, op, deadline): raise NotImplementedError
    def reduce(self, view, op, root, deadline): raise NotImplementedError
    def broadcast(self, view, root, deadline): raise NotImplementedError
    def allgather(self, outs, view, deadline): raise NotImplementedError
    def reducescatter(self, out, ins, op, deadline): raise NotImplementedError
    def gather(self, outs, view, root, deadline): raise NotImplementedError
    def scatter(self, out, ins, root, deadline): raise NotImplementedError
    def alltoall(self, outs, ins, deadline): raise NotImplementedError
    def send(self, view, dst, deadline): raise NotImplementedError
    def recv(self, view, src, deadline): raise NotImplementedError
    def barrier(self, deadline): raise NotImplementedError

    def abort(self):
        """Tell the other members this one gave up (best effort, never blocks)."""

    def destroy(self):
        """Release sockets, segments, communicators."""
