"""The state API on a node: any node answers for the whole mesh (no head).

STATE_QUERY (wire.py) carries a StateQuery (zray/state/query.py). With scope "cluster" the node
asked sends the same query with scope "node" to every live member (or the `targets`), answers
its own part, and replies once every member answered, or at the query's timeout with the silent
ones named in `failed_nodes`; a member that dies meanwhile is named at once. Filters and the
limit travel with the query, so each node returns at most `limit` rows and a count: the asker
merges N * limit rows, never the mesh's whole history.

What a node knows of its own:
    tasks      the tasks it runs or ran (TaskRecords: running + a ring of finished ones; actor
               calls reported by their workers in WORKER_REPORT) and the ones waiting in its
               scheduler, with the reason they wait (PENDING_NODE_ASSIGNMENT + pending_reason)
    actors     the actors it is the home of (ActorDirectory), with death causes
    objects    its store's objects, and the object refs its processes hold: inline values,
               results not made yet, actor calls queued in their caller (each client answers
               OBJECT_REFS_QUERY from its own tables, zray/state/object_refs.py; one that does
               not within CLIENT_ANSWER_S is left out)
    workers    its processes, live and recently exited
    jobs       the drivers attached to it, live and finished, and the submitted jobs whose
               records it decides in the key-value store (each record on one node); the
               node asked joins a submission with its driver's row (query.join_jobs)
    placement_groups   the groups it is the home of
    logs / log the files of its session's logs/ (names only inside that folder)
Nodes are answered by the node asked alone, from its membership view (dead members included).
The module is a little past 800 lines on purpose: every kind's gathering is a few short functions
sharing the one fan-out above, and split across files they would each need it again.

Interface for other services and the daemon:
    records                  the TaskRecords (TaskService records into it)
    metrics                  the NodeMetrics (zray/state/metrics_table.py) fed by WORKER_REPORT
    answer_local(query[, alone])  this node's answer to a StateQuery (a dict), synchronously
    ask(query, done)         run a query as if a client sent it; done(answer, error) is called
                             on the loop (for an in-daemon HTTP handler)
"""
import collections
import itertools
import logging
import os
import time

from ..state import query as q
from ..state.metrics_table import NodeMetrics
from ..state.records import (ACTOR_TASK, NORMAL_TASK, TaskRecords, TaskRow, keep_from_env,
                             row_of_spec, row_predicate, select_rows)
from ..transport import wire
from ..transport.address import node_of
from .service import Service

log = logging.getLogger("zray.node")
KEEP_EXITED = 1000          # exited workers and finished drivers remembered per node
OBJECT_RESOURCES = ("objects", "summary_objects")
INTERNAL_NAMESPACES = ("_zray_", "_ray_internal_")   # drivers there are not listed as jobs
CLIENT_ANSWER_S = 2.0       # a process answers from its I/O thread; min(this, timeout / 2)
LOG_TAIL_MAX_BYTES = 64 << 20


class _ClientWait:
    """A local process asked for its object refs (in _Gather.waiting, beside peers)."""
    __slots__ = ("address",)

    def __init__(self, address):
        self.address = address


class _Gather:
    __slots__ = ("asker", "req_id", "query", "waiting", "answers", "deadline", "done",
                 "client_answers", "client_deadline")

    def __init__(self, asker, req_id, query, waiting, deadline, done):
        self.asker = asker
        self.req_id = req_id
        self.query = query
        self.waiting = waiting      # request id sent to a peer -> node_id
        self.answers = []
        self.deadline = deadline
        self.done = done            # None: reply to asker; else done(answer, error)
        self.client_answers = None  # {address: answer} while this node's processes answer
        self.client_deadline = None


