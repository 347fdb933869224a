"""Actor names in a mesh, without a head: each name lives on the consistent-hash ring.

The decider of a name is the ring member owning hash(namespace, name) (mesh/ring.py), and the
next NAME_REPLICAS members keep copies. Registering a named actor asks the decider to claim
the name (first claim wins while the holder is alive); the decider copies the entry to the
replicas before it answers. Looking a name up asks the decider. When the membership changes,
every node pushes the entries it holds to their new deciders and replicas, so a decider's
death loses nothing: its first successor already has the copy and now decides. An entry names
the actor's home node (where its record lives); when that node dies, or the actor dies, the
name is released.

Entries are plain dicts: {"actor_id", "owner", "meta", "home", "node"}, "node" being the home's
node id. Requests waiting on another member are answered or failed within CLAIM_TIMEOUT_S
(re-sent to the new decider when the membership changes meanwhile).

Interface: claim_name, lookup_name, release_name (below).
"""
import itertools

from ..transport import wire
from .service import Service

NAME_REPLICAS = 2          # copies besides the decider's
CLAIM_TIMEOUT_S = 10.0


def name_key(namespace, name):
    return f"{namespace}\x00{name}"


class NameService(Service):
    def __init__(self, ctx):
        self.ctx = ctx
        self.node_id = ctx.node_id
        self.membership = ctx.membership
        self.name_table = {}           # key -> entry, as decider or replica
        self.name_requests = {}        # request id -> (kind, key, deadline, continuation, payload)
        self._name_ids = itertools.count(1)

    def handlers(self):
        return {
            wire.NAME_CLAIM: self.on_name_claim,
            wire.NAME_CLAIM_REPLY: self.on_name_reply,
            wire.NAME_LOOKUP: self.on_name_lookup,
            wire.NAME_LOOKUP_REPLY: self.on_name_reply,
            wire.NAME_REPLICA: self.on_name_replica,
            wire.NAME_RELEASE: self.on_name_release,
        }
    # -- asking the decider --------------------------------------------------------------------
    def claim_name(self, namespace, name, entry, then):
        """then(ok, entry_now_holding_the_name | None, error | None)."""
        self._name_request("claim", name_key(namespace, name), entry, then)

    def lookup_name(self, namespace, name, then):
        """then(entry | None)."""
        self._name_request("lookup", name_key(namespace, name), None,
                           lambda ok, entry, error: then(entry))

    def _name_request(self, kind, key, entry, then):
        request_id = next(self._name_ids)
        self.name_requests[request_id] = (kind, key, self.ctx.now() + CLAIM_TIMEOUT_S, then, entry)
        self._send_name_request(request_id)

    def _send_name_request(self, request_id):
        kind, key, _, _, entry = self.name_requests[request_id]
        decider = self.membership.ring.owner(key)
        msg = wire.NAME_CLAIM if kind == "claim" else wire.NAME_LOOKUP
        payload = (request_id, key, entry) if kind == "claim" else (request_id, key)
        if decider == self.node_id:
            handler = self.on_name_claim if kind == "claim" else self.on_name_lookup
            handler(None, payload, ())
        else:
            self.ctx.send(self._decider_address(decider), msg, payload)

    def on_name_reply(self, sender, payload, frames):
        request_id, ok, entry = payload
        request = self.name_requests.pop(request_id, None)
        if request is not None:
            request[3](ok, entry, None)

    def tick(self, now):
        if not self.name_requests:
            return
        for request_id in [r for r, req in self.name_requests.items() if req[2] < now]:
            kind, key, _, then, _ = self.name_requests.pop(request_id)
            then(False, None, TimeoutError(
                f"no answer about the actor name {key.split(chr(0))[-1]!r} from the member that "
                f"decides it within {CLAIM_TIMEOUT_S:.0f}s"))

    # -- at the decider ----------------------------------------------------------------------------
    def on_name_claim(self, sender, payload, frames):
        request_id, key, entry = payload
        held = self.name_table.get(key)
        if held is not None and held["actor_id"] != entry["actor_id"] and self._home_alive(held):
            self._answer(sender, wire.NAME_CLAIM_REPLY, request_id, False, held)
            return
        self.name_table[key] = entry
        for member in self.membership.ring.replicas(key, 1 + NAME_REPLICAS):
            if member != self.node_id:
                self.ctx.send(self._decider_address(member), wire.NAME_REPLICA, (key, entry))
        self._answer(sender, wire.NAME_CLAIM_REPLY, request_id, True, entry)

    def on_name_lookup(self, sender, payload, frames):
        request_id, key = payload
        held = self.name_table.get(key)
        if held is not None and not self._home_alive(held):
            held = None
        self._answer(sender, wire.NAME_LOOKUP_REPLY, request_id, held is not None, held)

    def _answer(self, sender, msg_type, request_id, ok, entry):
        if sender is None:           # asked by ourselves
            self.on_name_reply(None, (request_id, ok, entry), ())
        else:
            self.ctx.send(sender, msg_type, (request_id, ok, entry))

    def on_name_replica(self, sender, payload, frames):
        key, entry = payload
        held = self.name_table.get(key)
        if held is None or not self._home_alive(held) or held["actor_id"] == entry["actor_id"]:
            self.name_table[key] = entry

    def release_name(self, namespace, name, actor_id):
        key = name_key(namespace, name)
        for member in self.membership.ring.replicas(key, 1 + NAME_REPLICAS):
            if member == self.node_id:
                self.on_name_release(None, (key, actor_id), ())
            else:
                self.ctx.send(self._decider_address(member), wire.NAME_RELEASE, (key, actor_id))

    def on_name_release(self, sender, payload, frames):
        key, actor_id = payload
        held = self.name_table.get(key)
        if held is not None and held["actor_id"] == actor_id:
            del self.name_table[key]

    # -- membership ----------------------------------------------------------------------------------
    def ring_changed(self, ring):
        live = ring.members()
        for key, entry in list(self.name_table.items()):
            if entry["node"] not in live:
                del self.name_table[key]      # its home is gone, and the actor's record with it
                continue
            keepers = self.membership.ring.replicas(key, 1 + NAME_REPLICAS)
            for member in keepers:
                if member != self.node_id:
                    self.ctx.send(self._decider_address(member), wire.NAME_REPLICA, (key, entry))
            if self.node_id not in keepers:
                del self.name_table[key]
        for request_id in list(self.name_requests):
            self._send_name_request(request_id)   # the decider may have changed: ask again

    def _home_alive(self, entry):
        return self.membership.is_live(entry["node"])

    def _decider_address(self, node_id):
        return self.membership.address_of(node_id)
