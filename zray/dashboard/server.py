"""The dashboard process of one node (`python -m zray.dashboard`, started by the node daemon,
dashboard/launch.py): the web pages, their JSON API, Ray's Jobs REST API, Prometheus text at
`/metrics`, and the metrics ring (metrics_ring.py) it samples every 2 s.

Idle cost: one HTTP thread blocked in select and one sampler waking every 2 s (a CLUSTER_INFO
and a STORE_STATS query plus /proc reads of the node's processes). It connects to the cluster
as a driver only when a request needs one (jobs, breakpoints), so a node nobody looks at pays
nothing more.
"""
import logging
import os
import select
import threading
import time

from .. import __version__
from ..job.manager import JobError, JobManager, JobNotFound
from . import data as data_mod
from .http import HttpError, Response, Routes, WebSocket, json_response
from .metrics_ring import MetricsRing, RingConfig

log = logging.getLogger("zray.dashboard")

RAY_COMPATIBLE_VERSION = "2.60.0"   # what /api/version reports so Ray's clients accept us
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}


class Dashboard:
    def __init__(self, node_info, url="", token=None, ring=None):
        self.node = node_info
        self.url = url
        self.token = token
        self.data = data_mod.ClusterData(node_info)
        self.ring = ring or MetricsRing(RingConfig())
        self.jobs = JobManager(node_info["node_file"], url, token)
        self._driver_lock = threading.Lock()
        self._connected = False
        self._stop = threading.Event()

    # -- the driver, on demand -------------------------------------------------------------------
    def connect(self):
        """Join the cluster as a driver (once): jobs and breakpoints need the public API."""
        with self._driver_lock:
            if not self._connected:
                import zray
                zray.init(address=self.node["node_file"], namespace="_zray_dashboard")
                self._connected = True

    # -- routes ----------------------------------------------------------------------------------
    def routes(self):
        r = Routes()
        r.add("GET", "/", self.page_index)
        r.add("GET", "/static/{name}", self.static)
        r.add("GET", "/api/version", self.version)
        r.add("GET", "/api/cluster", lambda req: json_response(self.data.cluster()))
        for resource in ("actors", "tasks", "objects", "placement_groups", "workers", "nodes"):
            r.add("GET", f"/api/{resource}", self._listing_handler(resource))
        r.add("GET", "/api/summary/{resource}", self.summary)
        r.add("GET", "/api/counts/{resource}", self.counts)
        r.add("GET", "/api/timeline", lambda req: json_response(self.data.timeline()))
        r.add("GET", "/api/logs", self.log_files)
        r.add("GET", "/api/logs/file", self.log_file)
        r.add("GET", "/api/metrics/history", self.metrics_history)
        r.add("GET", "/api/breakpoints", self.breakpoints)
        r.add("GET", "/api/dashboard/jobs", self.all_jobs)
        r.add("GET", "/api/serve", self.serve_status)
        r.add("GET", "/metrics", self.prometheus)
        # Ray's Jobs REST API
        r.add("GET", "/api/jobs/", self.list_jobs)
        r.add("GET", "/api/jobs", self.list_jobs)
        r.add("POST", "/api/jobs/", self.submit_job)
        r.add("POST", "/api/jobs", self.submit_job)
        r.add("GET", "/api/jobs/{job_id}", self.get_job)
        r.add("DELETE", "/api/jobs/{job_id}", self.delete_job)
        r.add("POST", "/api/jobs/{job_id}/stop", self.stop_job)
        r.add("GET", "/api/jobs/{job_id}/logs", self.job_logs)
        r.add("GET", "/api/jobs/{job_id}/logs/tail", self.tail_job_logs)
        r.add("GET", "/api/packages/{protocol}/{name}", self.package_exists)
        r.add("PUT", "/api/packages/{protocol}/{name}", self.upload_package)
        return r

    # -- pages -----------------------------------------------------------------------------------
    def page_index(self, req):
        return self._file("index.html")

    def static(self, req):
        return self._file(req.params["name"])

    def _file(self, name):
        if "/" in name or name.startswith("."):
            raise HttpError(404, f"no such file: {name}")
        path = os.path.join(STATIC, name)
        try:
            with open(path, "rb") as f:
                body = f.read()
        except FileNotFoundError:
            raise HttpError(404, f"no such file: {name}") from None
        return Response(200, body, _CONTENT_TYPES.get(os.path.splitext(name)[1],
                                                      "application/octet-stream"))

    def version(self, req):
        return json_response({"version": "4", "ray_version": RAY_COMPATIBLE_VERSION,
                              "ray_commit": "zray", "zray_version": __version__,
                              "session_name": os.path.basename(self.node["session"])})

    # -- listings --------------------------------------------------------------------------------
    _FILTERS = ("state", "node_id", "name", "class_name", "type", "job_id", "actor_id",
                "func_or_class_name", "ray_namespace", "is_alive", "worker_type")

    def _listing_handler(self, resource):
        def handler(req):
            filters = {k: req.query[k] for k in self._FILTERS if req.query.get(k)}
            try:
                return json_response(self.data.page(
                    resource, filters, req.arg("offset", 0), req.arg("limit", 100), req.arg("q"),
                    detail=req.arg("detail") in ("1", "true"),
                    counts=req.arg("counts", "1") != "0"))
            except ValueError as exc:
                raise HttpError(400, str(exc)) from None
        return handler

    def counts(self, req):
        resource = req.params["resource"]
        if resource not in ("actors", "tasks", "placement_groups"):
            raise HttpError(404, f"no state counts of {resource!r}")
        filters = [(k, "=", req.query[k]) for k in self._FILTERS
                   if req.query.get(k) and k != "state"]
        try:
            return json_response(self.data.state_counts(resource, filters))
        except ValueError as exc:
            raise HttpError(400, str(exc)) from None

    def summary(self, req):
        resource = req.params["resource"]
        if resource not in ("tasks", "actors", "objects"):
            raise HttpError(404, f"no summary of {resource!r} (tasks, actors, objects)")
        return json_response(self.data.summary(resource))

    def log_files(self, req):
        return json_response(self.data.log_files(req.arg("node_id")))

    def log_file(self, req):
        try:
            lines = int(req.arg("lines", 1000))
            return json_response(self.data.log_tail(req.arg("node_id"), req.arg("name"),
                                                    max(1, min(lines, 100_000))))
        except ValueError as exc:
            raise HttpError(404, str(exc)) from None

    def serve_status(self, req):
        """Serve's applications, deployments and proxies, from its controller (if any)."""
        self.connect()
        import zray
        from ..serve import handle
        handle.forget_controller()          # never a handle of a controller that is gone
        controller = handle.get_controller(check=False)
        if controller is None:
            return json_response({"running": False, "applications": {}, "proxies": {}})
        try:
            raw = zray.get(controller.get_status.remote(), timeout=30)
        except Exception as exc:   # the controller died or is shutting down: say so
            return json_response({"running": False, "applications": {}, "proxies": {},
                                  "error": f"{type(exc).__name__}: {exc}"})
        return json_response(dict(raw, running=True))

    def all_jobs(self, req):
        """Submitted jobs (their records) and the drivers of the mesh that no submission
        started (the state API's job rows; a submission's driver is in its row)."""
        drivers = [r for r in self.data.rows("jobs", detail=True) if r.get("type") == "DRIVER"]
        submissions = []
        if self._connected or req.arg("submissions", "1") == "1":
            submissions = [i.to_json() for i in self._job_call(self.jobs.list)]
        return json_response({"submissions": submissions, "drivers": drivers})

    def metrics_history(self, req):
        try:
            since = float(req.arg("since", 0))
        except ValueError:
            raise HttpError(400, "since must be a number (seconds since the epoch)") from None
        return json_response({"interval_s": self.ring.config.interval_s,
                              "samples": self.ring.since(since)})

    def breakpoints(self, req):
        self.connect()
        from ..util.debug import registry
        return json_response(registry.list_breakpoints())

    def prometheus(self, req):
        return Response(200, self.data.metrics_text().encode(),
                        "text/plain; version=0.0.4; charset=utf-8")

    # -- jobs ------------------------------------------------------------------------------------
    def _job_call(self, fn, *args, **kwargs):
        self.connect()
        try:
            return fn(*args, **kwargs)
        except JobNotFound as exc:
            raise HttpError(404, str(exc)) from None
        except JobError as exc:
            raise HttpError(400, str(exc)) from None

    def list_jobs(self, req):
        """Ray's GET /api/jobs/: every job of the mesh, whichever node is asked: the submitted
        ones (records in the cluster key-value store) and, as type DRIVER, the drivers that
        were started by hand (zray.init() in a script), from every node's state answer."""
        submissions = [i.to_json() for i in self._job_call(self.jobs.list)]
        drivers = [_driver_details(r) for r in self.data.rows("jobs", detail=True)
                   if r.get("type") == "DRIVER"]
        return json_response(submissions + drivers)

    def submit_job(self, req):
        body = req.json()
        if not isinstance(body, dict):
            raise HttpError(400, "the submit request must be a JSON object")
        sid = self._job_call(self.jobs.submit, **body)
        return json_response({"submission_id": sid, "job_id": sid})

    def get_job(self, req):
        return json_response(self._job_call(self.jobs.get, req.params["job_id"]).to_json())

    def stop_job(self, req):
        return json_response({"stopped": self._job_call(self.jobs.stop, req.params["job_id"])})

    def delete_job(self, req):
        return json_response({"deleted": self._job_call(self.jobs.delete, req.params["job_id"])})

    def job_logs(self, req):
        try:
            offset = max(0, int(req.arg("offset", 0)))
        except ValueError:
            raise HttpError(400, "offset must be an int") from None
        return json_response({"logs": self._job_call(self.jobs.logs, req.params["job_id"], offset)})

    def tail_job_logs(self, req):
        sid = req.params["job_id"]
        self._job_call(self.jobs.get, sid)            # 404 before the upgrade
        ws = WebSocket.accept(req)
        try:
            for chunk in self.jobs.follow(sid, should_stop=ws.peer_closed):
                ws.send_text(chunk)
        except OSError:
            return None
        ws.close()
        return None

    def package_exists(self, req):
        path = self._package_path(req)
        if not os.path.isfile(path):
            raise HttpError(404, f"package {req.params['name']} is not here")
        return json_response({"exists": True})

    def upload_package(self, req):
        path = self._package_path(req)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(req.body)
        os.replace(tmp, path)
        return json_response({"uploaded": True})

    def _package_path(self, req):
        name = req.params["name"]
        if "/" in name or name.startswith(".") or not name.endswith(".zip"):
            raise HttpError(400, f"a package name is a .zip file name, got {name!r}")
        return os.path.join(self.node["session"], "packages", name)

    # -- the sampler ------------------------------------------------------------------------------
    def sample_forever(self):
        import psutil
        procs = {}
        while not self._stop.wait(self.ring.config.interval_s if len(self.ring) else 0.05):
            try:
                self.ring.add(self._sample(psutil, procs))
            except Exception as exc:   # the node is going away, or busy: try again next turn
                log.debug("metrics sample failed: %s", exc)

    def _sample(self, psutil, procs):
        from ..node import local_node
        from ..transport import wire
        info = local_node.query(wire.CLUSTER_INFO, self.node, timeout=5)
        store = local_node.query(wire.STORE_STATS, self.node, timeout=5)
        pids = {info["daemon_pid"], *info.get("worker_pids", ())}
        cpu = memory = 0.0
        for pid in pids:
            proc = procs.get(pid)
            try:
                if proc is None:
                    proc = procs[pid] = psutil.Process(pid)
                    proc.cpu_percent(None)
                cpu += proc.cpu_percent(None)
                memory += proc.memory_info().rss
            except psutil.Error:
                procs.pop(pid, None)
        for pid in list(procs):
            if pid not in pids:
                procs.pop(pid)
        vm = psutil.virtual_memory()
        return {"time": time.time(), "cpu_percent": round(cpu, 1), "memory_bytes": int(memory),
                "host_memory_used_bytes": int(vm.total - vm.available),
                "host_memory_total_bytes": int(vm.total),
                "store_used_bytes": store.get("used", 0),
                "store_capacity_bytes": store.get("capacity", 0),
                "store_objects": store.get("num_objects", 0), "workers": info.get("workers", 0),
                "queued_tasks": info.get("queued", 0),
                "tasks_finished": info.get("tasks_finished", 0)}

    def stop(self):
        self._stop.set()


def _driver_details(row):
    """A driver's state row as Ray's JobDetails of type DRIVER (no submission id)."""
    return {"type": "DRIVER", "job_id": row.get("job_id"), "submission_id": None,
            "status": row.get("status"), "entrypoint": row.get("entrypoint") or "",
            "message": row.get("message"), "error_type": row.get("error_type"),
            "start_time": row.get("start_time"), "end_time": row.get("end_time"),
            "metadata": row.get("metadata") or {}, "runtime_env": row.get("runtime_env") or {},
            "driver_info": row.get("driver_info"), "driver_node_id": row.get("driver_node_id"),
            "driver_agent_http_address": None, "driver_exit_code": None}


def watch_daemon(pid, on_exit):
    """Call on_exit() when the node daemon `pid` exits (a pidfd: no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        on_exit()
        return

    def watch():
        try:
            select.select([fd], [], [])
        finally:
            os.close(fd)
        on_exit()
    threading.Thread(target=watch, name="zray-dashboard-daemon-watch", daemon=True).start()
