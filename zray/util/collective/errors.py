"""The CollectiveError family: every failure of zray.util.collective is one of these.

    CollectiveError                      base; carries group, rank and peer when known
    ├── CollectiveArgumentError          a bad argument (also a ValueError): shape, dtype,
    │                                    list length, rank range, unknown op or backend
    ├── GroupNotInitializedError         the named group does not exist in this process
    ├── CollectiveTimeoutError           the call outlived its timeout_ms (also a TimeoutError)
    ├── PeerDiedError                    a member of the group died (or aborted) mid-call
    ├── GroupBrokenError                 a previous call failed; the group must be re-created
    └── BackendUnavailableError          the backend's library is missing (mpi4py, CuPy)
"""


class CollectiveError(RuntimeError):
    """Base of every error raised by zray.util.collective."""

    def __init__(self, message, *, group=None, rank=None, peer=None):
        self.group, self.rank, self.peer = group, rank, peer
        where = []
        if group is not None:
            where.append(f"group {group!r}")
        if rank is not None:
            where.append(f"rank {rank}")
        if peer is not None:
            where.append(f"peer rank {peer}")
        self.message = message
        super().__init__(f"[{', '.join(where)}] {message}" if where else message)

    def __reduce__(self):
        return (_rebuild, (type(self), self.message, self.group, self.rank, self.peer))


def _rebuild(cls, message, group, rank, peer):
    return cls(message, group=group, rank=rank, peer=peer)


class CollectiveArgumentError(CollectiveError, ValueError):
    """An argument check failed (shape, dtype, list length, rank range, op, backend)."""


class GroupNotInitializedError(CollectiveError):
    """No group of this name was initialized (or declared) in this process."""


class CollectiveTimeoutError(CollectiveError, TimeoutError):
    """A call did not complete within its timeout_ms."""


class PeerDiedError(CollectiveError):
    """A member of the group died, or aborted its call, while this call waited for it."""


class GroupBrokenError(CollectiveError):
    """An earlier call of this group failed; destroy and re-create the group."""


class BackendUnavailableError(CollectiveError):
    """The backend's library is not importable here."""