class StateService(Service):
    def __init__(self, ctx, tasks, actors, groups, mesh, kv=None):
        """tasks: TaskService; actors: ActorService; groups: PlacementGroupService; mesh:
        MeshService (its nodes() view); kv: KvService (submitted jobs' records)."""
        self.ctx = ctx
        self.records = TaskRecords(ctx.node_id, keep_from_env())
        self.metrics = NodeMetrics()
        self.tasks = tasks
        self.actors = actors
        self.groups = groups
        self.mesh = mesh
        self.kv = kv
        self.started_ms = _now_ms()
        self._gathers = {}              # peer request id -> _Gather
        self._next_id = 1
        self.exited_workers = collections.deque(maxlen=KEEP_EXITED)
        self.finished_jobs = collections.deque(maxlen=KEEP_EXITED)
        self.job_starts = {}            # job_id -> (start ms, driver pid, address)
        self._workers = {}              # worker_id -> (pid, job_id, registered ms)
        self._internal_drivers = set()  # addresses of drivers in internal namespaces
        self._paused = {}               # process address -> debugger ports of paused threads
        self.actor_texts = {}           # actor_id -> (version, detail, lower-case text): search
        tasks.set_records(self.records)

    def handlers(self):
        return {wire.STATE_QUERY: self.on_state_query, wire.STATE_REPLY: self.on_state_reply,
                wire.WORKER_REPORT: self.on_worker_report,
                wire.OBJECT_REFS_REPLY: self.on_object_refs_reply}

    # -- handlers --------------------------------------------------------------------------------
    def on_state_query(self, sender, payload, frames):
        req_id, data = payload
        try:
            query = q.StateQuery.from_wire(data)
        except (ValueError, TypeError) as exc:
            self.ctx.reply(sender, wire.STATE_REPLY, req_id, None, ValueError(str(exc)))
            return
        self._start(query, sender, req_id, None)

    def ask(self, query, done):
        self._start(query, None, None, done)

    def _start(self, query, asker, req_id, done):
        peers = self._peers_for(query)
        mine = query.targets is None or self.ctx.node_id in query.targets
        clients = self._ref_holders() if mine and query.resource in OBJECT_RESOURCES else []
        try:
            if not mine:
                local = q.empty_answer()        # asked about other nodes only
            elif clients:
                local = None                    # once the processes answered (_clients_done)
            else:
                local = self.answer_local(query, alone=not peers and query.scope == "cluster")
        except (ValueError, OSError) as exc:
            self._finish_with(asker, req_id, done, None, exc)
            return
        except Exception as exc:       # a bug of ours: the asker still gets an answer
            log.exception("state query %r failed", query)
            self._finish_with(asker, req_id, done, None, RuntimeError(
                f"the node failed to answer the state query: {type(exc).__name__}: {exc}"))
            return
        if not peers and not clients:
            self._finish_with(asker, req_id, done, q.merge([local], query), None)
            return
        now = self.ctx.now()
        gather = _Gather(asker, req_id, query, {}, now + query.timeout, done)
        peer_query = query.for_peer().to_wire()
        sends = []      # every wait is registered before the first send: one that fails at
        if local is not None:   # once must not find the gather complete while others are due
            gather.answers.append(local)
        else:
            gather.client_answers = {}
            gather.client_deadline = now + min(CLIENT_ANSWER_S, query.timeout / 2)
            for address in clients:
                sends.append((self._wait_on(gather, _ClientWait(address)), address,
                              wire.OBJECT_REFS_QUERY))
        for node_id, address in peers:
            sends.append((self._wait_on(gather, node_id), address, wire.STATE_QUERY))
        for rid, address, msg_type in sends:
            if not self.ctx.send(address, msg_type, (rid, peer_query)):
                self._peer_failed(rid, "could not be reached")

    def _wait_on(self, gather, waited):
        rid = self._next_id
        self._next_id += 1
        gather.waiting[rid] = waited
        self._gathers[rid] = gather
        return rid

    def _peers_for(self, query):
        if query.scope != "cluster" or query.resource == "nodes":
            return []
        membership = self.ctx.membership
        live = membership.live_nodes() - {self.ctx.node_id}
        if query.targets is not None:
            live &= set(query.targets)
        return [(n, membership.address_of(n)) for n in sorted(live) if membership.address_of(n)]

    def on_state_reply(self, sender, payload, frames):
        rid, answer, error = payload
        gather = self._gathers.pop(rid, None)
        if gather is None:
            return                          # late: the query timed out already
        node_id = gather.waiting.pop(rid, None)
        if error is not None or not isinstance(answer, dict):
            gather.answers.append({"failed_nodes": {node_id: f"{error!r}"}})
        else:
            gather.answers.append(answer)
        self._maybe_done(gather)

    def _peer_failed(self, rid, why):
        gather = self._gathers.pop(rid, None)
        if gather is None:
            return
        node_id = gather.waiting.pop(rid, None)
        if isinstance(node_id, _ClientWait):    # a process of ours: its refs are left out
            log.debug("process %s left out of an objects listing: %s", node_id.address, why)
            self._client_answered(gather)
            return
        gather.answers.append({"failed_nodes": {node_id: why}})
        self._maybe_done(gather)

    def on_object_refs_reply(self, sender, payload, frames):
        rid, answer, error = payload
        gather = self._gathers.pop(rid, None)
        if gather is None:
            return                          # late: left out already
        waited = gather.waiting.pop(rid, None)
        if error is not None or not isinstance(answer, dict):
            log.debug("process %s could not list its object refs: %r", sender, error)
        elif isinstance(waited, _ClientWait):
            gather.client_answers[waited.address] = answer
        self._client_answered(gather)

    def _client_answered(self, gather):
        if any(isinstance(w, _ClientWait) for w in gather.waiting.values()):
            return
        try:
            gather.answers.append(self._objects_answer(gather.query, gather.client_answers))
        except (ValueError, OSError) as exc:
            gather.answers.append({"failed_nodes": {self.ctx.node_id: repr(exc)}})
        self._maybe_done(gather)

    def _ref_holders(self):
        """The addresses of this node's processes (drivers, workers) that hold object refs."""
        return sorted(c.address for c in list(self.ctx.clients.clients.values())
                      if c.kind in ("driver", "worker"))

    def _objects_answer(self, query, client_answers):
        """This node's objects answer: its store's rows, then each process's refs (by address,
        so pages stay put between calls), the first offset + limit of them."""
        answer = self.answer_local(query)
        rows = list(answer["rows"])
        sizes = None            # a process knows no size of a value in the store: this node does
        for address in sorted(client_answers):
            part = client_answers[address]
            for row in part.get("rows") or ():
                if row.get("object_size") == -1 and row.get("task_status") == "FINISHED":
                    if sizes is None:
                        sizes = {i["object_id"]: i["size"] for i in self.ctx.store.list_objects()}
                    row["object_size"] = sizes.get(row["object_id"], -1)
                rows.append(row)
            answer["total"] += part.get("total") or 0
            if part.get("summary") is not None:
                answer["summary"] = q.merge_summaries(answer["summary"], part["summary"])
        answer["rows"] = rows[:query.offset + query.limit]
        return answer

    def _maybe_done(self, gather):
        if gather.waiting:
            return
        answer = q.merge(gather.answers, gather.query)
        self._finish_with(gather.asker, gather.req_id, gather.done, answer, None)

    def _finish_with(self, asker, req_id, done, answer, error):
        if done is not None:
            try:
                done(answer, error)
            except Exception:
                log.exception("a state query's callback failed")
            return
        self.ctx.reply(asker, wire.STATE_REPLY, req_id, answer, error)

    def on_worker_report(self, sender, payload, frames):
        events, metrics = payload[:2]
        if len(payload) >= 4:
            self._args_waiting(sender, payload[2], payload[3])
        if len(payload) >= 5 and payload[4] is not None:
            if payload[4]:
                self._paused[sender] = list(payload[4])
            else:
                self._paused.pop(sender, None)
        clients = self.ctx.clients
        worker_id = clients.worker_id_of(sender)
        pid = clients.pid_of(sender)
        node_id = self.ctx.node_id
        for ev in events or ():
            (task_id, attempt, name, actor_id, job_id, func_name, parent, start_ms, end_ms,
             error_type, error_message) = ev
            row = TaskRow(task_id, attempt, name, "RUNNING", job_id, actor_id, ACTOR_TASK,
                          func_name, parent, node_id, worker_id, pid, start_ms)
            row.end_time_ms = end_ms
            if end_ms is None:
                self.records.started(row)
                continue
            row.state = "FAILED" if error_type else "FINISHED"
            row.error_type = error_type
            row.error_message = error_message
            self.records.add_finished(row)
        if metrics:
            self.metrics.update(sender, metrics)

    def _args_waiting(self, owner, waiting, resolved):
        records = self.records
        for task_id in resolved or ():
            records.args_resolved(task_id)
        for (task_id, attempt, name, actor_id, job_id, func_name, parent, deps_left,
             is_call) in waiting or ():
            queued = is_call and not deps_left
            row = TaskRow(task_id, attempt, name,
                          "PENDING_NODE_ASSIGNMENT" if queued else "PENDING_ARGS_AVAIL", job_id,
                          actor_id, ACTOR_TASK if is_call else NORMAL_TASK, func_name, parent,
                          self.ctx.node_id, None, None, None)
            if queued:
                row.pending_reason = ("queued in its caller: the actor is not ready yet, or "
                                      "earlier calls to it have not left")
            else:
                row.pending_reason = (f"waiting in its owner for {deps_left} argument(s) to "
                                      "be ready (tasks that make them still run)")
            records.args_waiting(owner, row)

    # -- lifecycle -------------------------------------------------------------------------------
    def tick(self, now):
        if not self._gathers:
            return
        for rid, gather in list(self._gathers.items()):
            if rid not in self._gathers:
                continue
            if isinstance(gather.waiting.get(rid), _ClientWait):
                if now >= gather.client_deadline:
                    self._peer_failed(rid, "did not answer in time")
            elif now >= gather.deadline:
                self._peer_failed(rid, f"did not answer within {gather.query.timeout:g}s")

    def member_gone(self, member):
        for rid, gather in list(self._gathers.items()):
            if gather.waiting.get(rid) == member.name:
                self._peer_failed(rid, f"the node {member.state}")

    def client_gone(self, gone):
        for rid, gather in list(self._gathers.items()):
            waited = gather.waiting.get(rid)
            if isinstance(waited, _ClientWait) and waited.address == gone.address:
                self._peer_failed(rid, "exited")
        if gone.local:
            self._internal_drivers.discard(gone.address)
            self._paused.pop(gone.address, None)
            self.metrics.process_gone(gone.address)
            self.records.owner_gone(gone.address)

    def client_registered(self, kind, address, pid, job_id, worker_id, namespace=None):
        """The daemon tells of every registration (a driver starts a job here). A driver in
        an internal namespace (a dashboard's own) is no job and no worker to list, as in Ray."""
        if kind == "driver":
            if isinstance(namespace, str) and namespace.startswith(INTERNAL_NAMESPACES):
                self._internal_drivers.add(address)
                return
            self.job_starts[job_id] = (_now_ms(), pid, address)
        elif kind == "worker" and worker_id:
            if len(self._workers) > 100_000:     # workers whose death was never reported
                self._workers.clear()
            self._workers[worker_id] = (pid, job_id, _now_ms())

    def worker_died(self, worker_id, detail):
        # After TaskService (services.py's order): a task it ran was ended there with the
        # scheduler's verdict; actor calls the worker said were running end here.
        self.records.worker_gone(worker_id, _now_ms(), str(detail) if detail else None)
        pid, job_id, started = self._workers.pop(worker_id, (None, None, None))
        text = str(detail) if detail else None
        # Workers the node stops itself (their job ended) exit as intended, as Ray says.
        intended = (job_id is not None and not self.ctx.clients.job_alive(job_id)) or \
            (text is not None and "exited with code 0" in text)
        self.exited_workers.append({"worker_id": worker_id, "pid": pid, "job_id": job_id,
                                    "exit_detail": text, "start_time_ms": started,
                                    "end_time_ms": _now_ms(),
                                    "exit_type": "INTENDED_SYSTEM_EXIT" if intended
                                    else "SYSTEM_ERROR"})

    def job_finished(self, job_id):
        start = self.job_starts.pop(job_id, None)
        if start is not None:
            self.finished_jobs.append((job_id, start, _now_ms()))

    # -- this node's answer ----------------------------------------------------------------------
    def answer_local(self, query, alone=False):
        """alone: no other node answers, so the rows before the page (query.offset) are only
        counted, never built (merge() cuts them off)."""
        resource = query.resource
        answer = q.empty_answer()
        answer["nodes"] = [self.ctx.node_id]
        if resource == "tasks":
            rows, total = select_rows(self.records, self._pending_rows(), query)
        elif resource == "summary_tasks":
            rows = []
            answer["summary"], total = self._task_summary(query)
        elif resource == "summary_actors":
            rows = []
            answer["summary"], total = self._actor_summary(query)
        elif resource == "actors":
            # Filters read the directory's records; only the page's rows are built (10k
            # actors: one page costs its 100 rows, not 10k dicts and 10k pending reasons).
            columns = _ActorColumns(self)
            rows, total = q.select(self.actors.actor_records(), query, get=columns.get,
                                   to_dict=columns.row, skip=query.offset if alone else 0,
                                   search=columns.search(query))
        elif resource == "summary_objects":
            objects = [r for r in self._object_rows() if _matches(r, query)]
            rows, total = [], len(objects)
            answer["summary"] = q.summarize_objects(objects)
        elif resource == "metrics":
            rows, total = [], 0
            answer["text"] = self.render_metrics()
        elif resource == "logs":
            rows, total = [], 0
            answer["files"] = {self.ctx.node_id: self._log_files(query.args.get("glob"))}
        elif resource == "log":
            rows, total = [], 0
            answer["files"] = self._read_log(query.args)
        else:
            source = {"objects": self._object_rows,
                      "nodes": self._node_rows, "workers": self._worker_rows,
                      "jobs": self._job_rows, "placement_groups": self._group_rows}[resource]
            rows, total = q.select(source(), query)
        answer["rows"] = rows
        answer["total"] = total
        return answer

    def render_metrics(self):
        """This node's Prometheus exposition (zray/state/prometheus.py)."""
        from ..scheduling.resources import from_units
        from ..state.prometheus import render
        series = []
        counts = collections.Counter(r.state for r in self.records.running.values())
        for _task in self.ctx.scheduler.pending_tasks():
            counts["PENDING_NODE_ASSIGNMENT"] += 1
        counts["PENDING_ARGS_AVAIL"] = len(self.records.waiting)
        finished = self.records.finished_counts
        for state in ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "RUNNING"):
            series.append(("zray_tasks", "gauge", "tasks on this node by state",
                           {"State": state}, counts.get(state, 0)))
        for state in ("FINISHED", "FAILED"):
            series.append(("zray_tasks", "gauge", "", {"State": state}, finished.get(state, 0)))
        series.append(("zray_tasks_ended_total", "counter",
                       "tasks and actor calls that ended on this node", {},
                       self.records.ended_count))
        actors = collections.Counter(r.state for r in self.actors.actor_records())
        for state in ("PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD"):
            series.append(("zray_actors", "gauge", "actors homed on this node by state",
                           {"State": state}, actors.get(state, 0)))
        stats = self.ctx.store.stats()
        for key, name, help_text in (
                ("used", "zray_object_store_used_bytes", "bytes in use in the object store"),
                ("capacity", "zray_object_store_capacity_bytes", "object store size"),
                ("num_objects", "zray_object_store_objects", "objects in the store"),
                ("num_spilled", "zray_object_store_spilled_objects", "objects spilled to disk")):
            series.append((name, "gauge", help_text, {}, stats.get(key, 0)))
        series.append(("zray_object_store_spilled_bytes_total", "counter",
                       "bytes spilled to disk", {}, stats.get("spilled_bytes_total", 0)))
        series.append(("zray_workers", "gauge", "worker processes of this node", {},
                       self.ctx.scheduler.worker_count()))
        sched = self.ctx.scheduler
        for name, value in from_units(sched.total).items():
            series.append(("zray_resources_total", "gauge", "the node's resources",
                           {"Name": name}, value))
        for name, value in from_units(sched.available).items():
            series.append(("zray_resources_available", "gauge", "resources not in use",
                           {"Name": name}, max(value, 0)))
        try:
            import psutil
            series.append(("zray_node_cpu_percent", "gauge", "CPU use of the host", {},
                           psutil.cpu_percent(interval=None)))
            mem = psutil.virtual_memory()
            series.append(("zray_node_mem_used_bytes", "gauge", "memory in use on the host", {},
                           mem.total - mem.available))
            series.append(("zray_node_mem_total_bytes", "gauge", "memory of the host", {},
                           mem.total))
        except Exception:     # psutil missing a sensor here: the rest is still useful
            log.debug("host figures unavailable", exc_info=True)
        return render(series, self.metrics.collect(), self.ctx.node_id)

    def _pending_rows(self):
        node_id = self.ctx.node_id
        rows = [row for _owner, row in self.records.waiting.values()]
        for task, why in self.ctx.scheduler.pending():
            row = row_of_spec(task.spec, node_id, "PENDING_NODE_ASSIGNMENT")
            row.pending_reason = why
            rows.append(row)
        return rows

    def _task_rows(self):
        yield from self._pending_rows()
        yield from self.records.rows()

    def _task_summary(self, query):
        """{name: {"func_or_class_name", "type", "state_counts"}}, and how many tasks. With no
        filter the finished ones come from the ring's tallies: O(names), not O(tasks)."""
        if query.filters:
            rows = filter(row_predicate(query.filters), self._task_rows())
            tallies = collections.Counter()
        else:
            rows = itertools.chain(self._pending_rows(), list(self.records.running.values()))
            tallies = collections.Counter(self.records.summary_counts)
        for row in rows:
            tallies[(row.func_or_class_name or row.name, row.type, row.state)] += 1
        out = {}
        for (name, kind, state), n in tallies.items():
            entry = out.get(name)
            if entry is None:
                entry = out[name] = {"func_or_class_name": name, "type": kind,
                                     "state_counts": {}}
            entry["state_counts"][state] = entry["state_counts"].get(state, 0) + n
        return out, sum(tallies.values())

    def _actor_summary(self, query):
        """{class_name: {"class_name", "state_counts"}}, and how many actors matched."""
        columns = _ActorColumns(self)
        match = q.compile_filters(query.filters, columns.get)
        tallies = collections.Counter(
            (r.class_name or "", r.state) for r in self.actors.actor_records()
            if match is None or match(r))
        out = {}
        for (name, state), n in tallies.items():
            entry = out.setdefault(name, {"class_name": name, "state_counts": {}})
            entry["state_counts"][state] = n
        return out, sum(tallies.values())

    def _object_rows(self):
        node_id = self.ctx.node_id
        ip = self.ctx.node_ip
        out = []
        for info in self.ctx.store.list_objects():
            out.append({
                "object_id": info["object_id"], "object_size": info["size"],
                "task_status": {"SEALED": "FINISHED", "CREATING": "RUNNING",
                                "SPILLED": "SPILLED"}.get(info["state"], info["state"]),
                "reference_type": "PINNED_IN_MEMORY" if info["pinned_by"] else "LOCAL_REFERENCE",
                "type": "STORE", "pid": None, "ip": ip, "node_id": node_id, "owner_address": info["owner"],
                "pinned_by": info["pinned_by"], "copy_from": info.get("copy_from"),
                "call_site": "disabled"})
        return out

    def _node_rows(self):
        from ..scheduling.resources import from_units
        sched = self.ctx.scheduler
        rows = [{
            "node_id": self.ctx.node_id, "node_ip": self.ctx.node_ip, "is_head_node": False,
            "state": "ALIVE", "node_name": self.ctx.node_ip,
            "resources_total": from_units(sched.total), "labels": {},
            "mesh_address": self.ctx.membership.mesh_address,
            "resources_available": from_units({k: v for k, v in sched.available.items() if v > 0}),
            "hostname": self.ctx.hostname}]
        for node in self.mesh.nodes():
            rows.append({
                "node_id": node["NodeID"], "node_ip": node["NodeManagerAddress"],
                "is_head_node": False, "state": "ALIVE" if node["Alive"] else "DEAD",
                "node_name": node["NodeManagerAddress"], "resources_total": node["Resources"],
                "labels": {}, "mesh_address": node["MeshAddress"],
                "resources_available": node["Available"],
                "hostname": node["NodeManagerHostname"]})
        return rows

    def _worker_rows(self):
        clients = self.ctx.clients
        node_id, ip = self.ctx.node_id, self.ctx.node_ip
        rows = []
        for client in list(clients.clients.values()):
            if client.address in self._internal_drivers:
                continue
            ports = self._paused.get(client.address, ())
            rows.append({
                "worker_id": client.worker_id or client.address, "is_alive": True,
                "worker_type": "DRIVER" if client.kind == "driver" else "WORKER",
                "exit_type": None, "node_id": node_id, "ip": ip, "pid": client.pid,
                "job_id": client.job_id, "exit_detail": None, "worker_launch_time_ms": None,
                "worker_launched_time_ms": None, "start_time_ms": self._started_ms(client),
                "end_time_ms": None, "debugger_port": ports[0] if ports else None,
                "num_paused_threads": len(ports)})
        for entry in reversed(self.exited_workers):
            rows.append({
                "worker_id": entry["worker_id"], "is_alive": False,
                "worker_type": "WORKER", "exit_type": entry["exit_type"],
                "node_id": node_id, "ip": ip, "pid": entry["pid"], "job_id": entry["job_id"],
                "exit_detail": entry["exit_detail"], "worker_launch_time_ms": None,
                "worker_launched_time_ms": None, "start_time_ms": entry["start_time_ms"],
                "end_time_ms": entry.get("end_time_ms"), "debugger_port": None,
                "num_paused_threads": 0})
        return rows

    def _started_ms(self, client):
        if client.kind == "driver":
            return self.job_starts.get(client.job_id, (None,))[0]
        return self._workers.get(client.worker_id, (None, None, None))[2]

    def _job_rows(self):
        node_id, ip = self.ctx.node_id, self.ctx.node_ip
        rows = []
        for job_id, (start_ms, pid, _address) in list(self.job_starts.items()):
            rows.append(_job_row(job_id, "RUNNING", node_id, pid, start_ms, None, ip))
        for job_id, (start_ms, pid, _address), end_ms in reversed(self.finished_jobs):
            rows.append(_job_row(job_id, "SUCCEEDED", node_id, pid, start_ms, end_ms, ip))
        return rows + self._submission_rows()

    def _submission_rows(self):
        if self.kv is None:
            return []
        import json
        from ..job import model
        rows = []
        for key, raw in self.kv.decided(model.JOBS_NAMESPACE):
            try:
                info = model.JobInfo.from_json(json.loads(raw))
            except (ValueError, TypeError):
                log.warning("the record of job %r is not a job's", key)
                continue
            if info.job_id is None:
                driver = self.kv.copy_of(model.DRIVERS_NAMESPACE, key)
                if driver:
                    from dataclasses import replace
                    info = replace(info, job_id=driver.decode())
            rows.append(model.state_row(info))
        return sorted(rows, key=lambda r: (r["start_time"] or 0, r["submission_id"]))

    def _group_rows(self):
        rows = []
        for info in self.groups.group_infos():
            rows.append({
                "placement_group_id": info["placement_group_id"], "name": info["name"] or "",
                "creator_job_id": info["job_id"], "state": info["state"],
                "strategy": info["strategy"], "is_detached": info["is_detached"],
                "bundles": [{"bundle_id": {"placement_group_id": info["placement_group_id"],
                                           "bundle_index": i},
                             "node_id": info["bundles_to_node_id"].get(i),
                             "unit_resources": b} for i, b in info["bundles"].items()],
                "stats": info["stats"], "home_node_id": self.ctx.node_id})
        return rows

    # -- logs ------------------------------------------------------------------------------------
    def _logs_dir(self):
        return os.path.join(self.ctx.session_dir, "logs")

    def _log_files(self, pattern):
        import fnmatch
        try:
            names = sorted(os.listdir(self._logs_dir()))
        except OSError:
            return []
        if pattern:
            names = [n for n in names if fnmatch.fnmatch(n, pattern)]
        return names

    def _read_log(self, args):
        """{node_id: {"filename", "text", "size"}} of one file of this node's logs/, or {}."""
        filename = args.get("filename")
        if not isinstance(filename, str) or not filename or "/" in filename \
                or filename in (".", ".."):
            raise ValueError(f"a log file name is a plain name in the node's logs folder, not "
                             f"{filename!r}; list them with list_logs()")
        path = os.path.join(self._logs_dir(), filename)
        if not os.path.isfile(path):
            return {}
        tail = args.get("tail", 1000)
        if isinstance(tail, bool) or not isinstance(tail, int):
            raise ValueError(f"tail must be an int (lines; -1 for the whole file), not {tail!r}")
        offset = args.get("offset")
        if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int)
                                   or offset < 0):
            raise ValueError(f"offset must be a byte offset >= 0, not {offset!r}")
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = max(size - LOG_TAIL_MAX_BYTES, 0)
            if offset is not None:
                start = offset if offset <= size else 0     # a truncated file starts over
            f.seek(start)
            data = f.read(min(size - start, LOG_TAIL_MAX_BYTES))
            size = start + len(data)
        text = data.decode("utf-8", "replace")
        if tail >= 0:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail:]) if tail else ""
        return {self.ctx.node_id: {"filename": filename, "text": text, "size": size}}


