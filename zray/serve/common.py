"""Records shared by the driver, the controller, proxies and replicas (light imports only)."""
import dataclasses
import enum
from typing import Any, Optional

from .config import DeploymentConfig

CONTROLLER_NAME = "SERVE_CONTROLLER_ACTOR"
PROXY_NAME_PREFIX = "SERVE_PROXY_ACTOR-"
SERVE_NAMESPACE = "serve"
MULTIPLEXED_MODEL_ID_HEADER = "serve_multiplexed_model_id"


class ApplicationStatus(str, enum.Enum):
    NOT_STARTED = "NOT_STARTED"
    DEPLOYING = "DEPLOYING"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    RUNNING = "RUNNING"
    UNHEALTHY = "UNHEALTHY"
    DELETING = "DELETING"

    def __str__(self):
        return self.value


class DeploymentStatus(str, enum.Enum):
    UPDATING = "UPDATING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    UPSCALING = "UPSCALING"
    DOWNSCALING = "DOWNSCALING"

    def __str__(self):
        return self.value


class ProxyStatus(str, enum.Enum):
    STARTING = "STARTING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DRAINING = "DRAINING"
    DRAINED = "DRAINED"

    def __str__(self):
        return self.value


@dataclasses.dataclass(frozen=True)
class DeploymentID:
    name: str
    app_name: str = "default"

    def key(self):
        return f"{self.app_name}#{self.name}"


@dataclasses.dataclass(frozen=True)
class ReplicaID:
    unique_id: str
    deployment_id: DeploymentID

    def to_full_id_str(self):
        return f"{self.deployment_id.app_name}#{self.deployment_id.name}#{self.unique_id}"


@dataclasses.dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of an application, as the controller keeps it: the user's code and
    arguments stay pickled (the controller never imports user code)."""
    name: str
    app_name: str
    payload: bytes                    # code_pickle of (callable, init_args, init_kwargs)
    config: DeploymentConfig
    ray_actor_options: dict
    version: str                      # changes when code, arguments or actor options change
    is_function: bool
    class_name: str
    docs_path: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class RoutingTable:
    """What callers of a deployment need: its live replicas (handles, ids) and limits."""
    version: int
    replicas: tuple                   # ((replica_id str, ActorHandle), ...)
    max_ongoing_requests: int
    max_queued_requests: int
    exists: bool = True


@dataclasses.dataclass(frozen=True)
class Routes:
    version: int
    prefixes: Any                     # {route_prefix: (app_name, ingress deployment name)}
