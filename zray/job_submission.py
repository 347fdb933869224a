"""`zray.job_submission`: submit and watch jobs over the dashboard's Jobs REST API, with the
names of `ray.job_submission` (`JobSubmissionClient`, `JobStatus`, `JobDetails`, `JobInfo`).

    client = JobSubmissionClient("http://127.0.0.1:8265")   # or None: this host's node
    sid = client.submit_job(entrypoint="python script.py", runtime_env={"working_dir": "./"})
    client.get_job_status(sid); client.get_job_logs(sid); client.stop_job(sid)

The standard library only (urllib). A local `working_dir` and local `py_modules` are zipped
(leaving out the runtime_env's `excludes`) and uploaded once each (by the hash of their
contents), and a `pip` requirements file is read here, as Ray's client does. A dashboard bound beyond loopback wants the
cluster's token: pass headers={"Authorization": "Bearer <token>"}, or let the client find it
from this host's node (ZRAY_DASHBOARD_TOKEN, else derived from the node's cluster secret).
"""
import asyncio
import enum
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

__all__ = ["JobSubmissionClient", "JobStatus", "JobDetails", "JobInfo", "JobType"]

REQUEST_TIMEOUT_S = 60.0


class JobStatus(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def __str__(self):
        return self.value

    def is_terminal(self):
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


class JobType(str, enum.Enum):
    SUBMISSION = "SUBMISSION"
    DRIVER = "DRIVER"


@dataclass
class JobDetails:
    status: JobStatus
    entrypoint: str
    submission_id: str = None
    type: str = "SUBMISSION"
    job_id: str = None
    message: str = None
    error_type: str = None
    start_time: int = None
    end_time: int = None
    metadata: dict = field(default_factory=dict)
    runtime_env: dict = field(default_factory=dict)
    driver_agent_http_address: str = None
    driver_node_id: str = None
    driver_exit_code: int = None
    entrypoint_num_cpus: float = 0
    entrypoint_num_gpus: float = 0
    entrypoint_resources: dict = field(default_factory=dict)
    driver_info: dict = None          # a DRIVER job's: {"id", "node_id", "pid"}

    @classmethod
    def from_json(cls, value):
        known = set(cls.__dataclass_fields__)
        kept = {k: v for k, v in value.items() if k in known}
        kept["status"] = JobStatus(kept["status"])
        return cls(**kept)


JobInfo = JobDetails


def _local_dashboard():
    """(url, token or None) of this host's node (ZRAY_ADDRESS / the only one)."""
    from .core import runtime
    from .dashboard.launch import dashboard_token, read_dashboard_info
    from .node import local_node
    if runtime.is_connected():      # this driver's own node (a private one has no node file)
        with open(os.path.join(runtime.current().session_dir, "node.json")) as f:
            info = json.load(f)
    else:
        info = local_node.find_node(None)
    dash = read_dashboard_info(info["session"])
    if not dash:
        raise ConnectionError(f"the zray node {local_node.describe(info)} runs no dashboard "
                              "(it was started with include_dashboard=False)")
    token = dashboard_token(info["session"], info.get("secret_file")) \
        if dash.get("token_required") else None
    return dash["url"], token


class JobSubmissionClient:
    def __init__(self, address=None, create_cluster_if_needed=False, cookies=None,
                 metadata=None, headers=None, verify=True, timeout=REQUEST_TIMEOUT_S):
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a str, got {type(address).__name__}")
        if headers is not None and not isinstance(headers, dict):
            raise TypeError(f"headers must be a dict, got {type(headers).__name__}")
        self._headers = dict(headers or {})
        self._default_metadata = dict(metadata or {})
        self._timeout = timeout
        address = address or os.environ.get("ZRAY_DASHBOARD_ADDRESS")
        if address is None or address in ("auto",) or not address.startswith(("http://", "https://")):
            url, token = _local_dashboard()
            address = url
            if token and not any(k.lower() == "authorization" for k in self._headers):
                self._headers["Authorization"] = f"Bearer {token}"
        env_token = os.environ.get("ZRAY_DASHBOARD_TOKEN")
        if env_token and not any(k.lower() == "authorization" for k in self._headers):
            self._headers["Authorization"] = f"Bearer {env_token}"
        self._address = address.rstrip("/")
        version = self._request("GET", "/api/version")
        self.server_version = version.get("zray_version") or version.get("ray_version")

    def get_address(self):
        return self._address

    # -- HTTP ------------------------------------------------------------------------------------
    def _request(self, method, path, body=None, raw=None, ok_404=False):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self._address + path, data=data, method=method,
                                         headers=dict(self._headers))
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            if ok_404 and exc.code == 404:
                return None
            try:
                text = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                pass
            raise RuntimeError(f"Request failed with status code {exc.code}: {text}") from None
        except urllib.error.URLError as exc:
            raise ConnectionError(f"cannot reach the zray dashboard at {self._address}: "
                                  f"{exc.reason}") from None

    # -- jobs ------------------------------------------------------------------------------------
    def submit_job(self, *, entrypoint, job_id=None, runtime_env=None, metadata=None,
                   submission_id=None, entrypoint_num_cpus=None, entrypoint_num_gpus=None,
                   entrypoint_memory=None, entrypoint_resources=None):
        runtime_env = dict(runtime_env or {})
        excludes = runtime_env.get("excludes") or ()
        if not isinstance(excludes, (list, tuple)):
            excludes = ()       # the server names the error
        uploaded = False
        working_dir = runtime_env.get("working_dir")
        if isinstance(working_dir, (str, os.PathLike)) and "://" not in str(working_dir):
            runtime_env["working_dir"] = self._upload(working_dir, excludes, "working_dir")
            uploaded = True
        modules = runtime_env.get("py_modules")
        if isinstance(modules, (list, tuple)):
            local = [isinstance(m, (str, os.PathLike)) and "://" not in str(m) for m in modules]
            runtime_env["py_modules"] = [self._upload(m, excludes, "py_modules") if is_local
                                         else m for m, is_local in zip(modules, local)]
            uploaded = uploaded or any(local)
        if uploaded:        # the excludes were applied to what was uploaded
            runtime_env.pop("excludes", None)
        if isinstance(runtime_env.get("pip"), (str, os.PathLike)):   # a local requirements file
            from .runtime_env.spec import check
            runtime_env["pip"] = check({"pip": runtime_env["pip"]})["pip"]
        body = {"entrypoint": entrypoint, "submission_id": submission_id or job_id,
                "runtime_env": runtime_env,
                "metadata": dict(self._default_metadata, **(metadata or {})),
                "entrypoint_num_cpus": entrypoint_num_cpus,
                "entrypoint_num_gpus": entrypoint_num_gpus,
                "entrypoint_memory": entrypoint_memory,
                "entrypoint_resources": entrypoint_resources}
        body = {k: v for k, v in body.items() if v is not None}
        return self._request("POST", "/api/jobs/", body)["submission_id"]

    def _upload(self, path, excludes, field):
        """A local directory (or, for py_modules, a .py or .zip file) zipped with the runtime_env's
        excludes and uploaded once: its package URI. A py_modules directory keeps its name."""
        from .runtime_env.packaging import archive, read_zip
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if field == "working_dir" and not os.path.isdir(path):
            raise ValueError(f"working_dir {path!r} is not a directory")
        if field == "py_modules" and not (os.path.isdir(path) or path.endswith((".py", ".zip"))
                                          and os.path.isfile(path)):
            raise ValueError(f"py_modules entry {path!r} is not a directory, a .py or a .zip file")
        if path.endswith(".zip") and os.path.isfile(path):
            blob, _ = read_zip(path)
        else:
            top = os.path.basename(path) if field == "py_modules" and os.path.isdir(path) else None
            blob, _ = archive(path, tuple(excludes) + ("__pycache__/", ".git/"), top=top)
        name = f"_ray_pkg_{hashlib.sha1(blob).hexdigest()}.zip"
        if self._request("GET", f"/api/packages/gcs/{name}", ok_404=True) is None:
            self._request("PUT", f"/api/packages/gcs/{name}", raw=blob)
        return f"gcs://{name}"

    def get_job_info(self, job_id):
        return JobDetails.from_json(self._request("GET", f"/api/jobs/{job_id}"))

    def list_jobs(self):
        return [JobDetails.from_json(j) for j in self._request("GET", "/api/jobs/")]

    def get_job_status(self, job_id):
        return self.get_job_info(job_id).status

    def get_job_logs(self, job_id):
        return self._request("GET", f"/api/jobs/{job_id}/logs")["logs"]

    def stop_job(self, job_id):
        return self._request("POST", f"/api/jobs/{job_id}/stop")["stopped"]

    def delete_job(self, job_id):
        return self._request("DELETE", f"/api/jobs/{job_id}")["deleted"]

    def follow_logs(self, job_id, poll_s=0.25):
        """Yield the job's output as it grows, until the job ended (a plain generator)."""
        offset = 0
        while True:
            status = self.get_job_status(job_id)
            chunk = self._request("GET", f"/api/jobs/{job_id}/logs?offset={offset}")["logs"]
            if chunk:
                offset += len(chunk.encode())
                yield chunk
            if status.is_terminal():
                rest = self._request("GET", f"/api/jobs/{job_id}/logs?offset={offset}")["logs"]
                if rest:
                    yield rest
                return
            time.sleep(poll_s)

    async def tail_job_logs(self, job_id):
        """Ray's async iterator over the job's output."""
        iterator = self.follow_logs(job_id)
        while True:
            chunk = await asyncio.to_thread(next, iterator, None)
            if chunk is None:
                return
            yield chunk
