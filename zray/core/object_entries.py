"""What a process knows about the objects it owns or has asked about: the in-process table that
`get` and `wait` read, filled by task results and owner replies."""
PENDING = 0
READY = 1

VALUE_INLINE = 0    # the layout bytes travel with messages and live in this process
VALUE_STORED = 1    # the value is in the node's shared-memory store


class ObjectEntry:
    __slots__ = ("state", "kind", "inline", "node", "callbacks", "owned", "requested", "frame",
                 "owner")

    def __init__(self, owned):
        self.state = PENDING
        self.kind = None
        self.inline = None
        self.node = None
        self.callbacks = None
        self.owned = owned
        self.requested = False
        self.frame = None   # keeps a received ZeroMQ frame alive while `inline` views it
        self.owner = None   # a borrowed object's owner, once asked


class Waiter:
    """Wakes a thread (sets its event) once `remaining` objects are ready."""

    __slots__ = ("remaining", "event")

    def __init__(self, remaining, event):
        self.remaining = remaining
        self.event = event

    def one_ready(self, *_):
        self.remaining -= 1
        if self.remaining <= 0:
            self.event.set()

    def done(self):
        return self.remaining <= 0
