"""Who is running (the replica context) and for which request (the request context)."""
import contextvars
import dataclasses
from typing import Any

from .common import DeploymentID, ReplicaID


@dataclasses.dataclass
class ReplicaContext:
    replica_id: ReplicaID
    servable_object: Any
    rank: int = 0
    world_size: int = 1

    @property
    def app_name(self):
        return self.replica_id.deployment_id.app_name

    @property
    def deployment(self):
        return self.replica_id.deployment_id.name

    @property
    def replica_tag(self):
        return self.replica_id.unique_id


@dataclasses.dataclass(frozen=True)
class RequestContext:
    route: str = ""
    request_id: str = ""
    app_name: str = ""
    multiplexed_model_id: str = ""


_replica_context = None
_request_context = contextvars.ContextVar("zray_serve_request_context", default=RequestContext())


def set_replica_context(ctx):
    global _replica_context
    _replica_context = ctx


def get_replica_context():
    """The running replica's context; RayServeException outside a replica (as in Ray)."""
    if _replica_context is None:
        from .exceptions import RayServeException
        raise RayServeException("`serve.get_replica_context()` may only be called from within a "
                                "Ray Serve deployment.")
    return _replica_context


def current_replica_context():
    return _replica_context


def get_request_context():
    return _request_context.get()


def set_request_context(ctx):
    return _request_context.set(ctx)


def reset_request_context(token):
    _request_context.reset(token)


def current_deployment_id():
    ctx = _replica_context
    return ctx.replica_id.deployment_id if ctx is not None else None


__all__ = ["ReplicaContext", "RequestContext", "DeploymentID", "get_replica_context"]
