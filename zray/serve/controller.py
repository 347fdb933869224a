"""The Serve controller: one detached, named async actor per cluster (any node may host it;
it is found by name, so there is no head node).

It keeps the applications and their deployments, starts and stops replicas to match each
deployment's target (rolling over to new code, reconfiguring on a new user_config, scaling by
the autoscaling policy), checks replicas' health, starts one HTTP proxy per node, and publishes
what callers need by long poll: the route table and each deployment's live replicas.

Every wait on a replica or a proxy has a timeout; a replica that fails to start, fails its
health check or dies is stopped and replaced.
"""
import asyncio
import logging
import os
import time

import zray

from .autoscaling import AutoscalingPolicy
from .common import (PROXY_NAME_PREFIX, SERVE_NAMESPACE, ApplicationStatus, DeploymentStatus,
                     ProxyStatus, RoutingTable, Routes)
from .config import HTTPOptions

logger = logging.getLogger("zray.serve")

CONTROL_LOOP_PERIOD_S = 0.05
NODE_CHECK_PERIOD_S = 2.0
REPLICA_START_TIMEOUT_S = 120.0
MAX_CONSTRUCTOR_FAILURES = 3
STARTING, RUNNING, STOPPING = "STARTING", "RUNNING", "STOPPING"


async def _await(ref, timeout):
    return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout)


class _Replica:
    def __init__(self, unique_id, handle, version, config_version):
        self.unique_id = unique_id
        self.handle = handle
        self.version = version
        self.config_version = config_version
        self.state = STARTING
        self.started_at = time.monotonic()
        self.next_health = 0.0
        self.health_task = None
        self.pid = None
        self.node_id = None


class _Deployment:
    def __init__(self, spec):
        self.spec = spec
        self.replicas = {}            # unique_id -> _Replica
        self.config_version = 0
        self.target = spec.config.initial_target()
        self.policy = self._policy(spec.config)
        self.failures = 0
        self.status = DeploymentStatus.UPDATING
        self.message = ""
        self.deleting = False
        self.next_metrics = 0.0
        self.counter = 0
        self.last_ongoing = {}

    @staticmethod
    def _policy(config):
        return AutoscalingPolicy(config.autoscaling_config) if config.autoscaling_config else None

    @property
    def key(self):
        return f"{self.spec.app_name}#{self.spec.name}"


class _App:
    def __init__(self, name, route_prefix, ingress, deployment_names, docs_path=None):
        self.name = name
        self.route_prefix = route_prefix
        self.ingress = ingress
        self.deployment_names = list(deployment_names)
        self.deleting = False
        self.deployed_at = time.time()
        self.status = ApplicationStatus.DEPLOYING
        self.message = ""
        self.config = None


