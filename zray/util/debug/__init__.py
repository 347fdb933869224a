"""The distributed debugger: `breakpoint()` inside a task or an actor method pauses it, opens a
pdb on a TCP socket and registers it (registry.py) so `zray debug` on any host lists it and
attaches; `c` continues the task. Workers set PYTHONBREAKPOINT=zray.util.debug.set_trace (unless
the user set it), so plain `breakpoint()` works; drivers keep the ordinary pdb.

- Stepping across tasks, as in Ray's debugger: `remote` pauses the next task or actor call the
  paused code submits at its first line; `get` lets the paused task finish and pauses the
  process that calls zray.get on its result, right after that get returns, as Ray does: the
  owner marks those return ids when the result arrives (TASK_RESULT's debugger_get flag) and
  passes the mark on with the value to every borrower that asks for it (OBJ_STATUS), so a get
  in the owner or in any task or actor the ref was handed to stops.
  Each step is a new breakpoint: attach to it with `zray debug`.
- Post-mortem: with ZRAY_DEBUG_POST_MORTEM=1 (or RAY_DEBUG_POST_MORTEM=1) an exception that a
  task or an actor method does not handle opens the same kind of session at the raise, before
  the error goes back to the caller.
- debugpy: with ZRAY_DEBUG=debugpy (or RAY_DEBUG=1) and debugpy installed, the breakpoint waits
  for a DAP client (VS Code "attach" to host:port) instead; the record says kind "debugpy".

The socket is bound to 127.0.0.1 on a node without a mesh, else to the node's mesh IP, so
`zray debug` can attach from another host of the cluster. A paused breakpoint waits for its
debugger as long as it takes (that is the point); cancelling the task (SIGINT) ends the wait.
"""
import logging
import os
import pdb
import socket
import sys
import time

from . import registry

log = logging.getLogger("zray.util.debug")

__all__ = ["set_trace", "post_mortem", "post_mortem_enabled"]


from .hook import post_mortem_enabled  # noqa: E402  (light: workers import it at start)


def _debugpy_wanted():
    wanted = os.environ.get("ZRAY_DEBUG", os.environ.get("RAY_DEBUG", "")).strip().lower()
    return wanted in ("1", "debugpy", "true")


class _SocketPdb(pdb.Pdb):
    """pdb reading and writing a connected socket; `c`, `q` and EOF end the session (the task
    goes on)."""

    def __init__(self, conn):
        self._conn = conn
        self._file = conn.makefile("rw", buffering=1, encoding="utf-8", errors="replace",
                                   newline="\n")
        super().__init__(stdin=self._file, stdout=self._file, nosigint=True, readrc=False)
        self.use_rawinput = False
        self.prompt = "(Pdb) "

    def _end(self):
        registry.thread_resumed()      # the session is over: the thread runs again
        for closer in (self._file.close, self._conn.close):
            try:
                closer()
            except OSError:
                pass

    def do_continue(self, arg):
        result = super().do_continue(arg)
        self._end()
        return result

    do_c = do_cont = do_continue

    def do_quit(self, arg):
        """Detach: the task continues (it is not killed)."""
        return self.do_continue(arg)

    do_q = do_exit = do_quit

    def do_EOF(self, arg):
        return self.do_continue(arg)

    def do_remote(self, arg):
        """remote: continue to the next task or actor call this code submits and pause there,
        in the worker that runs it (attach to it with `zray debug`), as Ray's debugger does."""
        from ...core import runtime
        runtime.current()._core.context.debug_step_into = True
        self.message("zray: the next remote call will pause at its first line; "
                     "attach to it with `zray debug`")
        return self.do_continue(arg)

    def do_get(self, arg):
        """get: leave this task (it runs to its end) and pause where its caller's zray.get
        returns its result, as Ray's debugger does; attach there with `zray debug`."""
        from ...core import runtime
        if arg.strip():
            self.error(f"get takes no argument (got {arg.strip()!r})")
            return None
        context = runtime.current()._core.context
        if context.current_task_id is None or runtime.current().current_task() is None:
            self.error("get: not inside a task or an actor call")
            return None
        context.debug_step_out_task = context.current_task_id
        self.message("zray: this task continues; its caller pauses where zray.get returns its "
                     "result; attach to it with `zray debug`")
        return self.do_continue(arg)


def _bind_host():
    from ...core import runtime
    try:
        rt = runtime.current()
        mesh = getattr(rt._core, "node_info", {}).get("mesh_address")
    except Exception:
        mesh = None
    if mesh and mesh.startswith("tcp://"):
        from ...transport.address import host_of
        return host_of(mesh)
    return "127.0.0.1"


