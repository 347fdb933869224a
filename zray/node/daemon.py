"""The node daemon: one process per host, one thread, one event loop.

It owns the node's store (memfd region, allocator, index), the local scheduler and the worker
pool. Messages are decoded here and handed to the state machines (LocalScheduler, ObjectStore);
the actions they return are carried out here. Processes are watched with pidfds, so a death is
seen at once, whether or not the process was our child.

Run as `python -m zray.node.daemon --session DIR ...` (zray.init does this).
"""
import argparse
import json
import os
import signal
import socket
import sys
import time

# The zygote must be forked before any thread or ZeroMQ context exists in this process.
from .actor_replicas import ActorReplicaService
from .actor_service import ActorService
from .mesh_service import MeshService, sum_resources
from .name_service import NameService
from .object_service import ObjectService
from .pg_service import PlacementGroupService
from .processes import pid_alive
from .routing_service import RoutingService
from ..transport.address import ipc_path
from .zygote import Zygote


class WorkerProcess:
    __slots__ = ("worker_id", "job_id", "pid", "pidfd", "address", "registered")

    def __init__(self, worker_id, job_id):
        self.worker_id = worker_id
        self.job_id = job_id
        self.pid = None
        self.pidfd = None
        self.address = None
        self.registered = False


class Client:
    __slots__ = ("kind", "address", "pid", "job_id", "worker_id", "pidfd")

    def __init__(self, kind, address, pid, job_id, worker_id, pidfd):
        self.kind = kind
        self.address = address
        self.pid = pid
        self.job_id = job_id
        self.worker_id = worker_id
        self.pidfd = pidfd


