"""A tiny HTTP endpoint per node for Prometheus: GET /metrics (stdlib only).

Started by the node daemon when ZRAY_METRICS_EXPORT_PORT is set (`zray start
--metrics-export-port N`); bound to 127.0.0.1 unless ZRAY_METRICS_EXPORT_HOST says otherwise
(the figures are not secret, but nothing zray serves listens on every interface by default).
Its thread asks the daemon for the text over the daemon's own ipc socket (a STATE_QUERY for
"metrics"), so the daemon's state is read only by the daemon's loop. The dashboard (port
8265) serves the same text through the same query.
"""
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .prometheus import CONTENT_TYPE

log = logging.getLogger("zray.state")


def metrics_text(node, timeout=5.0):
    """The exposition of the node described by `node` ({"address", "session"})."""
    from .client import ask_node
    from .query import StateQuery
    return ask_node(node, StateQuery("metrics", timeout=timeout, scope="node"))["text"]


class _Handler(BaseHTTPRequestHandler):
    node = None

    def do_GET(self):
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "only /metrics is served here")
            return
        try:
            body = metrics_text(self.node).encode()
        except Exception as exc:      # the node is busy or going: say so, the scraper retries
            self.send_error(503, f"the node did not answer: {exc}")
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        log.debug("metrics http: " + fmt, *args)


def serve(node, port, host="127.0.0.1"):
    """Start serving in a daemon thread; returns the server (server.server_address has the
    port, when port 0 asked for any)."""
    handler = type("MetricsHandler", (_Handler,), {"node": dict(node)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="zray-metrics-http", daemon=True)
    thread.start()
    return server
