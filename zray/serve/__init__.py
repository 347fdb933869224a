"""zray.serve: Ray Serve 2.x's public API on zray actors (see docs/serve.md).

HTTP serving needs uvicorn and starlette (FastAPI for @serve.ingress of FastAPI apps); they
are imported only where used.
"""
from .api import (ApplicationStatusOverview, DeploymentStatusOverview, ServeStatus,
                  delete, get_app_handle, get_deployment_handle, run, shutdown, start, status)
from .batching import batch
from .common import ApplicationStatus, DeploymentStatus, ProxyStatus
from .config import AutoscalingConfig, DeploymentConfig, HTTPOptions
from .context import ReplicaContext, get_replica_context
from .deployment import Application, Deployment, deployment
from .exceptions import BackPressureError, RayServeException
from .handle import DeploymentHandle, DeploymentResponse, DeploymentResponseGenerator
from .ingress import ingress
from .multiplex import get_multiplexed_model_id, multiplexed

__all__ = [
    "Application", "ApplicationStatus", "AutoscalingConfig", "BackPressureError", "Deployment",
    "DeploymentConfig", "DeploymentHandle", "DeploymentResponse", "DeploymentResponseGenerator",
    "DeploymentStatus", "HTTPOptions", "ProxyStatus", "RayServeException", "ReplicaContext",
    "ServeStatus", "ApplicationStatusOverview", "DeploymentStatusOverview", "batch", "delete",
    "deployment", "get_app_handle", "get_deployment_handle", "get_multiplexed_model_id",
    "get_replica_context", "ingress", "multiplexed", "run", "shutdown", "start", "status",
]
