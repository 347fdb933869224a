"""Errors fit() raises."""


class TrainingFailedError(RuntimeError):
    """The run failed past FailureConfig.max_failures."""


class WorkerGroupError(TrainingFailedError):
    """A worker raised, died, or stopped reporting. `worker_failures` maps each failed rank to
    its error (whose text carries the worker's traceback); the first one is also __cause__."""

    def __init__(self, message, worker_failures):
        super().__init__(message)
        self.worker_failures = dict(worker_failures)


class ReportTimeoutError(TimeoutError):
    """A rank did not report while others did (see TrainTunables.report_timeout_s)."""
