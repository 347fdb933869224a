"""CoreWorker: the zray runtime inside one process, a driver or a worker, composed of parts.

    context   ProcessContext: who this process is, and the task its code runs now
    inbox     Inbox: the one thread at a time that reads messages, requests and replies
    refs      ReferenceTable: counts of the refs this process holds and lends
    objects   Objects: the values it owns or asked about; get and wait
    table     OwnerTable: its submitted tasks, I/O-free (retries, lineage, cancel, generators)
    owner     TaskOwner: submits tasks and carries out what the table decides
    actors    ActorCaller: creates actors and sends method calls straight to them
    executor  (workers) Executor: runs the tasks and actor calls the node sends (executor.py)

Each part gets its collaborators in its constructor and calls the others only through their
public methods. This class builds them, owns the transport and the few messages no part owns
(the driver's log lines and warnings, client and node deaths), and is where `send` decides
what a failed send means: quiet when the transport is closed (shutting down), else logged and
raised to the caller, which fails the request the message belonged to.
"""
import logging
import os
import sys

import zmq

from ..objects.object_ref import set_runtime
from ..objects.reference_table import ReferenceTable
from ..store.client import StoreClient
from ..transport import wire
from .reporter import Reporter
from ..transport.zmq_transport import Transport, TransportClosed
from .actor_caller import ActorCaller
from .context import ProcessContext
from .inbox import Inbox
from .object_entries import VALUE_STORED
from .objects import Objects
from .owner_table import OwnerTable
from .task_owner import TaskOwner

log = logging.getLogger("zray.core")


