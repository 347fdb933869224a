"""The node daemon: one process per host, one thread, one event loop.

The daemon keeps the loop, the processes (pidfds, the zygote, the client table) and an ordered
list of services (service.py): each serves its own messages and reacts to the lifecycle events
the daemon fans out from one place (services.py, `NodeServices`). Messages are decoded by the services and handed
to the state machines (LocalScheduler, ActorDirectory, ...); the actions those return are carried
out by the services. Processes are watched with pidfds, so a death is seen at once, whether or
not the process was our child.

Run as `python -m zray.node.daemon --session DIR ...` (zray.init does this).
"""
import argparse
import json
import logging
import os
import signal
import socket
import sys
import time

# The zygote must be forked before any thread or ZeroMQ context exists in this process.
from .processes import Client, ClientTable, WorkerProcess, kill_pid, pid_alive
from ..transport.address import ipc_path
from . import warmup
from .zygote import Zygote

log = logging.getLogger("zray.node")
# A node joining a mesh must reach a member within this (ZRAY_JOIN_TIMEOUT_S overrides it,
# e.g. for launchers that start every host at once, the seed maybe last).
JOIN_TIMEOUT_S = float(os.environ.get("ZRAY_JOIN_TIMEOUT_S", "10"))
EXIT_STATUS_WAIT_S = 2.0     # a dead worker's exit status from the zygote, at most this late
DEATH_POLL_MS = 20           # the loop's poll while deaths wait for their status


