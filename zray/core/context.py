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
        self.namespace = namespace
        self.daemon = daemon
        self.session_dir = session_dir
        self.task_ids = TaskIdFactory()
        self.current_task_id = self.task_ids.next()   # the driver's own "task", for put ids
        self.current_task_name = None
        # The debugger's `remote` command: the next task or actor call this process submits
        # carries extra["debugger_breakpoint"], and its worker pauses at its first line.
        self.debug_step_into = False
        self._put_counter = itertools.count(1)

    def next_put_index(self):
        return next(self._put_counter)


class ActorExit(BaseException):
    """Raised by zray.actor.exit_actor() in an actor's code: the actor ends after this call."""
