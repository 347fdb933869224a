"""Group formation: members exchange their MemberInfo once, without polling.

`Rendezvous` is the small interface the groups use; `ActorRendezvous` implements it on zray's
public API: one detached named actor per cluster (created with get_if_exists by whoever comes
first, num_cpus=0), whose async `join(group, ...)` returns once every rank of that group has
joined. (One actor per group would need a kill on destroy, which races a re-creation under
the same name.) Callers block in
`zray.get(..., timeout=...)`. The same actor holds a driver's declaration
(`create_collective_group`), which members read on their first call. A key-value store can
replace it behind the same four methods.
"""
import asyncio
import logging
import time

from .errors import CollectiveArgumentError, CollectiveError, CollectiveTimeoutError

log = logging.getLogger("zray.util.collective")

NAMESPACE = "_zray_collective"


DIRECTORY = "collective-directory"


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


class _Formation:
    """One group's formation in progress."""

    def __init__(self):
        self.round = {}                 # rank -> info
        self.world_size = None
        self.done = asyncio.Event()


class _GroupDirectory:
    """The directory actor (async: every join waits on an event, none polls)."""

    def __init__(self):
        self.forming = {}               # group name -> _Formation
        self.declarations = {}          # group name -> (world_size, {actor id: rank}, backend)

    async def join(self, group, world_size, rank, info, timeout_s):
        f = self.forming.setdefault(group, _Formation())
        if f.world_size is not None and world_size != f.world_size:
            raise CollectiveArgumentError(
                f"rank {rank} joins with world_size {world_size}, others with "
                f"{f.world_size}")
        if rank in f.round:
            raise CollectiveArgumentError(f"rank {rank} joined twice")
        f.world_size = world_size
        f.round[rank] = info
        done = f.done
        if len(f.round) == world_size:
            done.result = [f.round[r] for r in range(world_size)]
            del self.forming[group]
            done.set()
        try:
            await asyncio.wait_for(done.wait(), timeout_s)
        except asyncio.TimeoutError:
            missing = sorted(set(range(world_size)) - set(f.round))
            f.round.pop(rank, None)
            if not f.round and self.forming.get(group) is f:
                del self.forming[group]
            raise CollectiveTimeoutError(f"group formation timed out waiting for ranks "
                                         f"{missing}", rank=rank) from None
        return done.result

    def declare(self, group, world_size, members, backend):
        self.declarations[group] = (world_size, dict(members), backend)
        return True

    def declared(self, group, actor_id):
        decl = self.declarations.get(group)
        if decl is None or actor_id not in decl[1]:
            return None
        world_size, members, backend = decl
        return world_size, members[actor_id], backend

    def retire(self, group):
        self.declarations.pop(group, None)
        return True


class ActorRendezvous(Rendezvous):
    def __init__(self):
        self._cls = self._handle = self._session = None

    def _actor_class(self):
        if self._cls is None:
            import zray
            self._cls = zray.remote(num_cpus=0, max_concurrency=1000)(_GroupDirectory)
        return self._cls

    def _directory(self):
        import zray
        if not zray.is_initialized():
            raise CollectiveError("forming a group needs the zray runtime: call zray.init() "
                                  "first, or use init_collective_group_from_world() under "
                                  "mpiexec")
        if self._handle is None or self._session != zray.get_runtime_context().gcs_address:
            self._handle = self._actor_class().options(
                name=DIRECTORY, namespace=NAMESPACE, lifetime="detached",
                get_if_exists=True).remote()
            self._session = zray.get_runtime_context().gcs_address
        return self._handle

    def join(self, group_name, world_size, rank, info, timeout_s):
        import zray
        from zray.exceptions import GetTimeoutError
        d = self._directory()
        try:
            return zray.get(d.join.remote(group_name, world_size, rank, info, timeout_s),
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
        d = self._directory()
        zray.get(d.declare.remote(group_name, world_size, members, backend), timeout=timeout_s)

    def declared(self, group_name, actor_id, timeout_s):
        import zray
        return zray.get(self._directory().declared.remote(group_name, actor_id),
                        timeout=timeout_s)

    def retire(self, group_name):
        import zray
        if not zray.is_initialized():
            return
        try:
            zray.get(self._directory().retire.remote(group_name), timeout=5)
        except Exception as exc:      # noqa: BLE001 - retiring is best effort, logged
            log.debug("retiring the declaration of %r failed: %r", group_name, exc)


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
