"""Starting a node's dashboard process (run by the node daemon when it is ready).

The daemon binds the listening socket itself and hands it to the child (`--fd`): the URL is
known, and written to `<session>/dashboard.json`, before the node says it is ready, so
`zray.init()` and `zray start` print it without waiting for the dashboard's imports. Port 8265
by default (ZRAY_DASHBOARD_PORT / `dashboard_port`); when it is taken (several clusters on one
host) a free port is used and the log says so. The dashboard watches the daemon's pid and exits
with it; the daemon also stops it on shutdown.

Binding to anything but loopback requires a token (Ray's open job API was CVE-2023-48022):
`dashboard_token()` derives it from the cluster secret, or for a node without one a random
token is kept in `<session>/dashboard_token` (mode 0600).
"""
import hashlib
import json
import logging
import os
import subprocess
import sys

log = logging.getLogger("zray.dashboard")

DEFAULT_PORT = 8265
STOP_GRACE_S = 2.0


def is_loopback(host):
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def dashboard_token(session_dir, secret_file=None, create=False):
    """The token a non-loopback dashboard of this node requires, or None (none exists)."""
    if secret_file:
        try:
            with open(secret_file, "rb") as f:
                return hashlib.sha256(b"zray-dashboard\0" + f.read().strip()).hexdigest()
        except OSError:
            pass
    path = os.path.join(session_dir, "dashboard_token")
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        if not create:
            return None
    token = os.urandom(24).hex()
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(token)
    return token


def url_of(host, port):
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


class DashboardProcess:
    def __init__(self, proc, url, host, port):
        self.proc, self.url, self.host, self.port = proc, url, host, port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_dashboard(session_dir, node_file, host="127.0.0.1", port=DEFAULT_PORT, secret_file=None):
    """Bind, start the dashboard process, record its URL; None (logged) if it cannot bind."""
    try:
        # Imported here: every zray.init() reads the dashboard's info (read_dashboard_info),
        # and http.server's imports (~25 ms) are only the starting node's.
        from .http import listening_socket
        sock = listening_socket(host, port)
    except OSError as exc:
        log.warning("the dashboard cannot listen on %s:%s: %s; no dashboard on this node",
                    host, port, exc)
        return None
    actual = sock.getsockname()[1]
    if port and actual != port:
        log.info("dashboard port %d is taken; using %d", port, actual)
    token_args = []
    if not is_loopback(host):
        dashboard_token(session_dir, secret_file, create=True)
        token_args = ["--require-token"]
    logs = os.path.join(session_dir, "logs", "dashboard")
    try:
        with open(logs + ".out", "ab") as out, open(logs + ".err", "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "zray.dashboard", "--session", session_dir,
                 "--node-file", node_file, "--fd", str(sock.fileno()), "--host", host,
                 "--daemon-pid", str(os.getpid())] + token_args,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, pass_fds=[sock.fileno()])
    finally:
        sock.close()
    url = url_of(host, actual)
    info = {"url": url, "host": host, "port": actual, "pid": proc.pid,
            "token_required": bool(token_args)}
    tmp = os.path.join(session_dir, f"dashboard.json.{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, os.path.join(session_dir, "dashboard.json"))
    return DashboardProcess(proc, url, host, actual)


def read_dashboard_info(session_dir):
    """What start_dashboard recorded for this session ({url, host, port, pid}), or None."""
    try:
        with open(os.path.join(session_dir, "dashboard.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