class NodeDaemon:
    def __init__(self, args, zygote):
        import zmq
        from .. import _native
        from ..scheduling.local_scheduler import LocalScheduler
        from ..scheduling.resources import to_units
        from ..store.object_store import ObjectStore
        from ..store.region import Region
        from ..transport import wire
        from ..transport.zmq_transport import Transport, TransportClosed
        from .mesh_service import MeshService
        from .service import Membership, NodeContext
        from .services import NodeServices

        self.zmq = zmq
        self.wire = wire
        self.TransportClosed = TransportClosed
        self.args = args
        self.zygote = zygote
        self.dashboard = None         # dashboard/launch.py's DashboardProcess, once announced
        self.session_dir = args.session
        self.node_id = os.urandom(14).hex()
        self.hostname = socket.gethostname()
        self.address = f"ipc://{self.session_dir}/sock/node"
        self.region = Region.create(args.object_store_memory)
        self.warmup = warmup.WarmupPolicy(args.warmup)
        self.host_idle = None           # sampled while the warm-up waits for a spare CPU
        if args.warmup == warmup.NOW:
            self.region.prefault_in_background()
        from ..store.spill import SpillWorker
        self.store = ObjectStore(self.region.view, args.object_store_memory,
                                 _native.Allocator(args.object_store_memory, 64),
                                 os.path.join(self.session_dir, "spill"), spiller=SpillWorker())
        resources = dict(json.loads(args.resources or "{}"))
        resources["CPU"] = args.num_cpus
        if args.num_gpus:
            resources["GPU"] = args.num_gpus
        resources["memory"] = args.memory if args.memory >= 0 else default_memory(
            args.object_store_memory)
        resources["object_store_memory"] = args.object_store_memory
        resources[f"node:{args.node_ip}"] = 1
        from ..core.gpus import node_gpu_ids
        self.gpu_ids = node_gpu_ids(os.environ, args.num_gpus)   # what its workers see
        self.scheduler = LocalScheduler(to_units(resources), max_workers=args.max_workers)
        self.transport = Transport(self.address)
        self.table = ClientTable()
        self.pidfds = {}             # fd -> ("client", address) | ("worker", worker_id) | ("driver-pid", pid)
        self.worker_counter = 0
        self._deaths = {}            # pid -> (WorkerProcess, deadline): exit status awaited
        self.running = True
        self.poller = zmq.Poller()
        self.poller.register(self.transport.inbox, zmq.POLLIN)
        self.poller.register(self.zygote.reply_fd, zmq.POLLIN)
        self.membership = Membership(self.node_id, self.address)
        self.ctx = NodeContext(
            self.node_id, self.address, self.session_dir, send=self.send, reply=self.reply,
            scheduler=self.scheduler, store=self.store, membership=self.membership,
            clients=self.table, start_worker=self.start_worker, kill_pid=kill_pid,
            hostname=self.hostname, node_ip=args.node_ip)
        ctx = self.ctx
        self.mesh = MeshService(ctx, self.transport, args,
                                lambda kind, member: self.services.on_member(kind, member))
        self.services = NodeServices(ctx, self.mesh, forget=self.transport.forget,
                                     more_handlers=[self], preload=self.zygote.preload)
        self.tasks = self.services.tasks
        self.services.preload.started_with(getattr(args, "preload", ()))
        if self.mesh.swim is not None:
            self.services.objects.open_data_channel(self.mesh.cluster_secret, args.node_ip,
                                                    self.mesh.mesh_address)
        for fd in self.services.objects.wake_fds():
            self.poller.register(fd, zmq.POLLIN)   # news is read by the service's tick
        self.mesh.start()
        if args.driver_pid:
            self._watch_pid(args.driver_pid, ("driver-pid", args.driver_pid))
        if args.job_id and args.prestart:
            self.tasks.run(self.scheduler.handle_prestart(args.job_id, args.prestart))

    def handlers(self):
        """The daemon's own messages: its clients."""
        wire = self.wire
        return {
            wire.REGISTER_CLIENT: self.on_register_client,
            wire.CLIENT_EXIT: self.on_client_exit,
            wire.SHUTDOWN_NODE: self.on_shutdown,
            wire.CLUSTER_INFO: self.on_cluster_info,
            wire.CHECK_OWNER: self.on_check_owner,
            wire.PROTOCOL_MISMATCH: self.on_protocol_mismatch,
        }

    # -- the loop ------------------------------------------------------------------------------
    def run(self, announce=lambda: None):
        """Serve until stopped; the exit code. `announce()` is called once the node serves:
        at once, or, when it joins a mesh, once a member answered. A join that reaches nobody
        within JOIN_TIMEOUT_S ends the node with an error naming the seeds (exit code 1)."""
        from ..core.inbox import log_bad_frame
        joining = bool(self.args.join) and self.membership.in_mesh

        def serving():
            announce()
            self.warmup.ready(time.monotonic())

        if not joining:
            serving()
        join_deadline = time.monotonic() + JOIN_TIMEOUT_S
        zmq = self.zmq
        recv = self.transport.recv
        handlers = self.services.handler_table
        tickers = self.services.tickers
        poll_ms = 50 if self.membership.in_mesh else 1000
        while self.running:
            timeout_ms = DEATH_POLL_MS if self._deaths else poll_ms
            if self.warmup.waiting:
                timeout_ms = min(timeout_ms, int(warmup.SAMPLE_S * 1000))
            events = dict(self.poller.poll(timeout_ms))
            now = time.monotonic()
            for tick in tickers:
                tick(now)
            for _ in range(10_000):
                try:
                    sender, msg_type, payload, frames = recv(zmq.NOBLOCK)
                    handler = handlers.get(msg_type)
                except zmq.Again:
                    break
                except Exception as exc:   # one malformed message must not stop the node
                    log_bad_frame(log, exc)
                    continue
                if handler is None:
                    continue
                try:
                    handler(sender, payload, frames)
                except Exception:
                    log.exception("error handling %s from %s",
                                  self.wire.NAMES.get(msg_type, msg_type), sender)
            for fd in events:
                if fd == self.zygote.reply_fd:
                    for worker_id, pid in self.zygote.read_replies():
                        self.on_worker_spawned(worker_id, pid)
                elif isinstance(fd, int) and fd in self.pidfds:
                    self.on_process_exit(fd)
            if self._deaths:
                self._report_deaths(now)
            if self.warmup.waiting:
                self._warm_up_when_due(now)
            if joining:
                if len(self.membership.live_nodes()) > 1:
                    joining = False
                    serving()
                elif now > join_deadline:
                    message = (
                        f"zray node: could not join the mesh through {self.args.join} from "
                        f"{self.membership.mesh_address} within {JOIN_TIMEOUT_S:.0f}s: no "
                        "member answered. Is the address right and reachable from this host "
                        "(and this node's IP reachable from there: --node-ip-address), and does "
                        "this node have the cluster's secret (--secret-file or "
                        "ZRAY_CLUSTER_SECRET)? A wrong secret looks the same: its peers "
                        "cannot authenticate it.")
                    log.error("%s", message)
                    print(message, file=sys.stderr, flush=True)
                    self.args.remove_session_on_exit = False   # its starter reads node.err
                    self.shutdown()
                    return 1
        self.shutdown()
        return 0

    def _warm_up_when_due(self, now):
        """The start-up work no first task waits for (node/warmup.py), once the host has a
        CPU to spare or the policy's delay passed."""
        if self.host_idle is None:
            self.host_idle = warmup.HostIdle()
        elif now - self.host_idle.last_at < warmup.SAMPLE_S:
            return
        busy = self.scheduler.num_queued() > 0 or any(
            not worker.registered for worker in self.table.workers.values())
        if self.warmup.due(now, self.host_idle.sample(now), busy):
            log.info("warming up: the zygote's remaining imports and the store's prefault "
                     "(%.2f s after the node began serving)", now - self.warmup.ready_at)
            self.zygote.warm()
            self.region.prefault_in_background()

    def send(self, address, msg_type, payload=(), frames=()):
        """Send; False when it failed. A closed transport (shutting down) is quiet; any other
        failure is logged, and the caller fails the request it belonged to."""
        try:
            self.transport.send(address, msg_type, payload, frames)
            return True
        except self.TransportClosed:
            return False
        except Exception:
            log.exception("cannot send %s to %s", self.wire.NAMES.get(msg_type, msg_type), address)
            return False

    def reply(self, address, msg_type, req_id, result=None, error=None, frames=()):
        """A reply that cannot be sent (e.g. a result that does not pickle) becomes an error
        reply, so the caller gets a clear error instead of waiting forever."""
        try:
            self.transport.send(address, msg_type, (req_id, result, error), frames)
            return True
        except self.TransportClosed:
            return False
        except Exception as exc:
            log.exception("cannot send the reply %s to %s",
                          self.wire.NAMES.get(msg_type, msg_type), address)
            from ..exceptions import RaySystemError
            return self.send(address, msg_type, (req_id, None, RaySystemError(
                f"the zray node could not send its reply ({self.wire.NAMES.get(msg_type)}): "
                f"{type(exc).__name__}: {exc}")))

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

    def start_worker(self, job_id, runtime_env=""):
        self.worker_counter += 1
        worker_id = f"{self.worker_counter:04d}{os.urandom(2).hex()}"
        self.table.workers[worker_id] = WorkerProcess(worker_id, job_id, runtime_env,
                                                      self.zygote.preloads)
        self.zygote.spawn({
            "worker_id": worker_id, "job_id": job_id, "session": self.session_dir,
            "daemon": self.address,
            "driver": self.table.driver_of(job_id) or self.args.driver_address,
            "mesh": self.mesh.endpoint(), "runtime_env": runtime_env,
        })

    def on_worker_spawned(self, worker_id, pid):
        worker = self.table.workers.get(worker_id)
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
            worker = self.table.workers.get(key)
            if worker is not None:
                self._worker_gone(worker)
        elif kind == "client":
            self._local_client_gone(key)

    def _worker_gone(self, worker):
        self.table.workers.pop(worker.worker_id, None)
        self._unwatch(worker.pidfd)
        if worker.registered:
            # Its exit status comes from the zygote, which reaps it. When the death fails a task
            # or an actor, the user is told the status: the death is reported when it arrives
            # (or after EXIT_STATUS_WAIT_S without it), without blocking the loop meanwhile.
            for worker_id, pid in self.zygote.read_replies():
                self.on_worker_spawned(worker_id, pid)
            wait = self.scheduler.worker_in_use(worker.worker_id)
            self._deaths[worker.pid] = (worker, time.monotonic() + (EXIT_STATUS_WAIT_S if wait else 0))
            self._report_deaths(time.monotonic())
            return
        self.scheduler.handle_worker_start_failed(worker.job_id, worker.runtime_env)
        if worker.address:
            self._local_client_gone(worker.address)

    def _local_client_gone(self, address):
        client = self.table.clients.pop(address, None)
        path = ipc_path(address)
        if path and path.startswith(self.session_dir):
            try:
                os.unlink(path)   # a killed process leaves its socket file
            except OSError:
                pass
        if client is not None:
            self._unwatch(client.pidfd)
        self.services.client_gone(address, client.kind if client else None,
                                  client.job_id if client else None, local=True)

    def _report_deaths(self, now):
        for pid, (worker, deadline) in list(self._deaths.items()):
            status = self.zygote.take_exit(pid)
            if status is None and now < deadline and self.running:
                continue
            if self._deaths.pop(pid, None) is None:
                continue      # reported meanwhile (a nested call)
            self.services.worker_died(worker.worker_id, self._death_detail(worker, status))
            if worker.address:
                self._local_client_gone(worker.address)

    def _death_detail(self, worker, status):
        """How the worker ended (its exit code or signal, from the zygote that reaped it) and
        the last lines of its log: what WorkerCrashedError / ActorDiedError tell the user."""
        from .zygote import describe_exit
        how = f"The worker process (pid {worker.pid}) {describe_exit(status)}."
        tail = self._log_tail(worker.worker_id)
        return f"{how}\n{tail}" if tail else how

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

    # -- the daemon's own handlers -------------------------------------------------------------
    def on_register_client(self, sender, payload, frames):
        req_id, kind, address, pid, job_id, worker_id, driver_address, *more = payload
        namespace = more[0] if more else None       # a driver's (the state API hides internal ones)
        pidfd = None
        worker = self.table.workers.get(worker_id) if kind == "worker" else None
        if worker is not None:
            worker.address = address
            worker.registered = True
        else:
            pidfd = self._watch_pid(pid, ("client", address))
        self.table.clients[address] = Client(kind, address, pid, job_id, worker_id, pidfd)
        if kind == "driver":
            self.table.drivers.setdefault(job_id, address)
        self.services.state.client_registered(kind, address, pid, job_id, worker_id, namespace)
        self.reply(sender, self.wire.REGISTERED, req_id, self.node_info())
        if kind == "worker":
            self.tasks.run(self.scheduler.handle_worker_started(
                worker_id, job_id, address, pid, worker.runtime_env if worker else "",
                outdated=worker is not None and worker.preloads < self.zygote.preloads))

    def node_info(self):
        from ..scheduling.resources import from_units
        return {
            "node_id": self.node_id, "address": self.address, "pid": os.getpid(),
            "store_fd": self.region.fd, "store_size": self.region.size,
            "session_dir": self.session_dir, "hostname": self.hostname,
            "node_ip": self.args.node_ip, "gpu_ids": self.gpu_ids,
            "resources": from_units(self.scheduler.total),
        }

    def on_client_exit(self, sender, payload, frames):
        self._local_client_gone(payload[0])

    def on_check_owner(self, sender, payload, frames):
        """Is `owner` a live process? Only a no is answered (CLIENT_DIED to the asker): a
        borrower must not wait on an owner that died before it could hear of the death, or
        that never existed (a fabricated ref). Another node's process: that node answers."""
        owner, asker = payload
        from ..transport.address import node_of
        node = node_of(owner)
        if node is not None and node != self.node_id:
            if self.membership.is_live(node):
                self.send(self.membership.address_of(node), self.wire.CHECK_OWNER, (owner, asker))
                return
        elif self.table.is_client(owner):
            return
        self.send(asker, self.wire.CLIENT_DIED, (owner,))

    def on_protocol_mismatch(self, sender, payload, frames):
        """A peer of another zray release refused this node (the transport raises for later
        sends to it, so whatever was sent there fails): the operator reads why."""
        (error,) = payload
        log.error("refused by a peer of another zray release: %s", error)

    def on_shutdown(self, sender, payload, frames):
        self.running = False

    def on_cluster_info(self, sender, payload, frames):
        from ..scheduling.resources import from_units
        from .mesh_service import sum_resources
        (req_id,) = payload
        total = from_units(self.scheduler.total)
        available = from_units({k: v for k, v in self.scheduler.available.items() if v > 0})
        node = {
            "NodeID": self.node_id, "Alive": True, "NodeManagerAddress": self.args.node_ip,
            "NodeManagerHostname": self.hostname, "NodeName": self.args.node_ip,
            "Resources": total, "alive": True,
            "ObjectStoreSocketName": self.address, "RayletSocketName": self.address,
            "State": "ALIVE", "MeshAddress": self.membership.mesh_address,
        }
        others = self.mesh.nodes()
        alive_others = [n for n in others if n["Alive"]]
        self.reply(sender, self.wire.CLUSTER_INFO_REPLY, req_id, {
            "nodes": [node] + others,
            "total": sum_resources([total] + [n["Resources"] for n in alive_others]),
            "available": sum_resources([available] + [n["Available"] for n in alive_others]),
            "queued": self.scheduler.num_queued(), "workers": self.scheduler.worker_count(),
            "daemon_pid": os.getpid(), "zygote_pid": self.zygote.pid,
            "worker_pids": self.table.worker_pids(),
            "tasks_finished": self.tasks.finished_count,
            "dashboard_url": self.dashboard.url if self.dashboard else None,
        })

    # -- shutdown ------------------------------------------------------------------------------
    def shutdown(self):
        if getattr(self, "_shut_down", False):
            return
        self._shut_down = True
        self.mesh.leave()
        self.services.fan_out("close")
        if self.args.node_file:
            from .local_node import remove_node_file
            remove_node_file(self.args.node_file, os.getpid())
        if self.dashboard is not None:
            self.dashboard.stop()
        workers = list(self.table.workers.values())
        for worker in workers:
            kill_pid(worker.pid)
        self.zygote.stop()
        deadline = time.monotonic() + 2.0
        for worker in workers:
            while worker.pid and time.monotonic() < deadline and pid_alive(worker.pid):
                time.sleep(0.005)
        self.store.close()
        # A node leaving the mesh gives its goodbye gossip a moment to get out.
        self.transport.close(linger_ms=300 if self.membership.in_mesh else 0)
        self.region.close()
        if self.args.remove_session_on_exit:
            from .session import remove_session_dir
            remove_session_dir(self.session_dir)


