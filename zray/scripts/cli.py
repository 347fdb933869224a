"""The `zray` command. Commands grow with the issues: start/stop/status/list come with the mesh."""
import argparse
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:     # Serve's own CLI (zray/serve/cli.py): run|status|deploy|...
        from ..serve.cli import main as serve_main
        return serve_main(argv[1:])
    if argv[:1] == ["job"]:       # jobs over the dashboard's REST API (zray/job/cli.py)
        from ..job.cli import main as job_main
        return job_main(argv[1:])
    if argv[:1] == ["debug"]:     # paused breakpoints (zray/util/debug/cli.py)
        from ..util.debug.cli import main as debug_main
        return debug_main(argv[1:])
    parser = argparse.ArgumentParser(prog="zray", description="zray: Ray's model on a ZeroMQ mesh")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="Serve applications: run|status|deploy|build|shutdown")
    sub.add_parser("job", help="jobs: submit|status|logs|stop|list|delete")
    sub.add_parser("debug", help="list paused breakpoints and attach a debugger")
    bench = sub.add_parser("microbenchmark", help="measure the core on this machine (Ray's rows)")
    from . import microbenchmark
    microbenchmark.add_arguments(bench)
    start = sub.add_parser("start", help="start this user's zray node on this host")
    start.add_argument("--num-cpus", type=float, default=None)
    start.add_argument("--num-gpus", type=float, default=0)
    start.add_argument("--resources", default="{}", help="custom resources as JSON")
    start.add_argument("--object-store-memory", type=int, default=None, help="bytes")
    start.add_argument("--block", action="store_true", help="stay in the foreground")
    start.add_argument("--head", action="store_true", help="accepted for Ray compatibility: "
                       "any node can seed the mesh")
    start.add_argument("--port", type=int, default=0,
                       help="TCP port for the mesh (default: none for a lone node, a free port "
                            "when joining)")
    start.add_argument("--address", default=None, help="HOST:PORT of any live member to join")
    start.add_argument("--node-ip-address", default=None, help="the IP other nodes reach us at")
    start.add_argument("--interface", default=None, help="take the node IP from this interface")
    start.add_argument("--metrics-export-port", type=int, default=None,
                       help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics")
    start.add_argument("--secret-file", default=None,
                       help="cluster secret (else ZRAY_CLUSTER_SECRET, else a new one)")
    start.add_argument("--include-dashboard", default=None, choices=["true", "false"],
                       help="serve the dashboard and the jobs API (default: true)")
    start.add_argument("--dashboard-port", type=int, default=None, help="default 8265")
    start.add_argument("--dashboard-host", default=None,
                       help="default 127.0.0.1; any other address requires the cluster's token")
    stop = sub.add_parser("stop", help="stop a zray node of this user on this host")
    stop.add_argument("--address", default=None,
                      help="HOST:PORT of the cluster whose node to stop (default: the only one)")
    stop.add_argument("--all", action="store_true", help="stop every node of this user here")
    status = sub.add_parser("status", help="show the node, its resources, store and actors")
    status.add_argument("--address", default=None, help="HOST:PORT of the cluster (default: "
                        "ZRAY_ADDRESS, the job's cluster inside Slurm, or the only one)")
    from . import state_cli
    state_cli.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command in ("start", "stop", "status", "list", "get", "summary", "logs", "timeline"):
        from .. import logs
        logs.configure_stderr_only()     # before any session: warnings on stderr, one line each
    if args.command == "start":
        return _start(args)
    if args.command == "stop":
        return _stop(args)
    if args.command == "status":
        return _status(args.address)
    if args.command in ("list", "get", "summary", "logs", "timeline"):
        return state_cli.run(args)
    if args.version:
        from .. import __version__
        print(f"zray {__version__}")
        return 0
    if args.command == "microbenchmark":
        return microbenchmark.run(args)
    parser.print_help()
    return 0


def _start(args):
    import json
    import os
    if args.metrics_export_port is not None:
        if not 0 <= args.metrics_export_port < 65536:
            print(f"zray start: --metrics-export-port must be a TCP port, not "
                  f"{args.metrics_export_port}", file=sys.stderr)
            return 2
        os.environ["ZRAY_METRICS_EXPORT_PORT"] = str(args.metrics_export_port)
    from ..api import _default_object_store_memory, available_cpus
    from ..node import local_node
    try:
        resources = json.loads(args.resources)
    except ValueError as exc:
        print(f"zray start: --resources is not valid JSON: {exc}", file=sys.stderr)
        return 2
    try:
        node_ip, chosen = _node_ip(args)
        info = local_node.start(
            args.num_cpus if args.num_cpus is not None else available_cpus(), args.num_gpus,
            resources, args.object_store_memory or _default_object_store_memory(), block=args.block,
            port=args.port, join=args.address, node_ip=node_ip, secret_file=args.secret_file,
            dashboard=_dashboard_args(args))
    except (RuntimeError, ValueError) as exc:
        print(f"zray start: {exc}", file=sys.stderr)
        return 1
    if args.block:
        return _blocked_node_exit(info)
    if not args.block:
        print(f"zray node started (pid {info['pid']}, session {info['session']}).\n"
              "Connect with zray.init(address='auto'); stop with `zray stop`.")
        if info.get("dashboard_url"):
            print(f"Dashboard and jobs API at {info['dashboard_url']}.")
        if info.get("metrics_address"):
            print(f"Prometheus metrics at http://{info['metrics_address']}/metrics")
        if info.get("mesh_address"):
            print(f"Listening for other nodes on {info['mesh_address'][len('tcp://'):]} "
                  f"({chosen}).")
            print(f"Mesh address {info['mesh_address'][len('tcp://'):]}; other nodes join with\n"
                  f"  zray start --address {info['mesh_address'][len('tcp://'):]} "
                  f"--secret-file {info.get('secret_file') or '<the cluster secret file>'}")
    return 0


def _dashboard_args(args):
    from ..dashboard.options import dashboard_options
    include = None if args.include_dashboard is None else args.include_dashboard == "true"
    return dashboard_options({"include_dashboard": include, "dashboard_port": args.dashboard_port,
                              "dashboard_host": args.dashboard_host})


def _blocked_node_exit(info):
    """`zray start --block` ends with its node: say how, and exit non-zero unless it was
    stopped (SIGTERM / Ctrl-C, forwarded to it, or `zray stop`)."""
    import os
    import signal
    code = info.get("exit_code")
    if code == 0:
        print(f"zray node (pid {info.get('pid')}) stopped")
        return 0
    if code is not None and code < 0:
        try:
            how = f"was killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            how = f"was killed by signal {-code}"
        status = 128 - code
    else:
        how, status = f"exited with code {code}", code or 1
    logs = os.path.join(info.get("session") or "", "logs")
    where = f"; its logs are in {logs}" if os.path.isdir(logs) else ""
    print(f"zray start: the node daemon (pid {info.get('pid')}) {how}{where}", file=sys.stderr)
    return status


def _stop(args):
    from ..node import local_node
    try:
        stopped = local_node.stop(args.address, every=args.all)
    except local_node.AmbiguousNodeError as exc:
        print(f"zray stop: {exc}; or --all", file=sys.stderr)
        return 1
    print(f"{stopped} zray node{'s' if stopped != 1 else ''} stopped" if stopped
          else "no zray node was running")
    return 0


def _find(address, command):
    from ..node import local_node
    try:
        return local_node.find_node(address)
    except ConnectionError as exc:
        print(f"zray {command}: {exc}", file=sys.stderr)
        return None


def _node_ip(args):
    """(IP, how it was chosen): the one asked for (--node-ip-address, --interface); joining,
    the address this host reaches the seed from; a seed (--port), this host's address, so that
    other hosts can reach it (127.0.0.1 would make isolated nodes); a lone node, loopback."""
    from ..transport.host_ip import own_ip
    if args.node_ip_address:
        return args.node_ip_address, "--node-ip-address"
    if args.interface:
        return own_ip(args.interface)
    if args.address:
        seed = args.address.split(",")[0].rsplit(":", 1)[0].strip("[]")
        ip, how = own_ip(seed=seed)
        return ip, f"{how}; choose with --node-ip-address"
    if args.port:
        ip, how = own_ip()
        if ip not in ("127.0.0.1", "::1"):
            return ip, f"{how}; choose with --node-ip-address or --interface"
        return ip, "loopback: this host has no other address, so only nodes on this host can join"
    return "127.0.0.1", "loopback"


def _status(address=None):
    from ..node import local_node
    if _find(address, "status") is None:
        return 1
    st = local_node.status(address)
    cluster, store = st["cluster"], st["store"]
    print(f"node {st['node']['node_id']}  pid {st['node']['pid']}  alive")
    others = cluster["nodes"][1:]
    if st["node"].get("mesh_address") or others:
        print(f"  mesh address: {st['node'].get('mesh_address')}")
        print(f"  members ({len(others) + 1}):")
        print(f"    {st['node']['node_id'][:12]} {'alive':<8} (this node)")
        for n in others:
            print(f"    {n['NodeID'][:12]} {n['State'].lower():<8} {n['MeshAddress']} "
                  f"resources {n['Resources']} available {n['Available']} "
                  f"queued {n.get('Queued', 0)}")
    print(f"  resources total:     {cluster['total']}")
    print(f"  resources available: {cluster['available']}")
    print(f"  workers: {cluster['workers']}  queued tasks: {cluster['queued']}")
    print(f"  object store: {store['used']} / {store['capacity']} bytes used, "
          f"{store['num_objects']} objects ({store['num_spilled']} spilled"
          + (f", {store['num_fallback']} in files: memory full of pinned objects"
             if store.get("num_fallback") else "") + ")")
    if store.get("data_channel"):
        print(f"  data channel: {store['data_channel']} (plain TCP, authenticated by the "
              f"cluster secret; {store['bytes_streamed_in']} bytes in, "
              f"{store['bytes_streamed_out']} out, {store['data_refused']} peers refused)")
    print(f"  actors: {len([a for a in st['actors'] if a['state'] != 'DEAD'])} alive")
    for actor in st["actors"]:
        print(f"    {actor['actor_id'][:12]} {actor['class_name']:<20} {actor['state']:<10} "
              f"{actor['name'] or '-'} ({actor['namespace']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