class _ActorColumns:
    """Ray's actor columns read off an ActorDirectory record, one at a time (filters) or as
    a row (the page). Pending reasons are looked up only when asked for."""
    PLACED = "its creation task was placed and waits for a worker to start it"

    def __init__(self, service):
        self.service = service
        self.node_id = service.ctx.node_id
        self._pending = None          # actor_id -> (creation task, infeasible), on first use
        self._reasons = {}            # (resources, infeasible) -> words: one per query

    def get(self, record, column):
        reader = _ACTOR_COLUMN_READERS.get(column)
        return reader(self, record) if reader is not None else None

    def node_of(self, record):
        address = record.address
        where = node_of(address) if address else None
        return where or self.service.actors.host_node_of(record) or self.node_id

    def pending_reason(self, record):
        if record.state != "PENDING_CREATION":
            return None
        if self._pending is None:
            self._pending = {}
            for task, infeasible in self.service.ctx.scheduler.pending_tasks():
                actor_id = (task.spec.extra or {}).get("actor_id")
                if actor_id is not None:
                    self._pending[actor_id] = (task, infeasible)
        waiting = self._pending.get(record.actor_id)
        if waiting is None:
            return self.PLACED
        task, infeasible = waiting
        # The words depend on the task's resources alone while this query runs, and a search
        # reads them for every pending actor: word each shape once.
        key = (tuple(sorted(task.spec.resources.items())), infeasible)
        reason = self._reasons.get(key)
        if reason is None:
            reason = self._reasons[key] = self.service.ctx.scheduler.pending_reason(*waiting)
        return reason

    def search(self, query):
        """The text search's predicate over records: each record's shown columns (but its
        pending reason, which follows the node's load) are joined into one lower-case text,
        kept between queries until the record changes; None without a search."""
        text = query.args.get("text")
        if not text:
            return None
        needle, detail = text.lower(), query.detail
        columns = [c for c in (q.all_columns("actors") if detail else q.COLUMNS["actors"][0])
                   if c != "pending_reason"]
        texts = self.service.actor_texts
        if len(texts) > 2 * len(self.service.actors.actor_records()) + 1000:
            texts.clear()                 # actors that are gone
        readers = _ACTOR_COLUMN_READERS

        def match(record):
            version = (record.state, record.restarts, record.pid, record.address,
                       record.worker_id, record.name, record.death_cause)
            kept = texts.get(record.actor_id)
            if kept is None or kept[0] != version or kept[1] != detail:
                values = (readers[c](self, record) for c in columns)
                kept = texts[record.actor_id] = (version, detail, "\x00".join(
                    str(v).lower() for v in values if v is not None))
            if needle in kept[2]:
                return True
            reason = self.pending_reason(record)
            return reason is not None and needle in reason.lower()
        return match

    def row(self, record, detail):
        columns = q.all_columns("actors") if detail else q.COLUMNS["actors"][0]
        row = {c: _ACTOR_COLUMN_READERS[c](self, record) for c in columns}
        if row.get("pending_reason") is None:
            row.pop("pending_reason", None)       # as before: only pending actors have one
        return row


