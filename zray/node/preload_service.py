"""Modules the workers of every node start with, asked for by libraries (zray.train: torch;
zray.data: pyarrow), so that a fresh worker does not spend seconds importing them.

A library calls zray.util.worker_preload.preload_worker_modules(names): its process sends
WORKER_PRELOAD (names, "cluster") to its node, which has its zygote import them (zygote.py:
between two forks, never in the daemon's loop) and forwards (names, "node") to every other live
member; a member that joins later is sent the whole list by each node that holds one. Every
name is imported once per node (a repeated request costs a set lookup), and a module that fails
to import is reported once by the zygote and ignored. $ZRAY_WORKER_PRELOAD keeps working: the
zygote imports those at its start.

    driver/worker     its node                        other live nodes
      WORKER_PRELOAD ("cluster") ->  zygote imports     WORKER_PRELOAD ("node") -> their zygotes
"""
import logging
import re
from dataclasses import dataclass

from ..transport import wire
from .service import Service

log = logging.getLogger(__name__)

MAX_NAMES_PER_REQUEST = 64
MAX_NAMES = 256              # per node, all requests together: a bound on what a peer can add
MAX_NAME_LENGTH = 200
CLUSTER, NODE = "cluster", "node"
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


@dataclass(frozen=True, slots=True)
class PreloadDecision:
    """What to do with one request: the names the zygote imports now (new ones, in request
    order), the names to forward to the other live members (empty unless the scope is
    "cluster"), and the refused ones with why."""
    import_now: tuple
    forward: tuple
    refused: tuple          # ((name, reason), ...)


class WorkerPreloads:
    """The modules this node's zygote was asked to import (no I/O)."""

    def __init__(self, max_names=MAX_NAMES):
        self.max_names = max_names
        self.names = []              # in the order they were asked for
        self._known = set()

    def request(self, names, scope):
        """A WORKER_PRELOAD's payload, checked: ValueError for a malformed one."""
        if scope not in (CLUSTER, NODE):
            raise ValueError(f"the scope must be {CLUSTER!r} or {NODE!r}, not {scope!r}")
        if not isinstance(names, (list, tuple)):
            raise ValueError(f"the modules must be a list of names, not {type(names).__name__}")
        if len(names) > MAX_NAMES_PER_REQUEST:
            raise ValueError(f"{len(names)} modules in one request (at most "
                             f"{MAX_NAMES_PER_REQUEST})")
        new, valid, refused = [], [], []
        for name in names:
            reason = _refusal(name)
            if reason is None and name not in self._known and len(self.names) >= self.max_names:
                reason = f"this node preloads {self.max_names} modules already"
            if reason is not None:
                refused.append((name if isinstance(name, str) else repr(name), reason))
                continue
            if name not in valid:
                valid.append(name)
            if name not in self._known:
                self._known.add(name)
                self.names.append(name)
                new.append(name)
        # A cluster request is forwarded even when this node knew every name: a member may
        # have joined, or restarted, since.
        return PreloadDecision(tuple(new), tuple(valid) if scope == CLUSTER else (),
                               tuple(refused))

    def for_new_member(self):
        """What a member that just joined is sent: everything asked for so far."""
        return tuple(self.names)


def start_names(text):
    """The valid names of a daemon's --preload (comma-separated), in order, at most
    MAX_NAMES_PER_REQUEST."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    return WorkerPreloads().request(names[:MAX_NAMES_PER_REQUEST], NODE).import_now


def _refusal(name):
    if not isinstance(name, str):
        return "not a string"
    if len(name) > MAX_NAME_LENGTH:
        return f"longer than {MAX_NAME_LENGTH} characters"
    if not _MODULE_NAME.match(name):
        return "not a module name (dotted identifiers)"
    return None


class PreloadService(Service):
    """WORKER_PRELOAD: has the zygote import modules, and spreads the request over the mesh.
    `import_in_zygote(names)`: the daemon's Zygote.preload (a no-op in unit tests); `tasks`:
    the TaskService, which replaces the idle prestarted workers (forked before the import)."""

    def __init__(self, ctx, import_in_zygote, tasks=None):
        self.ctx = ctx
        self.tasks = tasks
        self.preloads = WorkerPreloads()
        self._import_in_zygote = import_in_zygote

    def handlers(self):
        return {wire.WORKER_PRELOAD: self.on_worker_preload}

    def started_with(self, names):
        """The zygote imported `names` at its start (--preload): a request for them later is
        no news (no import, no replacement of the idle workers, which have them)."""
        if isinstance(names, str):           # the flag's text, not parsed by daemon.main
            names = start_names(names)
        if names:
            self.preloads.request(list(names), NODE)

    def on_worker_preload(self, sender, payload, frames):
        try:
            names, scope = payload
            decision = self.preloads.request(names, scope)
        except (TypeError, ValueError) as exc:
            log.warning("a malformed WORKER_PRELOAD from %s was dropped: %s", sender, exc)
            return
        for name, reason in decision.refused:
            log.warning("WORKER_PRELOAD from %s: %r refused: %s", sender, name[:80], reason)
        if decision.import_now:
            log.info("the zygote preloads %s", ", ".join(decision.import_now))
            self._import_in_zygote(decision.import_now)
            if self.tasks is not None:
                # their replacements are asked of the zygote after the import: they have it
                self.tasks.run(self.ctx.scheduler.handle_modules_preloaded())
        if decision.forward:
            membership = self.ctx.membership
            for member in membership.peers():
                if membership.is_live(member.name):
                    self.ctx.send(member.address, wire.WORKER_PRELOAD,
                                  (list(decision.forward), NODE))

    def member_joined(self, member):
        names = self.preloads.for_new_member()
        if names and member.name != self.ctx.node_id:
            self.ctx.send(member.address, wire.WORKER_PRELOAD, (list(names), NODE))
