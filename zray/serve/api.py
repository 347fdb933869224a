"""serve.start/run/delete/shutdown/status and the handle getters."""
import dataclasses
import logging
import time
from typing import Dict

import zray

from . import context
from .common import (CONTROLLER_NAME, SERVE_NAMESPACE, ApplicationStatus, DeploymentStatus,
                     ProxyStatus)
from .config import HTTPOptions, normalize_route_prefix
from .deployment import Application, build_app
from .exceptions import RayServeException
from .handle import DeploymentHandle, forget_controller, get_controller

logger = logging.getLogger("zray.serve")
DEPLOY_TIMEOUT_S = 600.0


def _ensure_zray():
    if not zray.is_initialized():
        zray.init()


def start(http_options=None, proxy_location=None, **kwargs):
    """Start Serve on the cluster (a no-op when it runs already): the controller, and an HTTP
    proxy on every node. Returns once the proxies listen."""
    controller = _start(http_options, proxy_location)
    _wait_proxies(controller)
    return controller


def _start(http_options=None, proxy_location=None):
    """The controller (created if need be) and the proxies it will own, all starting at once."""
    _ensure_zray()
    options = HTTPOptions.from_value(http_options, proxy_location)
    controller = get_controller(check=False)
    if controller is None:
        from .controller import ServeController, proxy_actor
        actor = zray.remote(ServeController).options(
            name=CONTROLLER_NAME, namespace=SERVE_NAMESPACE, lifetime="detached",
            get_if_exists=True, num_cpus=0, max_concurrency=100000)
        controller = actor.remote(dataclasses.asdict(options))
        forget_controller()
        from . import handle as _handle
        _handle._controller["handle"] = controller
        if options.location not in ("Disabled", "NoServer"):
            # started here, in parallel with the controller; it adopts them by name
            nodes = [n["NodeID"] for n in zray.nodes() if n.get("Alive")]
            for node_id in nodes[:1] if options.location == "HeadOnly" else nodes:
                proxy_actor(node_id, options)
    elif http_options is not None:
        current = zray.get(controller.get_http_config.remote(), timeout=30)
        if (current["host"], current["port"]) != (options.host, options.port):
            logger.warning("Serve is already running with HTTP options %s; the new options are "
                           "ignored (call serve.shutdown() first to change them)", current)
    zray.get(controller.ready.remote(), timeout=60)
    return controller


def _wait_proxies(controller):
    statuses = zray.get(controller.wait_for_proxies.remote(60), timeout=90)
    for node_id, (status, message) in statuses.items():
        if status == str(ProxyStatus.UNHEALTHY):
            logger.warning("The Serve HTTP proxy on node %s failed: %s", node_id, message)


def run(target, blocking=False, name="default", route_prefix="/", logging_config=None,
        _local_testing_mode=False, **kwargs):
    """Deploy an application (replacing the one of that name) and return a handle to its
    ingress deployment, once every deployment is running."""
    if "_blocking" in kwargs:
        blocking = kwargs.pop("_blocking")
    if not isinstance(target, Application):
        if hasattr(target, "bind"):
            target = target.bind()
        else:
            raise TypeError(f"serve.run() expects an Application (Deployment.bind()), got "
                            f"{type(target).__name__}")
    if not isinstance(name, str) or not name:
        raise TypeError(f"the application name must be a non-empty str, got {name!r}")
    handle = _deploy(target, name, route_prefix, wait=True)
    if blocking:
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            logger.info("Got KeyboardInterrupt, exiting")
    return handle


def _deploy(target, name, route_prefix, wait=True, config=None):
    controller = _start()
    specs, ingress = build_app(target, name)
    if route_prefix == "/" and target.deployment.route_prefix is not None:
        route_prefix = target.deployment.route_prefix
    route_prefix = normalize_route_prefix(route_prefix)
    zray.get(controller.deploy_application.remote(name, route_prefix, specs, ingress, config),
             timeout=60)
    if wait:
        _wait_running(controller, name)
        _wait_proxies(controller)
    return DeploymentHandle(ingress, name)