def default_memory(object_store_memory):
    """The "memory" resource tasks and actors reserve with memory=: the memory available now,
    capped by the allocation (cgroup, Slurm), less the object store (as Ray sizes it)."""
    from ..launch.allocation import detect
    available = min(available_memory(), detect().memory_bytes)
    return max(0, int(available) - int(object_store_memory)) // 4096 * 4096


def available_memory():
    """The kernel's MemAvailable (what psutil.virtual_memory().available reports on Linux),
    read directly: importing psutil costs every node ~15 ms of its start."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import psutil
    return psutil.virtual_memory().available


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m zray.node.daemon")
    p.add_argument("--session", required=True)
    p.add_argument("--num-cpus", type=float, required=True)
    p.add_argument("--num-gpus", type=float, default=0)
    p.add_argument("--resources", default="{}")
    p.add_argument("--memory", type=int, default=-1,
                   help="the memory resource in bytes; -1: what this node may use (default_memory)")
    p.add_argument("--object-store-memory", type=int, required=True)
    p.add_argument("--node-ip", default="127.0.0.1")
    p.add_argument("--driver-pid", type=int, default=0)
    p.add_argument("--driver-address", default=None)
    p.add_argument("--job-id", default=None)
    p.add_argument("--prestart", type=int, default=0)
    p.add_argument("--max-workers", type=int, default=int(os.environ.get("ZRAY_MAX_WORKERS", "64")),
                   help="task workers at most (actors' workers do not count); ZRAY_MAX_WORKERS")
    p.add_argument("--ready-fd", type=int, default=-1)
    p.add_argument("--remove-session-on-exit", action="store_true")
    p.add_argument("--node-file", default=None, help="where `zray start` finds this node")
    p.add_argument("--port", type=int, default=0, help="TCP port for the mesh (0: none)")
    p.add_argument("--join", default=None, help="HOST:PORT[,HOST:PORT] of live members")
    p.add_argument("--secret-file", default=None, help="file holding the cluster secret")
    p.add_argument("--dashboard-port", type=int, default=-1,
                   help="the dashboard's port (-1: no dashboard; taken: a free one)")
    p.add_argument("--dashboard-host", default="127.0.0.1")
    p.add_argument("--preload", default="",
                   help="modules (comma-separated) the zygote imports at its start, before its "
                        "first fork: what libraries asked for before init() (worker_preload.py)")
    p.add_argument("--warmup", choices=warmup.MODES, default=warmup.NOW,
                   help="when the zygote's remaining imports and the store's prefault happen "
                        "(node/warmup.py)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _import_daemon_modules()
    from .preload_service import start_names
    args.preload = start_names(args.preload)
    zygote = Zygote.start(warmup.zygote_mode(args.warmup), args.preload)
    _name_this_process()    # after the fork: the zygote and the workers keep their name
    from .. import logs
    logs.configure(args.session, "node")
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the driver decides when we stop
    try:
        daemon = NodeDaemon(args, zygote)
    except BaseException:
        zygote.stop()
        raise
    # Stop at the next turn of the loop (at most the poll timeout away).
    signal.signal(signal.SIGTERM, lambda *_: setattr(daemon, "running", False))
    metrics_server = _start_metrics_endpoint(daemon)

    def announce():
        """The node serves (and, joining, has reached a member): say so to who started it."""
        from .local_node import write_node_file
        from .processes import process_start_time
        info = {
            "session": args.session, "address": daemon.address, "pid": os.getpid(),
            "start_time": process_start_time(os.getpid()), "node_id": daemon.node_id,
            "mesh_address": daemon.membership.mesh_address,
            "secret_file": daemon.mesh.secret_file, "started": time.time(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "metrics_address": ("%s:%d" % metrics_server.server_address[:2]
                                if metrics_server is not None else None)}
        # The session's own copy: how jobs' entrypoints and the dashboard reach this node
        # (ZRAY_ADDRESS=<session>/node.json), also for a private node that has no node file.
        session_info = os.path.join(args.session, "node.json")
        write_node_file(session_info, info)
        if args.dashboard_port >= 0:
            from ..dashboard.launch import start_dashboard
            daemon.dashboard = start_dashboard(args.session, session_info, args.dashboard_host,
                                               args.dashboard_port, secret_file=info["secret_file"])
            info["dashboard_url"] = daemon.dashboard.url if daemon.dashboard else None
        if args.node_file:
            write_node_file(args.node_file, info)
        if args.ready_fd >= 0:
            os.write(args.ready_fd, b"ready\n")
            os.close(args.ready_fd)
    try:
        code = daemon.run(announce)
    except BaseException:
        # A crash: the session's logs (node.err has the traceback) must outlive it; whoever
        # cleans up after it keeps them (session.keep_logs_only).
        args.remove_session_on_exit = False
        raise
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        daemon.shutdown()
    sys.exit(code)


def _import_daemon_modules():
    """What NodeDaemon imports, imported before the zygote is forked so that the zygote (and
    every worker) shares them instead of importing zmq, the transport and the store again
    (~0.07 CPU-s a node). Importing starts no thread and makes no ZeroMQ context."""
    import zmq  # noqa: F401
    from .. import _native  # noqa: F401
    from ..scheduling import local_scheduler, resources  # noqa: F401
    from ..store import object_store, region, spill  # noqa: F401
    from ..transport import wire, zmq_transport  # noqa: F401
    from . import mesh_service, service, services  # noqa: F401


def _name_this_process():
    """`ps -o comm`, top and processes.is_node_daemon see "zray-node" (a daemon forked by
    `python -m zray.launch` has the launcher's command line)."""
    from .processes import NODE_PROCESS_NAME
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(15, NODE_PROCESS_NAME, 0, 0, 0)  # PR_SET_NAME
    except Exception:      # no prctl: the command line still names an exec'd daemon
        log.debug("could not name the node daemon's process", exc_info=True)


def _start_metrics_endpoint(daemon):
    """GET /metrics on ZRAY_METRICS_EXPORT_PORT (zray/state/metrics_http.py), or None."""
    port = os.environ.get("ZRAY_METRICS_EXPORT_PORT")
    if not port:
        return None
    from ..state.metrics_http import serve
    host = os.environ.get("ZRAY_METRICS_EXPORT_HOST", "127.0.0.1")
    try:
        server = serve({"address": daemon.address, "session": daemon.session_dir}, int(port), host)
    except (OSError, ValueError) as exc:
        log.error("the metrics endpoint could not listen on %s:%s: %s", host, port, exc)
        return None
    log.info("Prometheus metrics at http://%s:%d/metrics", *server.server_address[:2])
    return server


if __name__ == "__main__":
    main()
