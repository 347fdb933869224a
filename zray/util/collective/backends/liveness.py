"""How a waiting member learns that a peer died.

Peers on this node: their process, checked by pid and start time in /proc (a zombie or a
reused pid counts as dead), every liveness_interval_ms of waiting. Peers on other nodes: the
ZeroMQ connection to them (backends/net.py) carries ZMTP heartbeats; its monitor reports the
disconnect (at once when the process dies, after heartbeat_timeout_ms when the node does).
"""
import os
from dataclasses import dataclass

from ..errors import PeerDiedError


@dataclass(frozen=True)
class ProcessId:
    pid: int
    start_time: int          # field 22 of /proc/<pid>/stat, in clock ticks since boot

    @classmethod
    def current(cls):
        return cls(os.getpid(), process_start_time(os.getpid()))


def process_start_time(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return -1
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return -1
    return int(fields[19])


def process_alive(proc):
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return process_start_time(proc.pid) == proc.start_time


class LocalPeers:
    """The peers of a group that run on this node, checked by process."""

    def __init__(self, group, rank, peers):
        self.group, self.rank = group, rank
        self.peers = dict(peers)        # rank -> ProcessId

    def check(self):
        for peer, proc in self.peers.items():
            if not process_alive(proc):
                raise PeerDiedError(f"member process {proc.pid} died",
                                    group=self.group, rank=self.rank, peer=peer)
