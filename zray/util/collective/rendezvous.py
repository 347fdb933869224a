"""Group formation: members exchange their MemberInfo once, through the cluster key-value store.

`Rendezvous` is the small interface the groups use; `KvRendezvous` implements it on the runtime's
key-value store (`rt.kv`, kept by the node daemons on the membership ring, so it works across the
mesh and survives the death of any one node). Keys, in the namespace "_zray_collective":

* `join/<group>/<rank>`: that rank's pickled (world_size, MemberInfo) while the group forms. A
  member writes its own key, then reads the keys it still misses until every rank is there. The
  store has no watch, so the read is repeated with a backoff from 0.5 ms to 20 ms: a group whose
  members arrive together forms in one or two rounds (each round is one request per missing
  rank to this node's daemon), and a late member costs at most 20 ms more. Each member deletes
  its own key once the group formed (formation is collective: a member finishes only after
  every other one read the infos), or when its formation fails.
* `decl/<group>`: a driver's declaration (`create_collective_group`), pickled
  (world_size, {actor id hex: rank}, backend), read by each actor on its first call and deleted
  by rank 0's destroy.

This replaced one detached named directory actor per cluster: its first use started a worker
process (hundreds of ms, the cold `create_collective_group`), and it lived on one node.
"""
import logging
import pickle
import time

from .errors import CollectiveArgumentError, CollectiveError, CollectiveTimeoutError

log = logging.getLogger("zray.util.collective")

NAMESPACE = "_zray_collective"
FIRST_WAIT_S = 0.0005      # backoff of the join's re-reads: from this ...
LAST_WAIT_S = 0.02         # ... doubling up to this


class Rendezvous:
    """Interface: join (exchange infos), leave, declare/declared (driver-side groups), retire."""

    def join(self, group_name, world_size, rank, info, timeout_s):
        """Every member's info, indexed by rank, once all world_size ranks joined."""
        raise NotImplementedError

    def leave(self, group_name, rank):
        """The group formed (or this member's formation failed): drop this rank's join record."""
        raise NotImplementedError

    def declare(self, group_name, world_size, members, backend, timeout_s):
        """Record {actor_id_hex: rank} for a group the members will form lazily."""
        raise NotImplementedError

    def declared(self, group_name, actor_id, timeout_s):
        """(world_size, rank, backend) declared for this actor, or None."""
        raise NotImplementedError

    def retire(self, group_name):
        """Forget the group's declaration (best effort)."""
        raise NotImplementedError


def join_key(group_name, rank):
    return f"join/{group_name}/{rank}"


def declaration_key(group_name):
    return f"decl/{group_name}"


def stale(info, my_node_id):
    """A join record left by a member that died on this node (other nodes' cannot be checked
    from here; a dead remote member shows up as a failed formation)."""
    from .backends.liveness import process_alive
    return info.node_id == my_node_id and not process_alive(info.process)