class CoreWorker:
    def __init__(self, kind, session_dir, daemon_address, job_id, worker_id=None,
                 namespace=None, driver_address=None, mesh=None):
        worker_id = worker_id or os.urandom(8).hex()
        address = f"ipc://{session_dir}/sock/{kind[0]}{worker_id[:12]}"
        self.transport = Transport(address)
        if mesh is not None:
            # On a node in a mesh, peers on other hosts must reach us too (transport/address.py).
            address = self.transport.become_mesh_process(
                mesh["ip"], _curve_keys(mesh["secret_file"]), mesh["node_id"])
        self.context = ProcessContext(kind, address, job_id, worker_id, namespace,
                                      daemon_address, session_dir)
        self.address = address
        self.store = None
        self.node_info = None
        self.driver_address = driver_address
        self.executor = None                 # a worker's, once attached (executor.py)
        self.reporter = Reporter(self.send, daemon_address)   # actor calls, metrics -> node
        self._printed_warnings = set()
        self.inbox = Inbox(self.transport, self._has_dropped, self._housekeeping, self._short_poll)
        self.refs = ReferenceTable(address, self._send_borrow, self._send_unborrow,
                                   self._free_owned, wake=self.inbox.wake_for_drops,
                                   forward=self._forward_borrow)
        self.table = OwnerTable()
        self.objects = Objects(address, self.refs, self.send, self.inbox, self._blocked,
                               self._rebuild_lost)
        self.objects.debug_get_objects = self.context.debug_get_objects     # one set
        self.owner = TaskOwner(self.context, self.objects, self.refs, self.table, self.send)
        self.owner.reporter = self.reporter
        self.reporter.is_pending = self.table.pending.__contains__
        self.actors = ActorCaller(self.context, self.inbox, self.objects, self.owner, self.send)
        self.owner.attach_actors(self.actors)
        self._register_handlers()
        self.inbox.start()
        set_runtime(self)

    def _register_handlers(self):
        inbox, objects, owner, refs = self.inbox, self.objects, self.owner, self.refs
        for reply in (wire.REGISTERED, wire.OBJ_CREATED, wire.OBJ_PINNED, wire.FUNCTION,
                      wire.CLUSTER_INFO_REPLY, wire.STORE_STATS_REPLY, wire.STATE_REPLY):
            inbox.reply_type(reply)
        inbox.handle(wire.TASK_RESULT, owner.on_task_result)
        inbox.handle(wire.TASK_FAILED, owner.on_task_failed)
        inbox.handle(wire.GENERATOR_ITEM, owner.on_generator_item)
        inbox.handle(wire.CANCEL_REQUEST, owner.on_cancel_request)
        inbox.handle(wire.OBJ_STATUS_REQUEST, objects.on_status_request)
        inbox.handle(wire.OBJ_STATUS, objects.on_status)
        inbox.handle(wire.ADD_BORROWER, lambda s, p, f: refs.add_borrower(*p))
        inbox.handle(wire.REMOVE_BORROWER, lambda s, p, f: refs.remove_borrower(*p))
        inbox.handle(wire.LOG_LINES, self._on_log_lines)
        inbox.handle(wire.WARNING, self._on_warning)
        inbox.handle(wire.CLIENT_DIED, self._on_client_died)
        inbox.handle(wire.NODE_DIED, self._on_node_died)
        inbox.handle(wire.OBJECT_REFS_QUERY, self._on_object_refs_query)
        inbox.refused_hooks.append(self._on_refused)

    def connect(self, pid):
        context = self.context
        self.node_info = self.inbox.rpc(context.daemon, wire.REGISTER_CLIENT, (
            context.kind, self.address, pid, context.job_id, context.worker_id,
            self.driver_address, context.namespace))
        self.store = StoreClient(self, self.node_info)
        self.objects.attach_store(self.store, self.node_info["node_id"], context.daemon)
        return self.node_info

    # -- what the store client and the public layer use ----------------------------------------
    @property
    def daemon(self):
        return self.context.daemon

    def rpc(self, address, msg_type, payload, frames=(), timeout=None):
        if timeout is None:
            return self.inbox.rpc(address, msg_type, payload, frames)
        return self.inbox.rpc(address, msg_type, payload, frames, timeout)

    def post(self, fn, *args):
        """Run fn(*args) soon on the I/O thread (safe from finalizers: takes no lock)."""
        self.inbox.post(fn, *args)

    def send(self, address, msg_type, payload=(), frames=()):
        """Send a message. False when the transport is closed (this process is shutting
        down); any other failure is logged and raised, to fail the request it belonged to."""
        try:
            self.transport.send(address, msg_type, payload, frames)
            return True
        except TransportClosed:
            return False
        except zmq.ZMQError as exc:
            if not self.inbox.running or exc.errno in (zmq.ETERM, zmq.ENOTSOCK):
                return False      # closed under us while shutting down
            log.error("could not send %s to %s: %r", wire.NAMES.get(msg_type, msg_type), address, exc)
            raise
        except Exception as exc:
            log.error("could not send %s to %s: %r", wire.NAMES.get(msg_type, msg_type), address, exc)
            raise

    def mark_dead(self, reason):
        """The node daemon is gone: every wait of this process fails with `reason`."""
        if self.inbox.running:
            self.inbox.dead_reason = reason

    @property
    def dead_reason(self):
        return self.inbox.dead_reason

    def cluster_info(self):
        return self.inbox.rpc(self.context.daemon, wire.CLUSTER_INFO, ())

    def store_stats(self):
        return self.inbox.rpc(self.context.daemon, wire.STORE_STATS, ())

    # -- the inbox's hooks ---------------------------------------------------------------------
    def _has_dropped(self):
        return self.refs.has_dropped()

    def _housekeeping(self):
        if self.refs.has_dropped():
            self.refs.drain_dropped()
        store = self.store
        if store is not None and store.idle_pins:
            store.sweep()

    def _short_poll(self):
        store = self.store
        return store is not None and bool(store.idle_pins)

    def _blocked(self, blocked):
        """A worker tells its node it waits, so its CPU can run other tasks (no deadlock)."""
        executor = self.executor
        if executor is not None:
            executor.notify_blocked(blocked)

    def _rebuild_lost(self, node_id, task_id=None):
        return self.owner.rebuild_lost(node_id, task_id)

    # -- reference counting callbacks ----------------------------------------------------------
    # These run inside the reference table's batch of dropped refs: a failed send is logged
    # (by send) and must not cut the batch short; no request of ours waits on it.
    def _send_borrow(self, owner, object_id, n):
        self._send_count(owner, wire.ADD_BORROWER, (object_id, self.address, n))

    def _forward_borrow(self, owner, object_id, borrower, n):
        self._send_count(owner, wire.ADD_BORROWER, (object_id, borrower, n))

    def _send_unborrow(self, owner, object_id, n):
        self.objects.forget(object_id)
        self._send_count(owner, wire.REMOVE_BORROWER, (object_id, self.address, n))

    def _free_owned(self, object_id):
        if object_id in self.actors.owned_actors:
            try:
                self.actors.out_of_scope(object_id)
            except Exception:    # logged by send()
                pass
        entry = self.objects.forget(object_id)
        if entry is not None and entry.kind == VALUE_STORED:
            self._send_count(self.context.daemon, wire.OBJ_FREE, ([object_id], [entry.node]))
        self.owner.drop_lineage(object_id)

    def _send_count(self, address, msg_type, payload):
        try:
            self.send(address, msg_type, payload)
        except Exception:    # logged by send()
            pass

    # -- messages no part owns -------------------------------------------------------------------
    def _on_log_lines(self, sender, payload, frames):
        """Workers' output, for the driver's terminal (this is the user's stdout/stderr)."""
        stream, text = payload
        out = sys.stderr if stream == 2 else sys.stdout
        try:
            out.write(text)
            out.flush()
        except (OSError, ValueError):   # the user closed or broke their own stream
            pass

    def _on_warning(self, sender, payload, frames):
        (text,) = payload
        if text not in self._printed_warnings:
            self._printed_warnings.add(text)
            logging.getLogger("zray").warning("%s", text)

    def _on_client_died(self, sender, payload, frames):
        (address,) = payload
        if address == self.driver_address:
            self.driver_address = None
        self.transport.forget(address)
        self.refs.drop_borrower_everywhere(address)
        # Borrowed objects whose owner died can never be resolved (now or later).
        self.objects.owner_died(address, self.refs.owner_of)

    def _on_object_refs_query(self, sender, payload, frames):
        """The node lists objects: the refs this process holds (zray/state/object_refs.py)."""
        from ..state import object_refs
        from ..state.query import StateQuery
        req_id, data = payload
        try:
            query = StateQuery.from_wire(data)
            info = self.node_info or {}
            process = object_refs.ProcessFacts(
                os.getpid(), info.get("node_ip"), info.get("node_id"),
                "DRIVER" if self.context.kind == "driver" else "WORKER", self.address)
            answer, error = object_refs.answer(query, self._object_ref_facts(), process), None
        except (ValueError, TypeError) as exc:
            answer, error = None, ValueError(str(exc))
        except Exception as exc:       # a bug of ours: the node still gets an answer
            log.exception("listing this process's object refs failed")
            answer, error = None, RuntimeError(f"{type(exc).__name__}: {exc}")
        self._send_count(sender, wire.OBJECT_REFS_REPLY, (req_id, answer, error))

    def _object_ref_facts(self):
        from ..objects.ids import task_of
        from ..state.object_refs import RefFacts, pending_task_status
        from .object_entries import READY, VALUE_INLINE
        entries, pending, sites = self.objects.entries, self.table.pending, self.refs.sites
        facts = []
        for oid, owner, owned, local, holds, captured in self.refs.snapshot():
            entry = entries.get(oid)
            ready = entry is not None and entry.state == READY
            inline = entry.inline if ready and entry.kind == VALUE_INLINE else None
            task = pending.get(task_of(oid)) if owned and not ready else None
            facts.append(RefFacts(
                oid, owner, owned, local, holds, captured, ready,
                len(inline) if inline is not None else None,
                pending_task_status(task) if task is not None else None, sites.get(oid)))
        return facts

    def _on_refused(self, peer, error):
        """A peer of another zray version refused us: what we wait for from it fails."""
        self.objects.owner_refused(peer, error, self.refs.owner_of)

    def _on_node_died(self, sender, payload, frames):
        """A node of the mesh is gone, with every process on it."""
        node_id, mesh_address = payload[:2]
        from ..transport.address import node_of
        if self.table.lineage:
            self.owner.rebuild_lost(node_id)
        for address in self.refs.known_addresses():
            if node_of(address) == node_id:
                self._on_client_died(sender, (address,), ())
        self.actors.node_died(node_id)

    # -- shutdown --------------------------------------------------------------------------------
    def shutdown(self):
        if not self.inbox.running:
            return
        self.reporter.close()
        try:
            self.send(self.context.daemon, wire.CLIENT_EXIT, (self.address,))
        except Exception:   # logged by send(); shutting down goes on
            pass
        self.inbox.stop(timeout=5)
        set_runtime(None)
        self.transport.close()
        if self.store is not None:
            self.store.close()


def _curve_keys(secret_file):
    from ..mesh.security import CurveKeys, load_secret
    return CurveKeys(load_secret(secret_file))