_ACTOR_COLUMN_READERS = {
    "actor_id": lambda c, r: r.actor_id.hex(),
    "class_name": lambda c, r: r.class_name,
    "state": lambda c, r: r.state,
    "job_id": lambda c, r: r.job_id,
    "name": lambda c, r: r.name or "",
    "node_id": _ActorColumns.node_of,
    "pid": lambda c, r: r.pid,
    "ray_namespace": lambda c, r: r.namespace,
    "death_cause": lambda c, r: _death_cause(r),
    "num_restarts": lambda c, r: r.restarts,
    "pending_reason": _ActorColumns.pending_reason,
    "is_detached": lambda c, r: bool(r.detached),
    "placement_group_id": lambda c, r: None,
    "repr_name": lambda c, r: "",
    "required_resources": lambda c, r: None,
    "max_restarts": lambda c, r: r.max_restarts,
    "worker_id": lambda c, r: r.worker_id,
    "home_node_id": lambda c, r: c.node_id,
}


def _matches(row, query):
    if not query.filters:
        return True
    return q.compile_filters(query.filters, q.dict_get)(row)


def _death_cause(record):
    if record.state != "DEAD" or record.death_cause is None:
        return None
    message, error_layout = record.death_cause
    if error_layout is not None:       # only a constructor that raised leaves its exception
        return {"creation_task_failure_context": {"error_message": message}}
    return {"actor_died_error_context": {"error_message": message,
                                         "reason": _death_reason(message)}}


def _death_reason(message):
    text = (message or "").lower()
    if "zray.kill" in text or "ray.kill" in text:
        return "RAY_KILL"
    if "out of scope" in text:
        return "OUT_OF_SCOPE"
    if "exited" in text:
        return "INTENDED_USER_EXIT" if "exit_actor" in text else "WORKER_DIED"
    if "job" in text:
        return "OWNER_DIED"
    if "node" in text:
        return "NODE_DIED"
    return "WORKER_DIED"


def _job_row(job_id, status, node_id, pid, start_ms, end_ms, ip=None):
    return {"job_id": job_id, "submission_id": None, "status": status, "type": "DRIVER",
            "entrypoint": "", "driver_node_id": node_id, "driver_pid": pid,
            "start_time": start_ms, "end_time": end_ms, "message": None, "error_type": None,
            "driver_info": {"id": job_id, "node_id": node_id, "node_ip_address": ip,
                            "pid": str(pid)},
            "metadata": {}, "runtime_env": {}}


def _now_ms():
    return int(time.time() * 1000)