class KvRendezvous(Rendezvous):
    def _kv(self):
        import zray
        if not zray.is_initialized():
            raise CollectiveError("forming a group needs the zray runtime: call zray.init() "
                                  "first, or use init_collective_group_from_world() under "
                                  "mpiexec")
        from zray.core import runtime
        return runtime.current().kv

    def _call(self, what, fn, group_name, rank, timeout_s):
        from zray.exceptions import GetTimeoutError
        try:
            return fn(max(0.001, timeout_s))
        except GetTimeoutError:
            raise CollectiveTimeoutError(f"the key-value store did not answer ({what})",
                                         group=group_name, rank=rank) from None

    def join(self, group_name, world_size, rank, info, timeout_s):
        kv = self._kv()
        deadline = time.monotonic() + timeout_s
        key = join_key(group_name, rank)
        record = pickle.dumps((world_size, info))
        put = self._call("join", lambda t: kv.put(key, record, namespace=NAMESPACE,
                                                  overwrite=False, timeout=t),
                         group_name, rank, timeout_s)
        if not put:
            self._replace(kv, group_name, world_size, rank, info, record, deadline)
        try:
            return self._gather(kv, group_name, world_size, rank, info, deadline)
        except BaseException:
            self.leave(group_name, rank)       # ours: written above
            raise

    def _gather(self, kv, group_name, world_size, rank, info, deadline):
        """Read the other ranks' records until all are there (no watch: re-read with a
        backoff), skipping the stale ones of dead members of this node."""
        infos = {rank: info}
        wait = FIRST_WAIT_S
        while True:
            for r in range(world_size):
                if r in infos:
                    continue
                try:
                    raw = self._call("join", lambda t: kv.get(join_key(group_name, r),
                                                              namespace=NAMESPACE, timeout=t),
                                     group_name, rank, remaining_s(deadline))
                except CollectiveTimeoutError:
                    if time.monotonic() < deadline:
                        raise
                    raise self._late(group_name, world_size, rank, infos) from None
                if raw is None:
                    continue
                their_size, their_info = pickle.loads(raw)
                if stale(their_info, info.node_id):
                    continue
                if their_size != world_size:
                    raise CollectiveArgumentError(
                        f"rank {rank} joins with world_size {world_size}, rank {r} with "
                        f"{their_size}", group=group_name, rank=rank, peer=r)
                infos[r] = their_info
            if len(infos) == world_size:
                return [infos[r] for r in range(world_size)]
            now = time.monotonic()
            if now >= deadline:
                raise self._late(group_name, world_size, rank, infos)
            time.sleep(min(wait, deadline - now))
            wait = min(wait * 2, LAST_WAIT_S)

    @staticmethod
    def _late(group_name, world_size, rank, infos):
        missing = sorted(set(range(world_size)) - set(infos))
        return CollectiveTimeoutError(f"group formation timed out waiting for ranks {missing}",
                                      group=group_name, rank=rank)

    def _replace(self, kv, group_name, world_size, rank, info, record, deadline):
        """Our key exists: a live member on this node holding the rank is an error; a dead
        one's record (or one from another node, which cannot be checked) is replaced."""
        key = join_key(group_name, rank)
        raw = self._call("join", lambda t: kv.get(key, namespace=NAMESPACE, timeout=t),
                         group_name, rank, remaining_s(deadline))
        if raw is not None:
            _, holder = pickle.loads(raw)
            if holder.node_id == info.node_id and not stale(holder, info.node_id) \
                    and holder.process != info.process:
                raise CollectiveArgumentError(
                    f"rank {rank} joined twice (process {holder.process.pid} holds it)",
                    group=group_name, rank=rank)
            log.debug("replacing the join record of %r rank %d left by %s", group_name, rank,
                      holder.process)
        self._call("join", lambda t: kv.put(key, record, namespace=NAMESPACE, timeout=t),
                   group_name, rank, remaining_s(deadline))

    def leave(self, group_name, rank):
        try:
            self._kv().delete(join_key(group_name, rank), namespace=NAMESPACE, timeout=5)
        except Exception as exc:      # noqa: BLE001 - best effort: a stale record is replaced
            log.debug("dropping the join record of %r rank %d failed: %r", group_name, rank,
                      exc)

    def declare(self, group_name, world_size, members, backend, timeout_s):
        kv = self._kv()
        value = pickle.dumps((world_size, dict(members), backend))
        self._call("declare", lambda t: kv.put(declaration_key(group_name), value,
                                               namespace=NAMESPACE, timeout=t),
                   group_name, None, timeout_s)

    def declared(self, group_name, actor_id, timeout_s):
        kv = self._kv()
        raw = self._call("declared", lambda t: kv.get(declaration_key(group_name),
                                                      namespace=NAMESPACE, timeout=t),
                         group_name, None, timeout_s)
        if raw is None:
            return None
        world_size, members, backend = pickle.loads(raw)
        if actor_id not in members:
            return None
        return world_size, members[actor_id], backend

    def retire(self, group_name):
        import zray
        if not zray.is_initialized():
            return
        try:
            self._kv().delete(declaration_key(group_name), namespace=NAMESPACE, timeout=5)
        except Exception as exc:      # noqa: BLE001 - retiring is best effort, logged
            log.debug("retiring the declaration of %r failed: %r", group_name, exc)


_default = None


def default_rendezvous():
    global _default
    if _default is None:
        _default = KvRendezvous()
    return _default


def set_rendezvous(impl):
    """Swap the rendezvous (tests, another store); returns the old one."""
    global _default
    old, _default = _default, impl
    return old


def remaining_s(deadline):
    return max(0.001, deadline - time.monotonic())

