"""`zray serve ...` (also `python -m zray.serve ...`): run, status, deploy, build, shutdown.

    run module:app [k=v ...]   deploy an application (or a config file) and stay in the
                               foreground until Ctrl-C; k=v go to an application builder
    deploy config.yaml         deploy a config file's applications to a running cluster
    status                     print every application's status (YAML, Ray's shape)
    build module:app ...       print a config file for the applications
    shutdown                   delete every application and stop Serve
"""
import argparse
import logging
import os
import signal
import sys
import time

logger = logging.getLogger("zray.serve")


def _parser():
    parser = argparse.ArgumentParser(prog="zray serve", description="zray Serve: deploy and inspect applications")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run an application (or a config file) until Ctrl-C")
    run.add_argument("target", help="module:app, or a config .yaml file")
    run.add_argument("arguments", nargs="*", help="key=value arguments for an application builder")
    run.add_argument("--address", "-a", default=os.environ.get("RAY_ADDRESS"),
                     help="a running cluster to use (default: start a local one)")
    run.add_argument("--name", default="default", help="application name")
    run.add_argument("--route-prefix", default="/")
    run.add_argument("--host", default=None)
    run.add_argument("--port", "-p", type=int, default=None)
    run.add_argument("--working-dir", default=None, help="directory to import the application from")
    run.add_argument("--non-blocking", action="store_true", help="return once deployed")
    deploy = sub.add_parser("deploy", help="deploy a config file to a running cluster")
    deploy.add_argument("config_file")
    deploy.add_argument("--address", "-a", default=os.environ.get("RAY_ADDRESS", "auto"))
    deploy.add_argument("--working-dir", default=None)
    status = sub.add_parser("status", help="show the status of Serve's applications")
    status.add_argument("--address", "-a", default=os.environ.get("RAY_ADDRESS", "auto"))
    status.add_argument("--name", "-n", default=None, help="only this application")
    build = sub.add_parser("build", help="print a config file for applications")
    build.add_argument("import_paths", nargs="+")
    build.add_argument("--output-path", "-o", default=None)
    build.add_argument("--app-name", action="append", default=None)
    shutdown = sub.add_parser("shutdown", help="delete every application and stop Serve")
    shutdown.add_argument("--address", "-a", default=os.environ.get("RAY_ADDRESS", "auto"))
    shutdown.add_argument("--yes", "-y", action="store_true", help="do not ask")
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "deploy":
            return _deploy(args)
        if args.command == "status":
            return _status(args)
        if args.command == "build":
            return _build(args)
        if args.command == "shutdown":
            return _shutdown(args)
    except Exception as exc:  # noqa: BLE001 - a CLI error is one line and an exit code
        from .schema import ConfigError
        if isinstance(exc, (ConfigError, ImportError, ConnectionError, ValueError, RuntimeError,
                            TimeoutError)):
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        raise
    parser.print_help()
    return 0


def _yaml():
    import yaml
    return yaml


def _parse_kv(items):
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"application arguments must be key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def _connect(address):
    import zray
    if not zray.is_initialized():
        zray.init(address=address)
    return zray


def _run(args):
    from . import api, schema
    import zray
    http = {}
    if args.host:
        http["host"] = args.host
    if args.port:
        http["port"] = args.port
    if args.target.endswith((".yaml", ".yml")):
        with open(args.target) as f:
            doc = _yaml().safe_load(f)
        options, apps = schema.parse_config(doc)
        http = {**{"host": options.host, "port": options.port}, **http}
        targets = [(a["name"], a.get("route_prefix", "/"),
                    schema.apply_overrides(schema.build_target(a["import_path"], a.get("args"),
                                                               args.working_dir),
                                           a.get("deployments")), a) for a in apps]
    else:
        app = schema.build_target(args.target, _parse_kv(args.arguments), args.working_dir)
        targets = [(args.name, args.route_prefix, app, None)]
    zray.init(address=args.address) if args.address else zray.init()
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True
    try:
        api.start(http_options=http or None)
        for name, prefix, app, config in targets:
            api._deploy(app, name, prefix, wait=True, config=config)
        info = api.status()
        logger.info("Deployed %s; HTTP on %s:%s", ", ".join(info.applications),
                    http.get("host", "127.0.0.1"), http.get("port", 8000))
        if args.non_blocking:
            return 0
        signal.signal(signal.SIGTERM, on_signal)
        while not stop["now"]:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if not args.non_blocking:
            logger.info("Shutting down Serve")
            try:
                api.shutdown()
            except KeyboardInterrupt:
                pass
        if not args.non_blocking or not args.address:
            zray.shutdown()
    return 0


def _deploy(args):
    from . import api, schema
    with open(args.config_file) as f:
        doc = _yaml().safe_load(f)
    http, apps = schema.parse_config(doc)
    built = [(a, schema.apply_overrides(schema.build_target(a["import_path"], a.get("args"),
                                                            args.working_dir),
                                        a.get("deployments"))) for a in apps]
    _connect(args.address)
    import dataclasses
    api.start(http_options=dataclasses.asdict(http))
    for app_cfg, app in built:
        api._deploy(app, app_cfg["name"], app_cfg.get("route_prefix", "/"), wait=False, config=app_cfg)
    print("Sent deploy request successfully.")
    return 0


def _status(args):
    from . import handle, schema
    zray = _connect(args.address)
    controller = handle.get_controller(check=False)
    if controller is None:
        raw = {"applications": {}, "proxies": {}}
    else:
        raw = zray.get(controller.get_status.remote(), timeout=30)
    doc = schema.status_document(raw)
    if args.name is not None:
        doc["applications"] = {k: v for k, v in doc["applications"].items() if k == args.name}
    print(_yaml().safe_dump(doc, sort_keys=False, default_flow_style=False), end="")
    return 0


def _build(args):
    from . import schema
    doc = schema.build_config(args.import_paths, args.app_name)
    text = _yaml().safe_dump(doc, sort_keys=False, default_flow_style=False)
    if args.output_path:
        with open(args.output_path, "w") as f:
            f.write(text)
    else:
        print(text, end="")
    return 0


def _shutdown(args):
    from . import api
    if not args.yes:
        answer = input("This will shut down Serve on the cluster, deleting every application. "
                       "Continue? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 1
    _connect(args.address)
    api.shutdown()
    print("Sent shutdown request; applications will be deleted asynchronously.")
    return 0
