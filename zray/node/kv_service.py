"""The cluster key-value store: small values for rendezvous (collectives, launch, libraries).

Keys live on the consistent-hash ring of the live members, as actor names do
(name_service.py): the *decider* of (namespace, key) is the ring member owning its hash, and
the next KV_REPLICAS members keep copies. A client asks its own node (KV_PUT, KV_GET, KV_DEL,
KV_KEYS); the node answers itself when it is the decider, or forwards to the decider
(KV_FORWARD) and relays its answer (KV_REPLY). The decider writes, copies the change to the
replicas (KV_REPLICA) and answers. When the membership changes, every node pushes the entries it
holds to their new deciders and replicas and re-sends the requests it still waits on, so the
death of any one node loses nothing: its first successor already holds every key it decided.
KV_KEYS asks every live member for the keys it decides, and merges.

Limits: values travel inside message headers, so they are meant to be small (addresses, ids,
a few KiB); a node that joins becomes the decider of some keys before their copies reach it,
so for a moment (one message round) it may answer "absent" for a key that exists.

Every request is answered within KV_TIMEOUT_S: with the result, or a TimeoutError.

    client        its node                      decider              replicas
      KV_PUT ->     KV_FORWARD (put) ->           writes, KV_REPLICA ->
                    <- KV_FORWARD_REPLY
      <- KV_REPLY
"""
import itertools

from ..transport import wire
from .service import Service

KV_REPLICAS = 2          # copies besides the decider's: any one node may die
KV_TIMEOUT_S = 10.0

PUT, GET, DEL, KEYS = "put", "get", "del", "keys"


def kv_key(namespace, key):
    """Where (namespace, key) lives on the ring."""
    return f"kv\x00{namespace}\x00{key}"


class KvTable:
    """The entries this node holds (as decider or replica), with no I/O. `apply` runs an
    operation as the decider and returns (result, replicate) where replicate is None or the
    (namespace, key, value | None) to copy to the replicas."""

    def __init__(self):
        self.entries = {}       # (namespace, key) -> bytes

    def apply(self, op, namespace, key, value=None, overwrite=True, decides=None):
        if op == PUT:
            if not overwrite and (namespace, key) in self.entries:
                return False, None
            self.entries[(namespace, key)] = value
            return True, (namespace, key, value)
        if op == GET:
            return self.entries.get((namespace, key)), None
        if op == DEL:
            existed = self.entries.pop((namespace, key), None) is not None
            return existed, ((namespace, key, None) if existed else None)
        if op == KEYS:
            return sorted(k for ns, k in self.entries
                          if ns == namespace and k.startswith(key)
                          and (decides is None or decides(ns, k))), None
        raise ValueError(f"unknown key-value operation {op!r}")

    def copy(self, namespace, key, value):
        """A replica's copy of the decider's change (value None: deleted)."""
        if value is None:
            self.entries.pop((namespace, key), None)
        else:
            self.entries[(namespace, key)] = value

    def drop(self, namespace, key):
        self.entries.pop((namespace, key), None)

    def items(self):
        return list(self.entries.items())


def check_request(namespace, key, value=None, with_value=False):
    """The error for a malformed request, or None."""
    if not isinstance(namespace, str) or not isinstance(key, str):
        return TypeError(f"key-value namespace and key must be str, not "
                         f"{type(namespace).__name__} and {type(key).__name__}")
    if with_value and not isinstance(value, (bytes, bytearray)):
        return TypeError(f"a key-value value must be bytes, not {type(value).__name__}")
    return None


class _Request:
    __slots__ = ("client", "req_id", "op", "namespace", "key", "value", "overwrite",
                 "deadline", "waiting", "merged")

    def __init__(self, client, req_id, op, namespace, key, value, overwrite, deadline):
        self.client = client          # address to answer, or a callable(result, error)
        self.req_id = req_id
        self.op = op
        self.namespace = namespace
        self.key = key
        self.value = value
        self.overwrite = overwrite
        self.deadline = deadline
        self.waiting = set()          # nodes asked and not answered yet
        self.merged = set()           # KEYS: the keys answered so far