class ServeController:
    def __init__(self, http_options):
        self.http = HTTPOptions.from_value(http_options)
        self.apps = {}
        self.deployments = {}          # key -> _Deployment
        self.proxies = {}              # node_id -> {"handle", "status", "task"}
        self._lp = {}                  # key -> (version, value)
        self._lp_events = {}
        self._loop_task = None
        self._next_node_check = 0.0
        self._handle_queues = {}       # deployment key -> {caller id: (count, time)}
        self._tasks = set()
        self._shutting_down = False
        self._publish_routes()

    # -- the loop ---------------------------------------------------------------------------------
    async def ready(self):
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._run())
        return os.getpid()

    def _spawn(self, coro):
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self):
        while True:
            try:
                await self._tick()
            except Exception:   # noqa: BLE001 - the loop must survive a bad tick; logged
                logger.exception("serve controller tick failed")
            await asyncio.sleep(CONTROL_LOOP_PERIOD_S)

    async def _tick(self):
        now = time.monotonic()
        if now >= self._next_node_check and self.http.location not in ("Disabled", "NoServer"):
            self._next_node_check = now + NODE_CHECK_PERIOD_S
            self._ensure_proxies()
        for dep in list(self.deployments.values()):
            self._reconcile(dep, now)
        self._update_app_statuses()

    # -- proxies ------------------------------------------------------------------------------------
    def _ensure_proxies(self):
        try:
            nodes = [n for n in zray.nodes() if n.get("Alive")]
        except Exception:   # noqa: BLE001
            logger.exception("cannot list nodes")
            return
        if self.http.location == "HeadOnly":
            nodes = nodes[:1]
        alive = {n["NodeID"] for n in nodes}
        for node_id in list(self.proxies):
            if node_id not in alive:
                self.proxies.pop(node_id)
        for node_id in alive:
            if node_id in self.proxies:
                continue
            entry = {"handle": proxy_actor(node_id, self.http), "status": ProxyStatus.STARTING,
                     "message": ""}
            self.proxies[node_id] = entry
            self._spawn(self._start_proxy(node_id, entry))

    async def _start_proxy(self, node_id, entry):
        try:
            await _await(entry["handle"].ready.remote(), 60)
            entry["status"] = ProxyStatus.HEALTHY
        except Exception as exc:  # noqa: BLE001 - reported in status
            entry["status"] = ProxyStatus.UNHEALTHY
            entry["message"] = str(exc)
            logger.warning("the Serve proxy on node %s did not start: %s", node_id, exc)

    async def get_http_config(self):
        return {"host": self.http.host, "port": self.http.port, "root_path": self.http.root_path,
                "request_timeout_s": self.http.request_timeout_s, "location": self.http.location}

    async def wait_for_proxies(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.http.location in ("Disabled", "NoServer"):
                return {}
            if self.proxies and all(p["status"] != ProxyStatus.STARTING for p in self.proxies.values()):
                break
            await asyncio.sleep(0.01)
        return {n: (str(p["status"]), p["message"]) for n, p in self.proxies.items()}

    # -- long poll ----------------------------------------------------------------------------------
    def _publish(self, key, value):
        version = self._lp.get(key, (0, None))[0] + 1
        self._lp[key] = (version, value)
        event = self._lp_events.pop(key, None)
        if event is not None:
            event.set()

    async def listen(self, key, version, timeout_s):
        """(version, value) of `key` once it differs from `version` (or after timeout_s)."""
        current = self._lp.get(key)
        if current is None:
            if key.startswith("dep:"):
                return (-1, RoutingTable(-1, (), 5, -1, exists=False))
            return (-1, None)
        if current[0] != version:
            return current
        event = self._lp_events.get(key)
        if event is None:
            event = self._lp_events[key] = asyncio.Event()
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass
        return self._lp.get(key, current)

    def _publish_routes(self):
        prefixes = {a.route_prefix: (a.name, a.ingress) for a in self.apps.values()
                    if a.route_prefix is not None and not a.deleting}
        self._publish("routes", Routes(0, prefixes))

    def _publish_replicas(self, dep):
        running = tuple((r.unique_id, r.handle) for r in dep.replicas.values() if r.state == RUNNING)
        cfg = dep.spec.config
        self._publish("dep:" + dep.key, RoutingTable(
            0, running, cfg.max_ongoing_requests, cfg.max_queued_requests, exists=not dep.deleting))

    # -- applications -------------------------------------------------------------------------------
    async def deploy_application(self, name, route_prefix, specs, ingress, config=None):
        if self._shutting_down:
            raise RuntimeError("Serve is shutting down")
        for other in self.apps.values():
            if other.name != name and route_prefix is not None and other.route_prefix == route_prefix \
                    and not other.deleting:
                raise ValueError(f"Prefix {route_prefix} is being used by application "
                                 f"\"{other.name}\". Failed to deploy application \"{name}\".")
        old = self.apps.get(name)
        new_names = {s.name for s in specs}
        if old is not None:
            for dep_name in old.deployment_names:
                if dep_name not in new_names:
                    self._delete_deployment(f"{name}#{dep_name}")
        app = _App(name, route_prefix, ingress, [s.name for s in specs])
        app.config = config
        self.apps[name] = app
        for spec in specs:
            key = f"{name}#{spec.name}"
            dep = self.deployments.get(key)
            if dep is None or dep.deleting:
                dep = self.deployments[key] = _Deployment(spec)
                self._publish_replicas(dep)
            else:
                self._update_deployment(dep, spec)
        self._publish_routes()
        self._update_app_statuses()
        return True

    def _update_deployment(self, dep, spec):
        old = dep.spec
        dep.spec = spec
        dep.failures = 0
        if old.config.user_config != spec.config.user_config:
            dep.config_version += 1
        if old.config.autoscaling_config != spec.config.autoscaling_config:
            dep.policy = _Deployment._policy(spec.config)
            dep.target = spec.config.initial_target() if dep.policy is None else \
                max(spec.config.autoscaling_config.min_replicas,
                    min(dep.target, spec.config.autoscaling_config.max_replicas))
        elif spec.config.autoscaling_config is None:
            dep.target = spec.config.num_replicas
        dep.status = DeploymentStatus.UPDATING
        dep.message = ""
        self._publish_replicas(dep)

    def _delete_deployment(self, key):
        dep = self.deployments.get(key)
        if dep is None:
            return
        dep.deleting = True
        dep.target = 0
        self._publish_replicas(dep)

    async def delete_applications(self, names):
        for name in names:
            app = self.apps.get(name)
            if app is None:
                continue
            app.deleting = True
            app.status = ApplicationStatus.DELETING
            for dep_name in app.deployment_names:
                self._delete_deployment(f"{name}#{dep_name}")
        self._publish_routes()
        return True

    async def app_exists(self, name):
        app = self.apps.get(name)
        return app is not None and not app.deleting

    async def get_app_info(self, name):
        app = self.apps.get(name)
        if app is None:
            return None
        return {"name": app.name, "route_prefix": app.route_prefix, "ingress": app.ingress,
                "status": str(app.status), "message": app.message,
                "deployments": list(app.deployment_names)}

    async def list_apps(self):
        return [a.name for a in self.apps.values() if not a.deleting]

    async def deployment_exists(self, app_name, name):
        dep = self.deployments.get(f"{app_name}#{name}")
        return dep is not None and not dep.deleting

    async def graceful_shutdown(self, timeout_s=30.0):
        self._shutting_down = True
        await self.delete_applications(list(self.apps))
        deadline = time.monotonic() + timeout_s
        while (self.apps or self.deployments) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for entry in self.proxies.values():
            try:
                await _await(entry["handle"].shutdown.remote(), 5)
            except Exception:   # noqa: BLE001 - killed below anyway
                pass
            zray.kill(entry["handle"])
        self.proxies.clear()
        return not (self.apps or self.deployments)

    # -- reconciling a deployment -----------------------------------------------------------------
    def _reconcile(self, dep, now):
        spec = dep.spec
        self._autoscale(dep, now)
        current = [r for r in dep.replicas.values() if r.version == spec.version and r.state != STOPPING]
        old = [r for r in dep.replicas.values() if r.version != spec.version and r.state != STOPPING]
        running_current = [r for r in current if r.state == RUNNING]
        want = 0 if dep.deleting else dep.target
        if dep.failures >= MAX_CONSTRUCTOR_FAILURES:
            want = 0 if not running_current else len(current)
        # start or stop replicas of the current version
        if len(current) < want:
            for _ in range(want - len(current)):
                self._start_replica(dep)
        elif len(current) > want:
            extra = len(current) - want
            order = sorted(current, key=lambda r: (r.state == RUNNING, r.started_at), reverse=False)
            for r in order[:extra]:
                self._stop_replica(dep, r)
        # roll old versions out as new ones come up
        running_old = [r for r in old if r.state == RUNNING]
        for r in old:
            if r.state == STARTING:
                self._stop_replica(dep, r)
        if dep.deleting:
            stop = len(running_old)
        else:
            stop = len(running_old) + len(running_current) - want
        for r in running_old[:max(0, min(stop, len(running_old)))]:
            self._stop_replica(dep, r)
        # a new user_config reaches running replicas
        for r in running_current:
            if r.config_version != dep.config_version and r.health_task is None:
                r.health_task = self._spawn(self._reconfigure(dep, r, dep.config_version))
        # health checks
        cfg = spec.config
        for r in running_current:
            if now >= r.next_health and r.health_task is None:
                r.next_health = now + cfg.health_check_period_s
                r.health_task = self._spawn(self._health_check(dep, r, cfg.health_check_timeout_s))
        self._update_status(dep)
        if dep.deleting and not dep.replicas:
            self.deployments.pop(dep.key, None)
            self._lp.pop("dep:" + dep.key, None)

    def _update_status(self, dep):
        spec = dep.spec
        running = [r for r in dep.replicas.values() if r.state == RUNNING and r.version == spec.version]
        pending = [r for r in dep.replicas.values() if r.state != RUNNING or r.version != spec.version]
        if dep.failures >= MAX_CONSTRUCTOR_FAILURES and not running:
            dep.status = DeploymentStatus.DEPLOY_FAILED
        elif len(running) == dep.target and not any(r.config_version != dep.config_version for r in running) \
                and not [r for r in pending if r.state == STARTING]:
            dep.status = DeploymentStatus.HEALTHY
            dep.message = ""
        elif dep.status == DeploymentStatus.HEALTHY and len(running) < dep.target:
            dep.status = DeploymentStatus.UPSCALING if dep.policy else DeploymentStatus.UNHEALTHY
        elif dep.status == DeploymentStatus.HEALTHY and len(running) > dep.target:
            dep.status = DeploymentStatus.DOWNSCALING

    def _start_replica(self, dep):
        from .replica import ServeReplica
        spec = dep.spec
        dep.counter += 1
        unique_id = f"{os.urandom(4).hex()}"
        options = dict(spec.ray_actor_options)
        options.pop("runtime_env", None)
        options.pop("accelerator_type", None)
        options.pop("label_selector", None)
        max_conc = max(1000, spec.config.max_ongoing_requests * 4 + 100)
        actor = zray.remote(ServeReplica).options(max_concurrency=max_conc, **options)
        handle = actor.remote(spec.app_name, spec.name, unique_id, spec.payload, spec.config)
        replica = _Replica(unique_id, handle, spec.version, dep.config_version)
        dep.replicas[unique_id] = replica
        self._spawn(self._initialize(dep, replica, spec.config.user_config))

    async def _initialize(self, dep, replica, user_config):
        try:
            info = await _await(replica.handle.initialize.remote(user_config), REPLICA_START_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the status says why
            if replica.state != STARTING:
                return
            dep.failures += 1
            dep.message = (f"A replica of deployment '{dep.spec.name}' in application "
                           f"'{dep.spec.app_name}' failed to start: {_short(exc)}")
            logger.warning("%s", dep.message)
            dep.replicas.pop(replica.unique_id, None)
            _kill(replica.handle)
            return
        if replica.state != STARTING:
            return
        replica.pid = info.get("pid")
        replica.node_id = info.get("node_id")
        replica.state = RUNNING
        replica.next_health = time.monotonic() + dep.spec.config.health_check_period_s
        self._publish_replicas(dep)

    def _stop_replica(self, dep, replica, graceful=True):
        if replica.state == STOPPING:
            return
        was_running = replica.state == RUNNING
        replica.state = STOPPING
        if was_running:
            self._publish_replicas(dep)
        self._spawn(self._drain_and_kill(dep, replica, graceful and was_running))

    async def _drain_and_kill(self, dep, replica, graceful):
        cfg = dep.spec.config
        if graceful:
            try:
                await _await(replica.handle.prepare_for_shutdown.remote(
                    cfg.graceful_shutdown_timeout_s, cfg.graceful_shutdown_wait_loop_s),
                    cfg.graceful_shutdown_timeout_s + cfg.graceful_shutdown_wait_loop_s + 5)
            except Exception:  # noqa: BLE001 - it is killed next anyway
                pass
        _kill(replica.handle)
        dep.replicas.pop(replica.unique_id, None)

    async def _health_check(self, dep, replica, timeout_s):
        try:
            await _await(replica.handle.check_health.remote(), timeout_s)
        except Exception as exc:  # noqa: BLE001
            if replica.state == RUNNING:
                logger.warning("replica %s of %s failed its health check: %s",
                               replica.unique_id, dep.key, _short(exc))
                dep.message = f"Replica {replica.unique_id} failed its health check: {_short(exc)}"
                dep.status = DeploymentStatus.UNHEALTHY
                self._stop_replica(dep, replica, graceful=False)
        finally:
            replica.health_task = None

    async def _reconfigure(self, dep, replica, config_version):
        try:
            await _await(replica.handle.reconfigure.remote(dep.spec.config.user_config), 60)
            replica.config_version = config_version
        except Exception as exc:  # noqa: BLE001
            dep.message = f"reconfigure failed on replica {replica.unique_id}: {_short(exc)}"
            logger.warning("%s", dep.message)
            self._stop_replica(dep, replica, graceful=False)
        finally:
            replica.health_task = None

    async def report_replica_unavailable(self, app_name, name, unique_id):
        """A caller saw this replica die: replace it now rather than at the next health check."""
        dep = self.deployments.get(f"{app_name}#{name}")
        if dep is None:
            return False
        replica = dep.replicas.get(unique_id)
        if replica is None or replica.state != RUNNING:
            return False
        if replica.health_task is None:
            replica.health_task = self._spawn(self._health_check(dep, replica, 2.0))
        return True

    # -- autoscaling -----------------------------------------------------------------------------------
    def _autoscale(self, dep, now):
        policy = dep.policy
        if policy is None or dep.deleting:
            return
        cfg = dep.spec.config.autoscaling_config
        if now >= dep.next_metrics:
            dep.next_metrics = now + cfg.metrics_interval_s
            self._spawn(self._collect_metrics(dep))
        decision = policy.decide(now, dep.target)
        if decision.target != dep.target:
            logger.info("autoscaling %s from %d to %d replicas (%s)", dep.key, dep.target,
                        decision.target, decision.reason)
            dep.target = decision.target

    async def _collect_metrics(self, dep):
        running = [r for r in dep.replicas.values() if r.state == RUNNING]
        total = 0
        refs = [(r, r.handle.get_num_ongoing.remote()) for r in running]
        for r, ref in refs:
            try:
                total += await _await(ref, 2.0)
            except Exception:   # noqa: BLE001 - a dead replica counts nothing
                pass
        for entry in list(self.proxies.values()):
            if entry["status"] != ProxyStatus.HEALTHY:
                continue
            try:
                queued = await _await(entry["handle"].get_queued.remote(dep.key), 2.0)
                total += queued
            except Exception:   # noqa: BLE001
                pass
        horizon = time.monotonic() - 2 * dep.spec.config.autoscaling_config.metrics_interval_s - 1
        for caller, (count, t) in list(self._handle_queues.get(dep.key, {}).items()):
            if t >= horizon:
                total += count
        if dep.policy is not None:
            dep.policy.record(time.monotonic(), total)

    async def record_handle_queued(self, key, caller, count):
        self._handle_queues.setdefault(key, {})[caller] = (count, time.monotonic())
        dep = self.deployments.get(key)
        if dep is not None and dep.policy is not None and count and dep.target == 0:
            dep.policy.record(time.monotonic(), count)
        return True

    # -- status ------------------------------------------------------------------------------------
    def _update_app_statuses(self):
        for name, app in list(self.apps.items()):
            deps = [self.deployments.get(f"{name}#{d}") for d in app.deployment_names]
            if app.deleting:
                if all(d is None or (d.deleting and not d.replicas) for d in deps) and \
                        not any(k.startswith(name + "#") for k in self.deployments):
                    self.apps.pop(name, None)
                continue
            deps = [d for d in deps if d is not None]
            statuses = [d.status for d in deps]
            if any(s == DeploymentStatus.DEPLOY_FAILED for s in statuses):
                app.status = ApplicationStatus.DEPLOY_FAILED
                app.message = "; ".join(d.message for d in deps if d.message)
            elif all(s in (DeploymentStatus.HEALTHY, DeploymentStatus.UPSCALING,
                           DeploymentStatus.DOWNSCALING) for s in statuses):
                app.status = ApplicationStatus.RUNNING
                app.message = ""
            elif app.status == ApplicationStatus.RUNNING and \
                    any(s == DeploymentStatus.UNHEALTHY for s in statuses):
                app.status = ApplicationStatus.UNHEALTHY
                app.message = "; ".join(d.message for d in deps if d.message)

    async def get_status(self):
        apps = {}
        for name, app in self.apps.items():
            deployments = {}
            for dep_name in app.deployment_names:
                dep = self.deployments.get(f"{name}#{dep_name}")
                if dep is None:
                    continue
                states = {}
                for r in dep.replicas.values():
                    states[r.state] = states.get(r.state, 0) + 1
                deployments[dep_name] = {"status": str(dep.status), "message": dep.message,
                                         "replica_states": states, "target": dep.target,
                                         "status_trigger": "CONFIG_UPDATE_COMPLETED"
                                         if dep.status == DeploymentStatus.HEALTHY else "CONFIG_UPDATE_STARTED"}
            apps[name] = {"status": str(app.status), "message": app.message,
                          "last_deployed_time_s": app.deployed_at, "route_prefix": app.route_prefix,
                          "ingress": app.ingress, "deployments": deployments,
                          "docs_path": None}
        proxies = {n: str(p["status"]) for n, p in self.proxies.items()}
        return {"applications": apps, "proxies": proxies,
                "http": {"host": self.http.host, "port": self.http.port}}

    async def get_app_configs(self):
        return {name: app.config for name, app in self.apps.items() if not app.deleting}

    async def get_replicas(self, app_name, name):
        dep = self.deployments.get(f"{app_name}#{name}")
        if dep is None:
            return []
        return [(r.unique_id, r.state, r.pid, r.handle) for r in dep.replicas.values()]


def proxy_actor(node_id, http):
    """The node's proxy actor: created, or found by name when it exists."""
    from ..util.scheduling_strategies import NodeAffinitySchedulingStrategy
    from .proxy import ServeProxy
    actor = zray.remote(ServeProxy).options(
        name=PROXY_NAME_PREFIX + node_id, namespace=SERVE_NAMESPACE, lifetime="detached",
        get_if_exists=True, num_cpus=0, max_concurrency=10000,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
    return actor.remote(node_id, http.host, http.port, http.root_path, http.request_timeout_s,
                        http.keep_alive_timeout_s)


def _kill(handle):
    try:
        zray.kill(handle)
    except Exception:   # noqa: BLE001 - already gone
        pass


def _short(exc):
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
