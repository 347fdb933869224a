"""The dashboard options of `zray.init()` / `zray start`, checked in one place."""
import os

from .launch import DEFAULT_PORT


def dashboard_options(kwargs):
    """(port or None for no dashboard, host) from init()'s include_dashboard, dashboard_port,
    dashboard_host, else ZRAY_INCLUDE_DASHBOARD (0: none), ZRAY_DASHBOARD_PORT,
    ZRAY_DASHBOARD_HOST; the defaults: port 8265 on 127.0.0.1."""
    include = kwargs.get("include_dashboard")
    if include is None:
        include = os.environ.get("ZRAY_INCLUDE_DASHBOARD", "1").strip().lower() not in (
            "0", "false", "no", "off")
    elif not isinstance(include, bool):
        raise TypeError(f"include_dashboard must be a bool or None, got {include!r}")
    if not include:
        return None, "127.0.0.1"
    port = kwargs.get("dashboard_port")
    if port is None:
        raw = os.environ.get("ZRAY_DASHBOARD_PORT", str(DEFAULT_PORT))
        try:
            port = int(raw)
        except ValueError:
            raise ValueError(f"ZRAY_DASHBOARD_PORT must be a port number, got {raw!r}") from None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise ValueError(f"dashboard_port must be an int in 0..65535, got {port!r}")
    host = kwargs.get("dashboard_host") or os.environ.get("ZRAY_DASHBOARD_HOST", "127.0.0.1")
    if not isinstance(host, str):
        raise TypeError(f"dashboard_host must be a str, got {host!r}")
    return port, host
