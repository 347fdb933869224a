"""Group formation: members exchange their MemberInfo once, without polling.

`Rendezvous` is the small interface the groups use; `ActorRendezvous` implements it on zray's
public API: one detached named actor per group (created with get_if_exists by whoever comes
first), whose async `join` returns once every rank has joined. Callers block in
`zray.get(..., timeout=...)`. The same actor holds a driver's declaration
(`create_collective_group`), which members read on their first call. A key-value store can
replace it behind the same four methods.
"""
import asyncio
import logging
import time

from .errors import CollectiveArgumentError, CollectiveTimeoutError

log = logging.getLogger("zray.util.collective")

NAMESPACE = "_zray_collective"


def actor_name(group_name):
    return f"collective-group:{group_name}"


class Rendezvous:
    """Interface: join (exchange infos), declare/declared (driver-side groups), retire."""

    def join(self, group_name, world_size, rank, info, timeout_s):
        """Every member's info, indexed by rank, once all world_size ranks joined."""
        raise NotImplementedError

    def declare(self, group_name, world_size, members, backend, timeout_s):
        """Record {actor_id_hex: rank} for a group the members will form lazily."""
        raise NotImplementedError

    def declared(self, group_name, actor_id, timeout_s):
        """(world_size, rank, backend) declared for this actor, or None."""
        raise NotImplementedError

    def retire(self, group_name):
        """Forget the group once nobody is joining it (best effort)."""
        raise NotImplementedError


class _GroupDirectory:
    """The per-group actor (async: every join waits on an event, none polls)."""

    def __init__(self):
        self.round = {}                 # rank -> info of the formation in progress
        self.world_size = None
        self.done = asyncio.Event()
        self.result = None
        self.declaration = None

    async def join(self, world_size, rank, info, timeout_s):
        if self.world_size is not None and world_size != self.world_size:
            raise CollectiveArgumentError(
                f"rank {rank} joins with world_size {world_size}, others with "
                f"{self.world_size}")
        if rank in self.round:
            raise CollectiveArgumentError(f"rank {rank} joined twice")
        self.world_size = world_size
        self.round[rank] = info
        done = self.done
        if len(self.round) == world_size:
            done.result = [self.round[r] for r in range(world_size)]
            self.round, self.world_size, self.done = {}, None, asyncio.Event()
            done.set()
        try:
            await asyncio.wait_for(done.wait(), timeout_s)
        except asyncio.TimeoutError:
            if self.done is done:
                self.round.pop(rank, None)
                if not self.round:
                    self.world_size = None
            missing = sorted(set(range(world_size)) - set(self.round) - {rank})
            raise CollectiveTimeoutError(f"group formation timed out waiting for ranks "
                                         f"{missing}", rank=rank) from None
        return done.result

    def declare(self, world_size, members, backend):
        self.declaration = (world_size, dict(members), backend)
        return True

    def declared(self, actor_id):
        if self.declaration is None or actor_id not in self.declaration[1]:
            return None
        world_size, members, backend = self.declaration
        return world_size, members[actor_id], backend

    def idle(self):
        return not self.round


class ActorRendezvous(Rendezvous):
    def __init__(self):
        self._cls = None

    def _actor_class(self):
        if self._cls is None:
            import zray
            self._cls = zray.remote(num_cpus=0, max_concurrency=1000)(_GroupDirectory)
        return self._cls

    def _directory(self, group_name, create=True):
        import zray
        if not create:
            try:
                return zray.get_actor(actor_name(group_name), namespace=NAMESPACE)
            except ValueError:
                return None
        return self._actor_class().options(
            name=actor_name(group_name), namespace=NAMESPACE, lifetime="detached",
            get_if_exists=True).remote()

    def join(self, group_name, world_size, rank, info, timeout_s):
        import zray
        from zray.exceptions import GetTimeoutError
        d = self._directory(group_name)
        try:
            return zray.get(d.join.remote(world_size, rank, info, timeout_s),
                            timeout=timeout_s + 5)
        except GetTimeoutError:
            raise CollectiveTimeoutError("group formation timed out", group=group_name,
                                         rank=rank) from None
        except CollectiveArgumentError as exc:
            raise CollectiveArgumentError(exc.message, group=group_name, rank=rank) from None
        except CollectiveTimeoutError as exc:
            raise CollectiveTimeoutError(exc.message, group=group_name, rank=rank) from None

    def declare(self, group_name, world_size, members, backend, timeout_s):
        import zray
        d = self._directory(group_name)
        zray.get(d.declare.remote(world_size, members, backend), timeout=timeout_s)

    def declared(self, group_name, actor_id, timeout_s):
        import zray
        d = self._directory(group_name, create=False)
        if d is None:
            return None
        return zray.get(d.declared.remote(actor_id), timeout=timeout_s)

    def retire(self, group_name):
        import zray
        d = self._directory(group_name, create=False)
        if d is None:
            return
        try:
            if zray.get(d.idle.remote(), timeout=5):
                zray.kill(d)
        except Exception as exc:      # noqa: BLE001 - retiring is best effort, logged
            log.debug("retiring the directory of %r failed: %r", group_name, exc)


_default = None


def default_rendezvous():
    global _default
    if _default is None:
        _default = ActorRendezvous()
    return _default


def set_rendezvous(impl):
    """Swap the rendezvous (e.g. for the runtime's key-value store); returns the old one."""
    global _default
    old, _default = _default, impl
    return old


def remaining_s(deadline):
    return max(0.001, deadline - time.monotonic())
