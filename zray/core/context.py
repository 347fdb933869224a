"""What every part of the runtime reads about its process: who it is and what runs now."""
import itertools
import os

from ..objects.ids import TaskIdFactory


class ProcessContext:
    """The process's identity (kind, address, job, namespace, node daemon) and the task its
    code runs now (a worker sets it per task; the driver keeps its own id for puts)."""

    def __init__(self, kind, address, job_id, worker_id, namespace, daemon, session_dir):
        self.kind = kind                    # "driver" or "worker"
        self.address = address
        self.job_id = job_id
        self.worker_id = worker_id or os.urandom(8).hex()
        self._namespace = namespace
        # A worker learns its job's settings (namespace, default actor lifetime) on first use:
        # load_job() -> dict, installed by worker_main (the driver publishes them, api.py).
        self.load_job = None
        self._job = None if kind == "worker" else {}
        self.daemon = daemon
        self.session_dir = session_dir
        self.task_ids = TaskIdFactory()
        self.current_task_id = self.task_ids.next()   # the driver's own "task", for put ids
        self.current_task_name = None
        # The debugger's `remote` command: the next task or actor call this process submits
        # carries extra["debugger_breakpoint"], and its worker pauses at its first line.
        self.debug_step_into = False
        # The debugger's `get` command: the task whose results should pause their consumer
        # (executor side), and the return ids that pause this process's zray.get (owner side).
        self.debug_step_out_task = None
        self.debug_get_objects = set()
        self._put_counter = itertools.count(1)

    @property
    def namespace(self):
        if self._namespace is None:
            return self.job_settings().get("namespace")
        return self._namespace

    @namespace.setter
    def namespace(self, value):
        self._namespace = value

    def job_settings(self):
        """The job's settings the driver published (job_info.py); {} if there are none."""
        if self._job is None:
            job = self.load_job() if self.load_job is not None else None
            if not job:
                # Not published yet: a worker started for the job can ask before its driver's
                # init() has published (seen: an actor then ran with namespace None). Ask again
                # next time rather than keep the miss.
                return {}
            self._job = dict(job)
        return self._job

    def set_job_settings(self, settings):
        """The driver's own settings, which it publishes (api.init)."""
        self._job = dict(settings)

    def next_put_index(self):
        return next(self._put_counter)


class ActorExit(BaseException):
    """Raised by zray.actor.exit_actor() in an actor's code: the actor ends after this call."""
