"""`python -m zray.dashboard`: one node's dashboard process (started by the node daemon)."""
import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading

log = logging.getLogger("zray.dashboard")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m zray.dashboard")
    p.add_argument("--session", required=True)
    p.add_argument("--node-file", required=True)
    p.add_argument("--fd", type=int, required=True, help="the listening socket, bound already")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--daemon-pid", type=int, required=True)
    p.add_argument("--require-token", action="store_true")
    args = p.parse_args(argv)
    from .. import logs
    logs.configure(args.session, "dashboard")
    from .http import DashboardHttpServer
    from .launch import dashboard_token, url_of
    from .server import Dashboard, watch_daemon
    with open(args.node_file) as f:
        node = json.load(f)
    node["node_file"] = args.node_file
    sock = socket.socket(fileno=args.fd)
    token = dashboard_token(args.session, node.get("secret_file")) if args.require_token else None
    url = url_of(args.host, sock.getsockname()[1])
    dashboard = Dashboard(node, url, token)
    server = DashboardHttpServer(sock, dashboard.routes(), token)
    done = threading.Event()

    def stop(*_):
        done.set()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    watch_daemon(args.daemon_pid, lambda: os._exit(0))   # the node is gone: nothing to tidy
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 1.0},
                     name="zray-dashboard-http", daemon=True).start()
    threading.Thread(target=dashboard.sample_forever, name="zray-dashboard-sampler",
                     daemon=True).start()
    log.info("dashboard of node %s at %s", node["node_id"], url)
    done.wait()
    dashboard.stop()
    server.shutdown()
    if dashboard._connected:
        import zray
        zray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
