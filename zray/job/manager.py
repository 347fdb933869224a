"""Submitting, watching and stopping jobs (Ray's JobManager), on the public API: a job is a
record in the cluster key-value store (model.py) plus a detached supervisor actor
(supervisor.py) pinned to this node. The dashboard's REST handlers and `zray job` call this.

No job stays PENDING forever: the submit writes PENDING, then creates the supervisor; if the
supervisor does not answer within `start_timeout_s` (ZRAY_JOB_START_TIMEOUT_S, default 60 s:
its resources are nowhere free, its constructor failed, its node died) the job becomes FAILED
with the reason and the actor is killed. A stop of a PENDING job writes STOPPED first and then
stops or kills the supervisor, which checks its flag before it starts anything.
"""
import json
import logging
import os
import threading
import time

from . import model
from .model import JobError, JobInfo
from .runtime_env import resolve

log = logging.getLogger("zray.job")

START_TIMEOUT_S = float(os.environ.get("ZRAY_JOB_START_TIMEOUT_S", "60"))
FOLLOW_POLL_S = 0.2


def note_driver(core, submission_id, job_id):
    """A job's entrypoint connected as a driver (zray.init() with ZRAY_JOB_SUBMISSION_ID set):
    remember its job_id, which the job's record then shows (and its tasks are found by)."""
    from ..core import runtime
    try:
        runtime.current().kv.put(submission_id, job_id.encode(),
                                 namespace=model.DRIVERS_NAMESPACE, timeout=10)
    except Exception as exc:   # the link is for display only; the job runs on
        log.warning("could not link job %s to its driver: %s", submission_id, exc)


def packages_dir():
    """Where this node's dashboard keeps uploaded packages (gcs://_ray_pkg_*.zip)."""
    from ..core import runtime
    return os.path.join(runtime.current().session_dir, "packages")


def supervisor_name(submission_id):
    return f"_zray_job_supervisor_{submission_id}"


class JobNotFound(JobError):
    pass


