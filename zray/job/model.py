"""A submitted job's record and the rules for changing it, I/O-free.

A job is PENDING from the submit until its supervisor starts the entrypoint (RUNNING); it ends
SUCCEEDED (exit code 0), FAILED (non-zero exit, a supervisor that died or never started, a bad
runtime_env) or STOPPED (a stop, also while it was still PENDING). Terminal states never
change again, which is what makes the races between a stop, the supervisor's own report and
the start deadline harmless: the first terminal write wins.

Records carry Ray's `JobDetails` field names (Ray's `JobSubmissionClient` reads them) and are
kept as JSON in the cluster key-value store (namespace `JOBS_NAMESPACE`, key: the submission
id), so any node's dashboard answers for every job.
"""
import re
import time
from dataclasses import asdict, dataclass, field, replace

JOBS_NAMESPACE = "_zray_jobs"
DRIVERS_NAMESPACE = "_zray_job_drivers"   # submission id -> the job_id of its driver
PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED = "PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED"
TERMINAL = frozenset({STOPPED, SUCCEEDED, FAILED})
_SUBMISSION_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class JobError(ValueError):
    """A job request that cannot be carried out (unknown id, bad arguments, wrong state)."""


def now_ms():
    return int(time.time() * 1000)


def new_submission_id():
    import os
    return "zraysubmit_" + os.urandom(8).hex()


def check_submission_id(submission_id):
    if not isinstance(submission_id, str) or not _SUBMISSION_ID.match(submission_id):
        raise JobError(f"submission_id must be 1-128 characters of letters, digits, '_', '.', "
                       f"'-', got {submission_id!r}")
    return submission_id


@dataclass(frozen=True)
class JobInfo:
    submission_id: str
    entrypoint: str
    status: str = PENDING
    type: str = "SUBMISSION"
    job_id: str = None
    message: str = "Job has not started yet."
    error_type: str = None
    start_time: int = None           # ms since the epoch, as Ray
    end_time: int = None
    metadata: dict = field(default_factory=dict)
    runtime_env: dict = field(default_factory=dict)
    entrypoint_num_cpus: float = 0
    entrypoint_num_gpus: float = 0
    entrypoint_resources: dict = field(default_factory=dict)
    driver_agent_http_address: str = None   # the dashboard of the node that runs the entrypoint
    driver_node_id: str = None
    driver_exit_code: int = None
    log_path: str = None

    @property
    def terminal(self):
        return self.status in TERMINAL

    def to_json(self):
        return asdict(self)

    @classmethod
    def from_json(cls, value):
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in value.items() if k in known})


def state_row(info):
    """The state API's row (list_jobs) of a submitted job, with Ray's columns; the node and pid
    of its driver join it from the driver's own row (zray/state/query.py, join_jobs)."""
    return {"job_id": info.job_id, "submission_id": info.submission_id, "status": info.status,
            "type": "SUBMISSION", "entrypoint": info.entrypoint,
            "driver_node_id": info.driver_node_id, "driver_pid": None,
            "start_time": info.start_time, "end_time": info.end_time, "message": info.message,
            "error_type": info.error_type, "driver_info": None, "metadata": info.metadata,
            "runtime_env": info.runtime_env}


def started(info, node_id, http_address, log_path):
    """The supervisor started the entrypoint; None if the job already ended (a stop won)."""
    if info.terminal:
        return None
    return replace(info, status=RUNNING, message="Job is currently running.",
                   start_time=info.start_time or now_ms(), driver_node_id=node_id,
                   driver_agent_http_address=http_address, log_path=log_path)


def finished(info, exit_code, stopped):
    """The entrypoint exited with `exit_code` (stopped: because of a stop)."""
    if info.terminal:
        return None
    if stopped:
        return replace(info, status=STOPPED, message="Job was intentionally stopped.",
                       end_time=now_ms(), driver_exit_code=exit_code)
    if exit_code == 0:
        return replace(info, status=SUCCEEDED, message="Job finished successfully.",
                       end_time=now_ms(), driver_exit_code=0)
    return replace(info, status=FAILED, end_time=now_ms(), driver_exit_code=exit_code,
                   error_type="JOB_ENTRYPOINT_COMMAND_ERROR",
                   message=f"Job entrypoint command failed with exit code {exit_code}.")


def stopped_before_start(info):
    if info.terminal:
        return None
    return replace(info, status=STOPPED, end_time=now_ms(),
                   message="Job was stopped before its entrypoint started.")


def failed(info, message, error_type="JOB_SUPERVISOR_ACTOR_START_FAILURE"):
    """The job cannot run (its supervisor died, never started, or the runtime_env is bad)."""
    if info.terminal:
        return None
    return replace(info, status=FAILED, end_time=now_ms(), message=message, error_type=error_type)