def _wait_running(controller, name, timeout=DEPLOY_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        info = zray.get(controller.get_app_info.remote(name), timeout=30)
        if info is None:
            raise RayServeException(f"Application '{name}' was deleted while it was deploying")
        if info["status"] == str(ApplicationStatus.RUNNING):
            return info
        if info["status"] == str(ApplicationStatus.DEPLOY_FAILED):
            raise RuntimeError(f"Deploying application '{name}' failed: {info['message']}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Application '{name}' is not running after {timeout}s "
                               f"(status {info['status']}: {info['message']})")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


def delete(name, _blocking=True):
    controller = get_controller(check=False)
    if controller is None:
        return
    zray.get(controller.delete_applications.remote([name]), timeout=60)
    if _blocking:
        deadline = time.monotonic() + DEPLOY_TIMEOUT_S
        while zray.get(controller.get_app_info.remote(name), timeout=30) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Application '{name}' was not deleted within {DEPLOY_TIMEOUT_S}s")
            time.sleep(0.02)


def shutdown():
    """Delete every application, stop the proxies and the controller."""
    if not zray.is_initialized():
        return
    controller = get_controller(check=False)
    if controller is None:
        return
    try:
        zray.get(controller.graceful_shutdown.remote(30.0), timeout=60)
    except Exception as exc:  # noqa: BLE001 - killed below anyway
        logger.warning("Serve did not shut down gracefully: %s", exc)
    try:
        zray.kill(controller)
    except Exception:   # noqa: BLE001
        pass
    forget_controller()
    _wait_name_free(CONTROLLER_NAME)


def _wait_name_free(name, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            zray.get_actor(name, namespace=SERVE_NAMESPACE)
        except ValueError:
            return
        time.sleep(0.02)


# -- status ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class DeploymentStatusOverview:
    status: DeploymentStatus
    status_trigger: str
    replica_states: Dict[str, int]
    message: str = ""


@dataclasses.dataclass
class ApplicationStatusOverview:
    status: ApplicationStatus
    message: str
    last_deployed_time_s: float
    deployments: Dict[str, DeploymentStatusOverview]


@dataclasses.dataclass
class ProxyDetails:
    status: ProxyStatus


@dataclasses.dataclass
class ServeStatus:
    proxies: Dict[str, ProxyStatus] = dataclasses.field(default_factory=dict)
    applications: Dict[str, ApplicationStatusOverview] = dataclasses.field(default_factory=dict)
    target_capacity: float = None


def status():
    controller = get_controller(check=False) if zray.is_initialized() else None
    if controller is None:
        return ServeStatus()
    raw = zray.get(controller.get_status.remote(), timeout=30)
    return status_from_dict(raw)


def status_from_dict(raw):
    apps = {}
    for name, a in raw["applications"].items():
        deps = {d: DeploymentStatusOverview(DeploymentStatus(v["status"]), v["status_trigger"],
                                            dict(v["replica_states"]), v["message"])
                for d, v in a["deployments"].items()}
        apps[name] = ApplicationStatusOverview(ApplicationStatus(a["status"]), a["message"],
                                               a["last_deployed_time_s"], deps)
    proxies = {n: ProxyStatus(s) for n, s in raw["proxies"].items()}
    return ServeStatus(proxies=proxies, applications=apps)


# -- handles --------------------------------------------------------------------------------------
def get_app_handle(name):
    controller = get_controller()
    info = zray.get(controller.get_app_info.remote(name), timeout=30)
    if info is None or info["status"] == str(ApplicationStatus.DELETING):
        raise RayServeException(f"Application '{name}' does not exist.")
    return DeploymentHandle(info["ingress"], name)


def get_deployment_handle(deployment_name, app_name=None, _check_exists=True, _record_telemetry=True):
    if app_name is None:
        current = context.current_deployment_id()
        app_name = current.app_name if current is not None else "default"
    if _check_exists:
        controller = get_controller()
        if not zray.get(controller.deployment_exists.remote(app_name, deployment_name), timeout=30):
            raise KeyError(f"Deployment '{deployment_name}' in application '{app_name}' does not exist.")
    return DeploymentHandle(deployment_name, app_name)