class JobManager:
    def __init__(self, node_file, http_address="", token=None, start_timeout_s=START_TIMEOUT_S):
        """`node_file`: the node's info file the entrypoints connect with (ZRAY_ADDRESS);
        `http_address`: this node's dashboard, where the logs of jobs run here are read."""
        self.node_file = node_file
        self.http_address = http_address
        self.token = token
        self.start_timeout_s = start_timeout_s
        self._monitors = {}

    # -- records ---------------------------------------------------------------------------------
    @staticmethod
    def _kv():
        from ..core import runtime
        return runtime.current().kv

    def _put(self, info):
        self._kv().put(info.submission_id, json.dumps(info.to_json()).encode(),
                       namespace=model.JOBS_NAMESPACE)

    def get(self, submission_id):
        if not isinstance(submission_id, str) or not submission_id:
            raise JobNotFound(f"job {submission_id!r} does not exist")
        raw = self._kv().get(submission_id, namespace=model.JOBS_NAMESPACE)
        if raw is None:
            raise JobNotFound(f"job {submission_id!r} does not exist")
        return self._with_driver(JobInfo.from_json(json.loads(raw)))

    def _with_driver(self, info):
        if info.job_id is None:
            driver = self._kv().get(info.submission_id, namespace=model.DRIVERS_NAMESPACE)
            if driver:
                from dataclasses import replace
                info = replace(info, job_id=driver.decode())
        return info

    def _transition(self, submission_id, change, *args):
        """Apply a model transition to the stored record; the new record or None."""
        new = change(self.get(submission_id), *args)
        if new is not None:
            self._put(new)
        return new

    def list(self):
        infos = []
        for key in self._kv().keys(namespace=model.JOBS_NAMESPACE):
            raw = self._kv().get(key, namespace=model.JOBS_NAMESPACE)
            if raw is not None:
                infos.append(self._with_driver(JobInfo.from_json(json.loads(raw))))
        return sorted(infos, key=lambda i: (i.start_time or 0, i.submission_id))

    # -- submit ----------------------------------------------------------------------------------
    def submit(self, entrypoint, submission_id=None, runtime_env=None, metadata=None,
               entrypoint_num_cpus=None, entrypoint_num_gpus=None, entrypoint_resources=None,
               entrypoint_memory=None, **ignored):
        if not isinstance(entrypoint, str) or not entrypoint.strip():
            raise JobError(f"entrypoint must be a non-empty shell command, got {entrypoint!r}")
        submission_id = model.check_submission_id(submission_id or model.new_submission_id())
        runtime_env = runtime_env or {}
        resolve(runtime_env, packages_dir())      # the checks only; the record keeps it as given
        if metadata is not None and not isinstance(metadata, dict):
            raise JobError(f"metadata must be a dict, got {type(metadata).__name__}")
        for name, value in (("entrypoint_num_cpus", entrypoint_num_cpus),
                            ("entrypoint_num_gpus", entrypoint_num_gpus)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or value < 0):
                raise JobError(f"{name} must be a number >= 0, got {value!r}")
        if entrypoint_resources is not None and not isinstance(entrypoint_resources, dict):
            raise JobError("entrypoint_resources must be a dict of resource name to amount")
        info = JobInfo(submission_id=submission_id, entrypoint=entrypoint,
                       runtime_env=runtime_env, metadata=metadata or {},
                       entrypoint_num_cpus=entrypoint_num_cpus or 0,
                       entrypoint_num_gpus=entrypoint_num_gpus or 0,
                       entrypoint_resources=entrypoint_resources or {},
                       start_time=model.now_ms())
        created = self._kv().put(submission_id, json.dumps(info.to_json()).encode(),
                                 namespace=model.JOBS_NAMESPACE, overwrite=False)
        if not created:
            raise JobError(f"job with submission_id {submission_id!r} already exists; "
                           "choose another submission_id")
        try:
            supervisor = self._create_supervisor(info)
        except Exception as exc:   # the submit must not leave the job PENDING
            self._transition(submission_id, model.failed,
                             f"the job's supervisor could not be created: {exc}")
            return submission_id
        monitor = threading.Thread(target=self._monitor, args=(info, supervisor),
                                   name=f"zray-job-{submission_id}", daemon=True)
        self._monitors[submission_id] = monitor
        monitor.start()
        return submission_id

    def _create_supervisor(self, info):
        import zray
        from ..core import runtime
        from ..util.scheduling_strategies import NodeAffinitySchedulingStrategy
        from .supervisor import JobSupervisor
        options = dict(name=supervisor_name(info.submission_id), namespace=model.JOBS_NAMESPACE,
                       lifetime="detached", max_concurrency=4,
                       num_cpus=info.entrypoint_num_cpus, num_gpus=info.entrypoint_num_gpus,
                       scheduling_strategy=NodeAffinitySchedulingStrategy(
                           runtime.current().node_id, soft=False))
        if info.entrypoint_resources:
            options["resources"] = info.entrypoint_resources
        actor_cls = zray.remote(JobSupervisor).options(**options)
        return actor_cls.remote(info.to_json(), self.node_file, self.http_address)

    def _monitor(self, info, supervisor):
        """Start the job, or fail it; then wait for its end (a supervisor that dies fails it)."""
        import zray
        sid = info.submission_id
        try:
            ready, _ = zray.wait([supervisor.ping.remote()], timeout=self.start_timeout_s)
            if not ready:
                self._kill(supervisor)
                self._transition(sid, model.failed,
                                 f"the job's supervisor did not start within "
                                 f"{self.start_timeout_s:.0f}s (are the entrypoint's resources "
                                 f"{self._wanted(info)} free on this node?)")
                return
            zray.get(ready[0])
            zray.get(supervisor.run.remote())
        except JobNotFound:
            pass
        except Exception as exc:   # the supervisor or its node died
            try:
                self._transition(sid, model.failed, f"the job's supervisor died: {exc}",
                                 "JOB_SUPERVISOR_ACTOR_DIED")
            except JobNotFound:
                pass
        finally:
            self._kill(supervisor)
            self._monitors.pop(sid, None)

    @staticmethod
    def _wanted(info):
        wanted = {"CPU": info.entrypoint_num_cpus, "GPU": info.entrypoint_num_gpus}
        wanted.update(info.entrypoint_resources)
        return {k: v for k, v in wanted.items() if v}

    @staticmethod
    def _kill(supervisor):
        import zray
        try:
            zray.kill(supervisor)
        except Exception as exc:   # already gone
            log.debug("killing a job supervisor: %s", exc)

    # -- stop / delete ---------------------------------------------------------------------------
    def stop(self, submission_id):
        """True if the job was PENDING or RUNNING (it is STOPPED now or soon)."""
        import zray
        info = self.get(submission_id)
        if info.terminal:
            return False
        supervisor = self._supervisor(submission_id)
        if info.status == model.PENDING:
            # Written first: a supervisor that starts later reads it and runs nothing.
            self._transition(submission_id, model.stopped_before_start)
            if supervisor is not None:
                try:
                    supervisor.stop.remote()
                finally:
                    self._kill(supervisor)
            return True
        if supervisor is None:
            self._transition(submission_id, model.finished, None, True)
            return True
        try:
            zray.get(supervisor.stop.remote(), timeout=30)
        except Exception as exc:   # it died meanwhile: the job ends with it
            log.info("stopping job %s: %s", submission_id, exc)
            self._kill(supervisor)
            self._transition(submission_id, model.finished, None, True)
        return True

    def delete(self, submission_id):
        info = self.get(submission_id)
        if not info.terminal:
            raise JobError(f"job {submission_id!r} is {info.status}; stop it before deleting it "
                           "(only jobs in a terminal state can be deleted)")
        self._kv().delete(submission_id, namespace=model.JOBS_NAMESPACE)
        self._kv().delete(submission_id, namespace=model.DRIVERS_NAMESPACE)
        if info.log_path and self._is_local(info):
            try:
                os.unlink(info.log_path)
            except OSError:
                pass
        return True

    @staticmethod
    def _supervisor(submission_id):
        import zray
        try:
            return zray.get_actor(supervisor_name(submission_id), namespace=model.JOBS_NAMESPACE)
        except ValueError:
            return None

    # -- logs ------------------------------------------------------------------------------------
    @staticmethod
    def _is_local(info):
        from ..core import runtime
        return info.driver_node_id in (None, runtime.current().node_id)

    def logs(self, submission_id, offset=0):
        """What the entrypoint printed from byte `offset` on ("" while it is PENDING)."""
        info = self.get(submission_id)
        if not info.log_path:
            return ""
        if self._is_local(info):
            try:
                with open(info.log_path, "rb") as f:
                    f.seek(offset)
                    return f.read().decode(errors="replace")
            except FileNotFoundError:
                return ""
        return self._remote_logs(info, offset)

    def _remote_logs(self, info, offset):
        """A job that runs on another node: that node's dashboard reads its file."""
        import urllib.request
        url = f"{info.driver_agent_http_address}/api/jobs/{info.submission_id}/logs?offset={offset}"
        request = urllib.request.Request(url)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["logs"]

    def follow(self, submission_id, should_stop=lambda: False):
        """Yield the logs as they grow, until the job ended and all was read."""
        offset = 0
        while True:
            info = self.get(submission_id)
            chunk = self.logs(submission_id, offset)
            if chunk:
                offset += len(chunk.encode())
                yield chunk
            if info.terminal:
                tail = self.logs(submission_id, offset)
                if tail:
                    yield tail
                return
            if should_stop():
                return
            time.sleep(FOLLOW_POLL_S)
