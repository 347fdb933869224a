"""@serve.deployment, Deployment.options/bind and Application (a bound graph of deployments)."""
import hashlib
import inspect

from .config import (DEPLOYMENT_OPTION_NAMES, make_deployment_config,
                     normalize_route_prefix)


class Deployment:
    def __init__(self, func_or_class, name, config, ray_actor_options=None, version=None,
                 route_prefix=None):
        self.func_or_class = func_or_class
        self._name = name
        self._config = config
        self.ray_actor_options = dict(ray_actor_options or {})
        self._version = version
        self._route_prefix = route_prefix

    @property
    def name(self):
        return self._name

    @property
    def version(self):
        return self._version

    @property
    def num_replicas(self):
        return self._config.num_replicas

    @property
    def user_config(self):
        return self._config.user_config

    @property
    def max_ongoing_requests(self):
        return self._config.max_ongoing_requests

    @property
    def max_queued_requests(self):
        return self._config.max_queued_requests

    @property
    def autoscaling_config(self):
        return self._config.autoscaling_config

    @property
    def route_prefix(self):
        return self._route_prefix

    def __call__(self, *args, **kwargs):
        raise RuntimeError("Deployments cannot be constructed directly. Use `.bind()` instead, "
                           "e.g. serve.run(MyDeployment.bind()).")

    def bind(self, *args, **kwargs):
        return Application(self, args, kwargs)

    def options(self, *, _func_or_class=None, **options):
        _check_option_names(options)
        config = make_deployment_config(options, base=self._config)
        actor_options = options.get("ray_actor_options", self.ray_actor_options)
        _check_actor_options(actor_options)
        return Deployment(_func_or_class or self.func_or_class, options.get("name", self._name),
                          config, actor_options, options.get("version", self._version),
                          normalize_route_prefix(options.get("route_prefix", self._route_prefix)))

    def __repr__(self):
        return f"Deployment(name={self._name})"


class Application:
    """A deployment bound to its constructor arguments; arguments may be other Applications
    (the callee gets a DeploymentHandle to them)."""

    def __init__(self, deployment, args, kwargs):
        self._deployment = deployment
        self._args = args
        self._kwargs = kwargs

    @property
    def deployment(self):
        return self._deployment

    def __repr__(self):
        return f"Application({self._deployment.name})"


def _check_option_names(options):
    unknown = set(options) - set(DEPLOYMENT_OPTION_NAMES)
    if unknown:
        raise TypeError(f"Unknown deployment option(s) {sorted(unknown)}; valid ones are "
                        f"{sorted(DEPLOYMENT_OPTION_NAMES)}")
    if "name" in options and (not isinstance(options["name"], str) or not options["name"]):
        raise TypeError(f"a deployment name must be a non-empty str, got {options['name']!r}")
    if "#" in str(options.get("name", "")):
        raise ValueError("a deployment name may not contain '#'")


def _check_actor_options(actor_options):
    if not isinstance(actor_options, dict):
        raise TypeError(f"ray_actor_options must be a dict, got {type(actor_options).__name__}")
    allowed = {"num_cpus", "num_gpus", "memory", "resources", "accelerator_type",
               "object_store_memory", "runtime_env", "label_selector"}
    unknown = set(actor_options) - allowed
    if unknown:
        raise ValueError(f"ray_actor_options may only hold {sorted(allowed)}, got {sorted(unknown)}")


def deployment(_func_or_class=None, name=None, version=None, num_replicas=None, **options):
    """@serve.deployment, bare or with options (Ray Serve 2.x's names)."""
    if num_replicas is not None:
        options["num_replicas"] = num_replicas
    if version is not None:
        options["version"] = version
    _check_option_names(options)
    if isinstance(num_replicas, str) and num_replicas != "auto":
        raise ValueError(f"num_replicas must be an int or 'auto', got {num_replicas!r}")

    def decorate(target):
        if not (inspect.isclass(target) or callable(target)):
            raise TypeError("@serve.deployment must decorate a class or a function")
        config = make_deployment_config(options)
        actor_options = options.get("ray_actor_options") or {}
        _check_actor_options(actor_options)
        return Deployment(target, name or target.__name__, config, actor_options,
                          options.get("version"), normalize_route_prefix(options.get("route_prefix")))

    if _func_or_class is not None:
        return decorate(_func_or_class)
    return decorate


# -- building an application into deployment specs -----------------------------------------------
def build_app(app, app_name):
    """(specs, ingress name): one DeploymentSpec per distinct bound deployment of the graph,
    nested Applications replaced by DeploymentHandles."""
    from ..objects import code_pickle
    from .common import DeploymentSpec
    from .handle import DeploymentHandle
    if not isinstance(app, Application):
        raise TypeError(f"serve.run() expects an Application (the result of .bind()), got "
                        f"{type(app).__name__}")
    names = {}          # id(Application) -> deployment name
    specs = []
    used = set()

    def visit(node):
        if id(node) in names:
            return DeploymentHandle(names[id(node)], app_name)
        dep = node._deployment
        args = _replace(node._args, visit)
        kwargs = _replace(node._kwargs, visit)
        name = dep.name
        n = 1
        while name in used:
            name = f"{dep.name}_{n}"
            n += 1
        used.add(name)
        names[id(node)] = name
        payload = code_pickle.dumps((dep.func_or_class, args, kwargs))
        version = dep.version or hashlib.sha1(
            payload + repr(sorted(dep.ray_actor_options.items())).encode()).hexdigest()[:16]
        specs.append(DeploymentSpec(
            name=name, app_name=app_name, payload=payload, config=dep._config,
            ray_actor_options=dict(dep.ray_actor_options), version=version,
            is_function=not inspect.isclass(dep.func_or_class),
            class_name=getattr(dep.func_or_class, "__name__", name)))
        return DeploymentHandle(name, app_name)

    _make_starlette_state_picklable()
    visit(app)
    ingress = names[id(app)]
    return specs, ingress


def _replace(value, visit):
    if isinstance(value, Application):
        return visit(value)
    if isinstance(value, tuple):
        return tuple(_replace(v, visit) for v in value)
    if isinstance(value, list):
        return [_replace(v, visit) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, visit) for k, v in value.items()}
    return value


def _make_starlette_state_picklable():
    """starlette's State (app.state) recurses forever when unpickled (its __getattr__ reads
    an attribute that unpickling has not set yet): pickle it as the dict it wraps."""
    import copyreg
    import sys
    datastructures = sys.modules.get("starlette.datastructures")
    state_cls = getattr(datastructures, "State", None)
    if state_cls is not None and state_cls not in copyreg.dispatch_table:
        copyreg.pickle(state_cls, _reduce_state)


def _reduce_state(state):
    return type(state), (dict(state._state),)
