"""Ray Serve's config file (`serve deploy` / `serve build`) and its status document.

    proxy_location: EveryNode
    http_options: {host: 127.0.0.1, port: 8000}
    applications:
    - name: app1
      route_prefix: /
      import_path: module:app          # an Application, or a builder f(args) -> Application
      args: {key: value}
      runtime_env: {}
      deployments:
      - name: Model
        num_replicas: 2
        user_config: {...}
"""
import dataclasses
import importlib
import os
import sys

from .config import DEPLOYMENT_OPTION_NAMES, HTTPOptions

APP_KEYS = {"name", "route_prefix", "import_path", "args", "runtime_env", "deployments",
            "logging_config", "external_scaler_enabled"}
TOP_KEYS = {"applications", "http_options", "proxy_location", "grpc_options", "logging_config",
            "target_capacity"}


class ConfigError(ValueError):
    """The config file does not have Ray Serve's shape."""


def import_attr(import_path, working_dir=None):
    if working_dir:
        sys.path.insert(0, os.path.abspath(working_dir))
    elif os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    if ":" in import_path:
        module_name, attr = import_path.split(":", 1)
    elif "." in import_path:
        module_name, attr = import_path.rsplit(".", 1)
    else:
        raise ConfigError(f"import_path must look like 'module:app' or 'module.app', got {import_path!r}")
    module = importlib.import_module(module_name)
    try:
        value = module
        for part in attr.split("."):
            value = getattr(value, part)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    return value


def build_target(import_path, args=None, working_dir=None):
    """The Application at import_path; a builder function is called with `args`."""
    from .deployment import Application, Deployment
    target = import_attr(import_path, working_dir)
    if isinstance(target, Application):
        if args:
            raise ConfigError(f"{import_path} is an Application, which takes no args; point "
                              "import_path at a builder function to pass args")
        return target
    if isinstance(target, Deployment):
        return target.bind()
    if callable(target):
        app = target(dict(args or {}))
        if not isinstance(app, Application):
            raise ConfigError(f"the builder {import_path} must return an Application, got "
                              f"{type(app).__name__}")
        return app
    raise ConfigError(f"{import_path} is neither an Application nor a builder function")


def apply_overrides(app, overrides):
    """Apply a config file's per-deployment options to the bound graph (by deployment name)."""
    from .deployment import Application
    by_name = {}
    for entry in overrides or []:
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"each deployments entry needs a name, got {entry!r}")
        unknown = set(entry) - set(DEPLOYMENT_OPTION_NAMES)
        if unknown:
            raise ConfigError(f"deployment {entry['name']!r} has unknown option(s) {sorted(unknown)}")
        by_name[entry["name"]] = {k: v for k, v in entry.items() if k != "name"}
    seen = set()

    def visit(node):
        if isinstance(node, Application):
            if id(node) in seen:
                return
            seen.add(id(node))
            options = by_name.pop(node._deployment.name, None)
            if options:
                node._deployment = node._deployment.options(**options)
            for value in list(node._args) + list(node._kwargs.values()):
                visit(value)
        elif isinstance(node, (list, tuple)):
            for v in node:
                visit(v)
        elif isinstance(node, dict):
            for v in node.values():
                visit(v)
    visit(app)
    if by_name:
        raise ConfigError(f"the config names deployment(s) {sorted(by_name)} that the application "
                          "does not have")
    return app


def parse_config(doc):
    if not isinstance(doc, dict):
        raise ConfigError("a Serve config must be a mapping with an 'applications' list")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {sorted(unknown)}")
    apps = doc.get("applications")
    if not isinstance(apps, list) or not apps:
        raise ConfigError("the config needs a non-empty 'applications' list")
    names = set()
    prefixes = set()
    for app in apps:
        if not isinstance(app, dict) or "import_path" not in app:
            raise ConfigError(f"each application needs an import_path, got {app!r}")
        unknown = set(app) - APP_KEYS
        if unknown:
            raise ConfigError(f"application {app.get('name')!r} has unknown key(s) {sorted(unknown)}")
        name = app.setdefault("name", "default")
        if name in names:
            raise ConfigError(f"application name {name!r} is used twice")
        names.add(name)
        prefix = app.get("route_prefix", "/")
        if prefix is not None:
            if prefix in prefixes:
                raise ConfigError(f"route_prefix {prefix!r} is used twice")
            prefixes.add(prefix)
    http = HTTPOptions.from_value(doc.get("http_options"), doc.get("proxy_location"))
    return http, apps


def build_config(import_paths, app_names=None):
    """The config document `serve build` prints for these applications."""
    apps = []
    for i, path in enumerate(import_paths):
        app = build_target(path)
        from .deployment import Application
        deployments = []
        seen = set()

        def visit(node):
            if isinstance(node, Application):
                if id(node) in seen:
                    return
                seen.add(id(node))
                dep = node._deployment
                cfg = dep._config
                entry = {"name": dep.name}
                if cfg.autoscaling_config is not None:
                    entry["autoscaling_config"] = dataclasses.asdict(cfg.autoscaling_config)
                else:
                    entry["num_replicas"] = cfg.num_replicas
                entry["max_ongoing_requests"] = cfg.max_ongoing_requests
                if cfg.user_config is not None:
                    entry["user_config"] = cfg.user_config
                if dep.ray_actor_options:
                    entry["ray_actor_options"] = dep.ray_actor_options
                deployments.append(entry)
                for v in list(node._args) + list(node._kwargs.values()):
                    visit(v)
            elif isinstance(node, (list, tuple)):
                for v in node:
                    visit(v)
            elif isinstance(node, dict):
                for v in node.values():
                    visit(v)
        visit(app)
        name = (app_names[i] if app_names else None) or ("default" if len(import_paths) == 1 else f"app{i + 1}")
        apps.append({"name": name, "route_prefix": "/" if len(import_paths) == 1 else f"/{name}",
                     "import_path": path, "runtime_env": {}, "deployments": deployments})
    return {"proxy_location": "EveryNode",
            "http_options": {"host": "0.0.0.0", "port": 8000},
            "applications": apps}


def status_document(raw):
    """serve.status() as the mapping `serve status` prints (Ray's shape)."""
    apps = {}
    for name, a in raw["applications"].items():
        apps[name] = {
            "status": a["status"], "message": a["message"],
            "last_deployed_time_s": a["last_deployed_time_s"],
            "deployments": {d: {"status": v["status"], "status_trigger": v["status_trigger"],
                                "replica_states": dict(v["replica_states"]), "message": v["message"]}
                            for d, v in a["deployments"].items()}}
    return {"proxies": dict(raw["proxies"]), "applications": apps, "target_capacity": None}