def _record(host, port, kind, frame, post_mortem):
    from ...core import runtime
    rt = runtime.current()
    task = rt.current_task()
    actor = rt.current_actor()
    code = frame.f_code if frame is not None else None
    return {"breakpoint_id": f"{rt.node_id[:8]}-{os.getpid()}-{os.urandom(3).hex()}",
            "host": host, "port": port, "kind": kind, "pid": os.getpid(),
            "node_id": rt.node_id, "worker_id": rt.worker_id, "job_id": rt.job_id,
            "task": task.name if task else None, "actor": actor.class_name if actor else None,
            "filename": code.co_filename if code else None,
            "lineno": frame.f_lineno if frame is not None else None,
            "function": code.co_name if code else None, "post_mortem": post_mortem,
            "time": time.time()}


def _wait_for_debugger(frame, post_mortem, task=None, step_out=False):
    """Listen, register, wait for `zray debug`; the connected socket."""
    host = _bind_host()
    server = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    server.bind((host, 0))
    server.listen(1)
    record = _record(host, server.getsockname()[1], "pdb", frame, post_mortem)
    if task is not None:          # a `remote` step: name the called task, not the wrapper
        record.update(task=task, function=task.rsplit(".", 1)[-1], step_into=True)
    if step_out:                  # a `get` step: paused where the result is consumed
        record.update(step_out=True)
    registry.register(record)
    registry.thread_paused(record["port"])
    what = "post-mortem debugger" if post_mortem else "breakpoint"
    sys.stderr.write(f"zray: {what} paused in {record['task'] or 'a task'} at "
                     f"{record['filename']}:{record['lineno']}; attach with `zray debug` "
                     f"(id {record['breakpoint_id']})\n")
    sys.stderr.flush()
    try:
        conn, _ = server.accept()
    except BaseException:
        registry.thread_resumed()
        raise
    finally:
        server.close()
        registry.unregister(record["breakpoint_id"])
    conn.sendall(f"zray: attached to {record['breakpoint_id']} (pid {record['pid']}, "
                 f"{record['task'] or ''})\n".encode())
    return conn


def _in_worker():
    from ...core import runtime
    return runtime.is_connected() and runtime.current().is_worker


def set_trace(*args, **kwargs):
    """`breakpoint()` in a worker: pause here until a debugger attaches."""
    frame = sys._getframe().f_back
    if not _in_worker():       # a driver (or a job's entrypoint): the ordinary pdb
        pdb.Pdb().set_trace(frame)
        return
    if _debugpy_wanted() and _debugpy_session(frame):
        return
    conn = _wait_for_debugger(frame, post_mortem=False)
    _SocketPdb(conn).set_trace(frame)


def pause_at_entry(function, name):
    """`function` wrapped so that calling it waits for a debugger and stops at its first line
    (the callee of a `remote` step)."""
    import functools

    @functools.wraps(function)
    def paused(*args, **kwargs):
        frame = sys._getframe()
        conn = _wait_for_debugger(frame, post_mortem=False, task=name)
        return _SocketPdb(conn).runcall(function, *args, **kwargs)
    return paused


def pause_after_get(frame):
    """The end of a `get` step: pause in `frame` (the code that called zray.get on the stepped
    task's result) at its next line; a driver gets the ordinary pdb, as breakpoint() does."""
    if not _in_worker():
        debugger = pdb.Pdb()
    else:
        debugger = _SocketPdb(_wait_for_debugger(frame, post_mortem=False, step_out=True))
    # Stop at the caller's next line, not at the first event anywhere (which would be zray's
    # own code dropping the temporary ObjectRef): set_trace's one set_step becomes a set_next.

    def next_line_of_caller():
        del debugger.set_step           # pdb's `step` command is the class's again
        debugger.set_next(frame)
    debugger.set_step = next_line_of_caller
    debugger.set_trace(frame)


def post_mortem(exc):
    """Open a session at the frame that raised `exc` (a task's unhandled exception)."""
    tb = exc.__traceback__
    if tb is None:
        return
    while tb.tb_next is not None:
        tb = tb.tb_next
    conn = _wait_for_debugger(tb.tb_frame, post_mortem=True)
    debugger = _SocketPdb(conn)
    debugger.reset()
    try:
        debugger.interaction(None, exc.__traceback__)
    finally:
        debugger._end()


def _debugpy_session(frame):
    """A DAP endpoint (VS Code attaches to it); False when debugpy is not installed."""
    try:
        import debugpy
    except ImportError:
        log.warning("ZRAY_DEBUG/RAY_DEBUG asks for debugpy, which is not installed; using pdb")
        return False
    host = _bind_host()
    listening = debugpy.listen((host, 0))
    port = listening[1] if isinstance(listening, tuple) else listening
    record = _record(host, port, "debugpy", frame, False)
    registry.register(record)
    registry.thread_paused(port)
    sys.stderr.write(f"zray: debugpy waiting for a client at {host}:{port} "
                     f"(id {record['breakpoint_id']})\n")
    try:
        debugpy.wait_for_client()
    finally:
        registry.unregister(record["breakpoint_id"])
        registry.thread_resumed()
    debugpy.breakpoint()
    return True
