"""A consistent-hash ring over the live members: who decides a key (a name of an actor, a
placement group...) and which members keep its replicas.

Each member stands on the ring at VNODES points (hashes of "member#i"), so keys spread evenly
and a member joining or leaving moves only about 1/N of the keys. The decider of a key is the
member at the first point clockwise from the key's hash; its replicas are the next distinct
members. Pure data: the daemon rebuilds it from SWIM's live members.
"""
import bisect
import hashlib

VNODES = 64


def _point(text):
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    def __init__(self, members=(), vnodes=VNODES):
        if vnodes < 1:
            raise ValueError(f"vnodes must be >= 1, got {vnodes}")
        self.vnodes = vnodes
        self._points = []      # sorted (point, member)
        self._members = set()
        for m in members:
            self.add(m)

    def add(self, member):
        if member in self._members:
            return
        self._members.add(member)
        for i in range(self.vnodes):
            bisect.insort(self._points, (_point(f"{member}#{i}"), member))

    def remove(self, member):
        if member not in self._members:
            return
        self._members.discard(member)
        self._points = [p for p in self._points if p[1] != member]

    def members(self):
        return set(self._members)

    def __len__(self):
        return len(self._members)

    def owner(self, key):
        """The member that decides `key`; LookupError on an empty ring."""
        return self.replicas(key, 1)[0]

    def replicas(self, key, n):
        """The decider of `key` then its successors: min(n, members) distinct members."""
        if not self._points:
            raise LookupError("the ring has no members")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        want = min(n, len(self._members))
        start = bisect.bisect(self._points, (_point(key), ""))
        out = []
        for i in range(len(self._points)):
            member = self._points[(start + i) % len(self._points)][1]
            if member not in out:
                out.append(member)
                if len(out) == want:
                    break
        return out
