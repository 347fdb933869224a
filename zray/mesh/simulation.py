"""An in-memory network with virtual time for Swim members: the twin of the real transport.

Messages take `latency` seconds; a partition drops messages between groups; a killed member
neither sends nor receives. Used by the unit tests and by benchmarks/membership_scale.py.
"""
import heapq
import itertools
import random

from .swim import DEAD, LEFT, Swim, SwimConfig


class SimulatedMesh:
    def __init__(self, n, config=None, seed=0, latency=0.002, tick=0.01):
        self.config = config or SwimConfig()
        self.rng = random.Random(seed)
        self.latency = latency
        self.tick_step = tick
        self.now = 0.0
        self.members = {}
        self.killed = set()
        self.groups = None           # partition: address -> group id
        self._queue = []
        self._counter = itertools.count()
        self.messages_sent = 0
        for i in range(n):
            self.add_member(join=False)
        # A started cluster: everyone knows everyone (as after a completed join).
        names = list(self.members)
        for address in names:
            for other in names:
                if other != address:
                    self.members[address]._on_alive(other, 0, other, {}, self.now)
            self.members[address].take_events()
            self.members[address]._broadcasts.clear()

    def add_member(self, join=True, seeds=None):
        address = f"m{len(self.members)}"
        member = Swim(address, address, config=self.config,
                      rng=random.Random(self.rng.random()), now=self.now)
        self.members[address] = member
        if join:
            member.join(seeds or [self.rng.choice([a for a in self.members if a != address])], self.now)
            self._flush(member)
        return address

    def kill(self, address):
        self.killed.add(address)

    def partition(self, *groups):
        self.groups = {a: i for i, g in enumerate(groups) for a in g}

    def heal(self):
        self.groups = None

    def _connected(self, a, b):
        return self.groups is None or self.groups.get(a) == self.groups.get(b)

    def _flush(self, member):
        for address, message in member.take_outbox():
            self.messages_sent += 1
            if address in self.killed or not self._connected(member.address, address):
                continue
            heapq.heappush(self._queue, (self.now + self.latency, next(self._counter),
                                         member.address, address, message))

    def step(self):
        """Advance virtual time by one tick: deliver due messages, run timers."""
        self.now += self.tick_step
        while self._queue and self._queue[0][0] <= self.now:
            _, _, sender, address, message = heapq.heappop(self._queue)
            if address in self.killed:
                continue
            receiver = self.members[address]
            receiver.receive(sender, message, self.now)
            self._flush(receiver)
        for address, member in self.members.items():
            if address in self.killed:
                continue
            member.tick(self.now)
            self._flush(member)

    def run_until(self, condition, max_time):
        start = self.now
        while not condition():
            if self.now - start > max_time:
                return None
            self.step()
        return self.now - start

    # -- what the living members think -------------------------------------------------------
    def living(self):
        return [m for a, m in self.members.items() if a not in self.killed]

    def all_see(self, name, states):
        return all(m.members.get(name) is not None and m.members[name].state in states
                   for m in self.living() if m.name != name)

    def all_dead_to_all(self, name):
        return all(name not in m.members or m.members[name].state in (DEAD, LEFT)
                   for m in self.living() if m.name != name)
