"""What every worker runs at start (light: no pdb import until a breakpoint is hit)."""
import os

PYTHONBREAKPOINT = "zray.util.debug.set_trace"


def post_mortem_enabled():
    return any(os.environ.get(v, "") not in ("", "0") for v in
               ("ZRAY_DEBUG_POST_MORTEM", "RAY_DEBUG_POST_MORTEM"))


def _post_mortem(exc):
    from . import post_mortem
    post_mortem(exc)


def _step_into(function, name):
    from . import pause_at_entry
    return pause_at_entry(function, name)


def install_in_worker(executor):
    """breakpoint() goes to zray.util.debug.set_trace (unless the user chose another hook), and
    unhandled task exceptions open a post-mortem session when asked for."""
    os.environ.setdefault("PYTHONBREAKPOINT", PYTHONBREAKPOINT)
    executor.step_into_hook = _step_into
    if post_mortem_enabled():
        executor.post_mortem_hook = _post_mortem