class KvService(Service):
    def __init__(self, ctx):
        self.ctx = ctx
        self.node_id = ctx.node_id
        self.membership = ctx.membership
        self.table = KvTable()
        self.requests = {}            # request id -> _Request waiting on other nodes
        self._ids = itertools.count(1)

    def handlers(self):
        return {
            wire.KV_PUT: self.on_kv_put,
            wire.KV_GET: self.on_kv_get,
            wire.KV_DEL: self.on_kv_del,
            wire.KV_KEYS: self.on_kv_keys,
            wire.KV_FORWARD: self.on_kv_forward,
            wire.KV_FORWARD_REPLY: self.on_kv_forward_reply,
            wire.KV_REPLICA: self.on_kv_replica,
        }

    # -- from clients ----------------------------------------------------------------------------
    def on_kv_put(self, sender, payload, frames):
        req_id, namespace, key, value, overwrite = payload
        error = check_request(namespace, key, value, with_value=True)
        self._start(sender, req_id, PUT, namespace, key, bytes(value) if error is None else None,
                    bool(overwrite), error)

    def on_kv_get(self, sender, payload, frames):
        req_id, namespace, key = payload
        self._start(sender, req_id, GET, namespace, key, None, False,
                    check_request(namespace, key))

    def on_kv_del(self, sender, payload, frames):
        req_id, namespace, key = payload
        self._start(sender, req_id, DEL, namespace, key, None, False,
                    check_request(namespace, key))

    def on_kv_keys(self, sender, payload, frames):
        req_id, namespace, prefix = payload
        self._start(sender, req_id, KEYS, namespace, prefix, None, False,
                    check_request(namespace, prefix))

    def _start(self, client, req_id, op, namespace, key, value, overwrite, error):
        if error is not None:
            self.ctx.reply(client, wire.KV_REPLY, req_id, None, error)
            return
        request = _Request(client, req_id, op, namespace, key, value, overwrite,
                           self.ctx.now() + KV_TIMEOUT_S)
        request_id = next(self._ids)
        self.requests[request_id] = request
        self._send(request_id, request)

    def _send(self, request_id, request):
        """Ask the decider (KEYS: every live member); answer at once what is local."""
        if request.op == KEYS:
            targets = sorted(self.membership.ring.members())
        else:
            targets = [self.membership.ring.owner(kv_key(request.namespace, request.key))]
        request.waiting = set(targets)
        request.merged = set()
        for node in targets:
            if node == self.node_id:
                result, error = self._decide(request.op, request.namespace, request.key,
                                             request.value, request.overwrite)
                self._answered(request_id, node, result, error)
            else:
                self.ctx.send(self.membership.address_of(node), wire.KV_FORWARD,
                              (request_id, request.op, request.namespace, request.key,
                               request.value, request.overwrite))

    def _answered(self, request_id, node, result, error):
        request = self.requests.get(request_id)
        if request is None or node not in request.waiting:
            return
        request.waiting.discard(node)
        if error is None and request.op == KEYS:
            request.merged.update(result)
            if request.waiting:
                return
            result = sorted(request.merged)
        del self.requests[request_id]
        self.ctx.reply(request.client, wire.KV_REPLY, request.req_id, result, error)

    # -- at the decider --------------------------------------------------------------------------
    def _decide(self, op, namespace, key, value, overwrite):
        try:
            result, change = self.table.apply(op, namespace, key, value, overwrite, self._decides)
        except ValueError as exc:
            return None, exc
        if change is not None:
            self._replicate(*change)
        return result, None

    # -- for other services (the state API's jobs) -----------------------------------------------
    def decided(self, namespace):
        """[(key, value)] of the namespace's entries this node decides: over every live
        member, each entry once."""
        return [(k, v) for (ns, k), v in self.table.items()
                if ns == namespace and self._decides(ns, k)]

    def copy_of(self, namespace, key):
        """This node's copy of an entry (as decider or replica), or None."""
        return self.table.entries.get((namespace, key))

    def _decides(self, namespace, key):
        return self.membership.ring.owner(kv_key(namespace, key)) == self.node_id

    def _replicate(self, namespace, key, value):
        for node in self.membership.ring.replicas(kv_key(namespace, key), 1 + KV_REPLICAS):
            if node != self.node_id:
                self.ctx.send(self.membership.address_of(node), wire.KV_REPLICA,
                              (namespace, key, value))

    def on_kv_forward(self, sender, payload, frames):
        request_id, op, namespace, key, value, overwrite = payload
        result, error = self._decide(op, namespace, key, value, overwrite)
        self.ctx.send(sender, wire.KV_FORWARD_REPLY, (request_id, result, error))

    def on_kv_forward_reply(self, sender, payload, frames):
        request_id, result, error = payload
        self._answered(request_id, self.membership.node_at(sender), result, error)

    def on_kv_replica(self, sender, payload, frames):
        self.table.copy(*payload)

    # -- time and membership ---------------------------------------------------------------------
    def tick(self, now):
        if not self.requests:
            return
        for request_id in [r for r, req in self.requests.items() if req.deadline < now]:
            request = self.requests.pop(request_id)
            self.ctx.reply(request.client, wire.KV_REPLY, request.req_id, None, TimeoutError(
                f"the cluster key-value store gave no answer about {request.key!r} "
                f"(namespace {request.namespace!r}) within {KV_TIMEOUT_S:.0f}s"))

    def ring_changed(self, ring):
        """Push every entry to its keepers now; drop what this node no longer keeps; ask again
        what was asked of members whose role changed."""
        for (namespace, key), value in self.table.items():
            keepers = ring.replicas(kv_key(namespace, key), 1 + KV_REPLICAS)
            for node in keepers:
                if node != self.node_id:
                    self.ctx.send(self.membership.address_of(node), wire.KV_REPLICA,
                                  (namespace, key, value))
            if self.node_id not in keepers:
                self.table.drop(namespace, key)
        for request_id, request in list(self.requests.items()):
            self._send(request_id, request)

    def client_gone(self, gone):
        if gone.local:
            for request_id in [r for r, req in self.requests.items() if req.client == gone.address]:
                del self.requests[request_id]