class NodeDaemon(ActorService, PlacementGroupService, ObjectService, MeshService, RoutingService,
                 NameService, ActorReplicaService):
    def __init__(self, args, zygote):
        import zmq
        from .. import _native
        from ..scheduling.local_scheduler import LocalScheduler
        from ..scheduling.resources import from_units, to_units
        from ..store.object_store import ObjectStore
        from ..store.region import Region
        from ..transport.zmq_transport import Transport

        self.zmq = zmq
        self.from_units = from_units
        self.args = args
        self.zygote = zygote
        self.session_dir = args.session
        self.node_id = os.urandom(14).hex()
        self.hostname = socket.gethostname()
        self.address = f"ipc://{self.session_dir}/sock/node"
        self.region = Region.create(args.object_store_memory)
        self.region.prefault_in_background()
        self.store = ObjectStore(self.region.view, args.object_store_memory,
                                 _native.Allocator(args.object_store_memory, 64),
                                 os.path.join(self.session_dir, "spill"))
        resources = dict(json.loads(args.resources or "{}"))
        resources["CPU"] = args.num_cpus
        if args.num_gpus:
            resources["GPU"] = args.num_gpus
        resources["memory"] = args.memory
        resources["object_store_memory"] = args.object_store_memory
        resources[f"node:{args.node_ip}"] = 1
        self.total_units = to_units(resources)
        self.scheduler = LocalScheduler(self.total_units, max_workers=args.max_workers)
        self.transport = Transport(self.address)
        self.functions = {}
        self.clients = {}            # address -> Client
        self.workers = {}            # worker_id -> WorkerProcess
        self.drivers = {}            # job_id -> driver address
        self.pidfds = {}             # fd -> ("client", address) | ("worker", worker_id) | ("driver-pid", pid)
        self.worker_counter = 0
        self.running = True
        self.poller = zmq.Poller()
        self.poller.register(self.transport.inbox, zmq.POLLIN)
        self.poller.register(self.zygote.reply_fd, zmq.POLLIN)
        from ..transport import wire
        self.wire = wire
        self.handlers = {
            wire.REGISTER_CLIENT: self.on_register_client,
            wire.CLIENT_EXIT: self.on_client_exit,
            wire.SHUTDOWN_NODE: self.on_shutdown,
            wire.CLUSTER_INFO: self.on_cluster_info,
            wire.EXPORT_FUNCTION: self.on_export_function,
            wire.FETCH_FUNCTION: self.on_fetch_function,
            wire.SUBMIT_TASK: self.on_submit_task,
            wire.TASK_FINISHED: self.on_task_finished,
            wire.CANCEL_TASK: self.on_cancel_task,
            wire.WORKER_BLOCKED: self.on_worker_blocked,
            wire.LIST_TASKS: lambda s, p, f: self.reply(s, self.wire.LIST_TASKS_REPLY, p[0],
                                                        self.scheduler.list_tasks()),
            wire.LIST_OBJECTS: lambda s, p, f: self.reply(s, self.wire.LIST_OBJECTS_REPLY, p[0],
                                                          self.store.list_objects()),
        }
        self._init_actor_service()
        self._init_object_service()
        self._init_routing()
        self._init_names()
        self._init_actor_replicas()
        self._init_mesh()
        self._init_pg_service()
        if args.driver_pid:
            self._watch_pid(args.driver_pid, ("driver-pid", args.driver_pid))
        if args.job_id and args.prestart:
            for _ in range(args.prestart):
                self.scheduler.starting[args.job_id] += 1
                self.start_worker(args.job_id)

    # -- the loop ------------------------------------------------------------------------------
    def run(self):
        zmq = self.zmq
        recv = self.transport.recv
        poll_ms = 50 if self.swim is not None else 1000
        while self.running:
            events = dict(self.poller.poll(poll_ms))
            self.mesh_tick()
            for _ in range(10_000):
                try:
                    sender, msg_type, payload, frames = recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                handler = self.handlers.get(msg_type)
                if handler is None:
                    continue
                try:
                    handler(sender, payload, frames)
                except Exception as exc:
                    import traceback
                    print(f"zray node: error handling {self.wire.NAMES.get(msg_type)}: {exc!r}",
                          file=sys.stderr)
                    traceback.print_exc()
            for fd in events:
                if fd == self.zygote.reply_fd:
                    for worker_id, pid in self.zygote.read_replies():
                        self.on_worker_spawned(worker_id, pid)
                elif isinstance(fd, int) and fd in self.pidfds:
                    self.on_process_exit(fd)
        self.shutdown()

    def send(self, address, msg_type, payload=(), frames=()):
        try:
            self.transport.send(address, msg_type, payload, frames)
        except Exception as exc:
            print(f"zray node: cannot send to {address}: {exc!r}", file=sys.stderr)

    def reply(self, address, msg_type, req_id, result=None, error=None, frames=()):
        self.send(address, msg_type, (req_id, result, error), frames)

    # -- processes -----------------------------------------------------------------------------
    def _watch_pid(self, pid, what):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        self.pidfds[fd] = what
        self.poller.register(fd, self.zmq.POLLIN)
        return fd

    def _unwatch(self, fd):
        if fd is not None and fd in self.pidfds:
            del self.pidfds[fd]
            self.poller.unregister(fd)
            os.close(fd)

    def start_worker(self, job_id):
        self.worker_counter += 1
        worker_id = f"{self.worker_counter:04d}{os.urandom(2).hex()}"
        self.workers[worker_id] = WorkerProcess(worker_id, job_id)
        self.zygote.spawn({
            "worker_id": worker_id, "job_id": job_id, "session": self.session_dir,
            "daemon": self.address,
            "driver": self.drivers.get(job_id) or self.remote_drivers.get(job_id) or self.args.driver_address,
            "mesh": self.mesh_endpoint(),
        })

    def on_worker_spawned(self, worker_id, pid):
        worker = self.workers.get(worker_id)
        if worker is None:
            return
        worker.pid = pid
        worker.pidfd = self._watch_pid(pid, ("worker", worker_id))
        if worker.pidfd is None:
            self._worker_gone(worker)

    def on_process_exit(self, fd):
        kind, key = self.pidfds[fd]
        self._unwatch(fd)
        if kind == "driver-pid":
            self.running = False    # embedded node: its driver is gone, so is the node
        elif kind == "worker":
            worker = self.workers.get(key)
            if worker is not None:
                self._worker_gone(worker)
        elif kind == "client":
            self._client_gone(key)

    def _worker_gone(self, worker):
        self.workers.pop(worker.worker_id, None)
        self._unwatch(worker.pidfd)
        if worker.registered:
            detail = self._log_tail(worker.worker_id)
            self.report_hosted_worker_died(worker.worker_id, detail)
            self.run_actions(self.scheduler.handle_worker_died(worker.worker_id), detail)
            self.run_actor_actions(self.directory.handle_worker_died(worker.worker_id, detail))
        else:
            self.scheduler.handle_worker_start_failed(worker.job_id)
        if worker.address:
            self._client_gone(worker.address)

    def _client_gone(self, address):
        client = self.clients.pop(address, None)
        self.store.client_gone(address)
        self.transport.forget(address)
        path = ipc_path(address)
        if path and path.startswith(self.session_dir):
            try:
                os.unlink(path)   # a killed process leaves its socket file
            except OSError:
                pass
        self.run_actions(self.scheduler.handle_owner_died(address))
        self.forget_forwarded_of(address)
        if client is None:
            return
        self.announce_client_gone(client)
        self._unwatch(client.pidfd)
        for other in self.clients.values():
            self.send(other.address, self.wire.CLIENT_DIED, (address,))
        self.directory.handle_client_gone(address)
        if client.kind == "driver":
            if self.drivers.get(client.job_id) == address:
                del self.drivers[client.job_id]
            self.run_actions(self.scheduler.handle_job_finished(client.job_id))
            self.run_actor_actions(self.directory.handle_job_finished(client.job_id))

    def _log_tail(self, worker_id, max_bytes=2000):
        parts = []
        for suffix in (".err", ".out"):
            path = os.path.join(self.session_dir, "logs", f"worker-{worker_id}{suffix}")
            try:
                with open(path, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    size = f.tell()
                    f.seek(max(0, size - max_bytes))
                    text = f.read().decode(errors="replace").strip()
            except OSError:
                continue
            if text:
                parts.append(f"--- last lines of worker {worker_id}{suffix} ---\n{text}")
        return "\n".join(parts)

    # -- actions of the scheduler ------------------------------------------------------------
    def run_actions(self, actions, detail=None):
        wire = self.wire
        for action in actions:
            kind = action[0]
            if kind == "dispatch":
                _, task, worker = action
                if task.spec.extra and "actor_id" in task.spec.extra:
                    if task.spec.extra["actor_id"] in self.directory.actors:
                        self.directory.handle_dispatched(task.spec.extra["actor_id"], worker.worker_id)
                    else:
                        self.note_dispatched_remote_actor(task, worker)
                self.send(worker.address, wire.EXECUTE_TASK, (task.spec, task.gpu_grants), task.frames)
            elif kind == "start_worker":
                self.start_worker(action[1])
            elif kind == "infeasible":
                spec = action[1].spec
                need = self.from_units(spec.resources)
                have = self.from_units(self.total_units)
                self.send(spec.owner, wire.WARNING, (
                    f"task {spec.name} needs {need} but no node has that much "
                    f"(this node has {have}); it stays pending until a node that fits joins",))
            elif kind == "cancelled":
                spec = action[1].spec
                self.send(spec.owner, wire.TASK_FAILED, (spec.task_id, spec.attempt, "cancelled", None))
                self.task_ended_here(action[1])
            elif kind == "interrupt":
                _, worker, force, *recursive = action
                if force:
                    self._kill(worker.pid)
                else:
                    task = worker.task
                    self.send(worker.address, wire.CANCEL_TASK,
                              (task.spec.task_id, False, recursive[0] if recursive else True))
            elif kind == "failed":
                spec = action[1].spec
                if spec.extra and "actor_id" in spec.extra:
                    continue    # the actor directory decides: restart or death
                self.send(spec.owner, wire.TASK_FAILED, (spec.task_id, spec.attempt, "worker_died", detail))
                self.task_ended_here(action[1])
            elif kind == "kill_worker":
                self._kill(action[1].pid)

    def _kill(self, pid):
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- handlers ------------------------------------------------------------------------------
    def on_register_client(self, sender, payload, frames):
        req_id, kind, address, pid, job_id, worker_id, driver_address = payload
        pidfd = None
        if kind == "worker" and worker_id in self.workers:
            worker = self.workers[worker_id]
            worker.address = address
            worker.registered = True
        else:
            pidfd = self._watch_pid(pid, ("client", address))
        self.clients[address] = Client(kind, address, pid, job_id, worker_id, pidfd)
        if kind == "driver":
            self.drivers.setdefault(job_id, address)
        self.reply(sender, self.wire.REGISTERED, req_id, self.node_info())
        if kind == "worker":
            self.run_actions(self.scheduler.handle_worker_started(worker_id, job_id, address, pid))

    def node_info(self):
        return {
            "node_id": self.node_id, "address": self.address, "pid": os.getpid(),
            "store_fd": self.region.fd, "store_size": self.region.size,
            "session_dir": self.session_dir, "hostname": self.hostname,
            "node_ip": self.args.node_ip,
            "resources": self.from_units(self.total_units),
        }

    def on_client_exit(self, sender, payload, frames):
        self._client_gone(payload[0])

    def on_shutdown(self, sender, payload, frames):
        self.running = False

    def on_cluster_info(self, sender, payload, frames):
        (req_id,) = payload
        available = {k: v for k, v in self.scheduler.available.items() if v > 0}
        node = {
            "NodeID": self.node_id, "Alive": True, "NodeManagerAddress": self.args.node_ip,
            "NodeManagerHostname": self.hostname, "NodeName": self.args.node_ip,
            "Resources": self.from_units(self.total_units), "alive": True,
            "ObjectStoreSocketName": self.address, "RayletSocketName": self.address,
        }
        node["State"] = "ALIVE"
        node["MeshAddress"] = getattr(self, "mesh_address", None)
        others = self.mesh_nodes()
        alive_others = [n for n in others if n["Alive"]]
        self.reply(sender, self.wire.CLUSTER_INFO_REPLY, req_id, {
            "nodes": [node] + others,
            "total": sum_resources([self.from_units(self.total_units)] + [n["Resources"] for n in alive_others]),
            "available": sum_resources([self.from_units(available)] + [n["Available"] for n in alive_others]),
            "queued": self.scheduler.num_queued(), "workers": self.scheduler.worker_count(),
            "daemon_pid": os.getpid(), "zygote_pid": self.zygote.pid,
            "worker_pids": [w.pid for w in self.workers.values() if w.pid],
        })

    def on_export_function(self, sender, payload, frames):
        self.functions[payload[0]] = frames[0]

    def on_fetch_function(self, sender, payload, frames):
        req_id, function_id = payload
        frame = self.functions.get(function_id)
        if frame is None:
            from ..exceptions import RaySystemError
            self.reply(sender, self.wire.FUNCTION, req_id, None, RaySystemError(
                f"function {function_id.hex()} was never exported to this node"))
        else:
            self.reply(sender, self.wire.FUNCTION, req_id, function_id, None, [frame])

    def on_submit_task(self, sender, payload, frames):
        from ..scheduling.local_scheduler import Task
        task = Task(payload[0], frames)
        if task.spec.extra and "actor_id" in task.spec.extra:
            self.on_actor_creation_task(task)
        else:
            self.place_task(task)

    def _worker_id_of(self, address):
        client = self.clients.get(address)
        return client.worker_id if client is not None else None

    def on_task_finished(self, sender, payload, frames):
        worker_id = self._worker_id_of(sender)
        worker = self.scheduler.workers.get(worker_id)
        task = worker.task if worker is not None else None
        self.run_actions(self.scheduler.handle_task_finished(worker_id))
        if task is not None and task.origin is not None:
            self.task_ended_here(task)

    def on_cancel_task(self, sender, payload, frames):
        task_id, force, recursive = payload
        actions = self.scheduler.handle_cancel(task_id, force)
        self.run_actions([a + (recursive,) if a[0] == "interrupt" else a for a in actions])

    def on_worker_blocked(self, sender, payload, frames):
        self.run_actions(self.scheduler.handle_worker_blocked(self._worker_id_of(sender), payload[0]))

    # -- shutdown ------------------------------------------------------------------------------
    def shutdown(self):
        if getattr(self, "_shut_down", False):
            return
        self._shut_down = True
        self.mesh_leave()
        if self.args.node_file:
            from .local_node import remove_node_file
            remove_node_file(os.getpid())
        for worker in list(self.workers.values()):
            self._kill(worker.pid)
        self.zygote.stop()
        deadline = time.monotonic() + 2.0
        for worker in list(self.workers.values()):
            while worker.pid and time.monotonic() < deadline and pid_alive(worker.pid):
                time.sleep(0.005)
        self.store.close()
        # A node leaving the mesh gives its goodbye gossip a moment to get out.
        self.transport.close(linger_ms=300 if self.swim is not None else 0)
        self.region.close()
        if self.args.remove_session_on_exit:
            from .session import remove_session_dir
            remove_session_dir(self.session_dir)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m zray.node.daemon")
    p.add_argument("--session", required=True)
    p.add_argument("--num-cpus", type=float, required=True)
    p.add_argument("--num-gpus", type=float, default=0)
    p.add_argument("--resources", default="{}")
    p.add_argument("--memory", type=int, default=0)
    p.add_argument("--object-store-memory", type=int, required=True)
    p.add_argument("--node-ip", default="127.0.0.1")
    p.add_argument("--driver-pid", type=int, default=0)
    p.add_argument("--driver-address", default=None)
    p.add_argument("--job-id", default=None)
    p.add_argument("--prestart", type=int, default=0)
    p.add_argument("--max-workers", type=int, default=64)
    p.add_argument("--ready-fd", type=int, default=-1)
    p.add_argument("--remove-session-on-exit", action="store_true")
    p.add_argument("--node-file", default=None, help="where `zray start` finds this node")
    p.add_argument("--port", type=int, default=0, help="TCP port for the mesh (0: none)")
    p.add_argument("--join", default=None, help="HOST:PORT[,HOST:PORT] of live members")
    p.add_argument("--secret-file", default=None, help="file holding the cluster secret")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    zygote = Zygote.start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the driver decides when we stop
    try:
        daemon = NodeDaemon(args, zygote)
    except BaseException:
        zygote.stop()
        raise
    # Stop at the next turn of the loop (at most the poll timeout away).
    signal.signal(signal.SIGTERM, lambda *_: setattr(daemon, "running", False))
    if args.node_file:
        from .local_node import write_node_file
        write_node_file({"session": args.session, "address": daemon.address, "pid": os.getpid(),
                         "node_id": daemon.node_id,
                         "mesh_address": getattr(daemon, "mesh_address", None),
                         "secret_file": getattr(daemon, "secret_file", None)})
    if args.ready_fd >= 0:
        os.write(args.ready_fd, b"ready\n")
        os.close(args.ready_fd)
    try:
        daemon.run()
    finally:
        daemon.shutdown()


if __name__ == "__main__":
    main()
