"""Serve's errors, with Ray Serve's names."""


class RayServeException(Exception):
    pass


class BackPressureError(RayServeException):
    """A caller has max_queued_requests requests waiting for a replica already."""

    def __init__(self, *, num_queued_requests, max_queued_requests):
        self.num_queued_requests = num_queued_requests
        self.max_queued_requests = max_queued_requests
        super().__init__(
            f"Request dropped due to backpressure (num_queued_requests={num_queued_requests}, "
            f"max_queued_requests={max_queued_requests}).")


class DeploymentUnavailableError(RayServeException):
    pass


class RequestCancelledError(RayServeException):
    pass
