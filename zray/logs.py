"""Logging for every zray process: `logging.getLogger("zray.<subsystem>")`, files in the session.

Operators read the files, users read one clear warning:
- node daemons and workers write `<session>/logs/<process>.log` (size-bounded, rotated once,
  so a chatty run cannot fill the disk: MAX_BYTES x (BACKUPS + 1) per process at most);
- a driver writes the same file for its own process and also shows WARNING and above on
  stderr, one line each, prefixed `zray:` (a user sees a warning, not a traceback dump);
- `ZRAY_LOG_LEVEL` (DEBUG, INFO, WARNING, ...) sets the level of the files; default INFO.

Subsystems name their logger after their folder: `zray.node`, `zray.core`, `zray.mesh`,
`zray.store`, `zray.transport`, `zray.util.collective`, `zray.launch`, ... Modules call
`logging.getLogger(__name__)` only where the module path is the subsystem name they want.
"""
import logging
import logging.handlers
import os
import sys

MAX_BYTES = 8 * 1024 * 1024   # one log file; with BACKUPS=1 a process keeps at most 16 MiB
BACKUPS = 1
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d %(threadName)s] %(message)s"
USER_FORMAT = "zray: %(levelname)s: %(message)s"
ENV_LEVEL = "ZRAY_LOG_LEVEL"

_root = logging.getLogger("zray")
_installed = []   # handlers this module added to the zray logger, removed by reset()


def level_from_env(default=logging.INFO):
    """The level named by ZRAY_LOG_LEVEL, or `default`; an unknown name is a clear error."""
    name = os.environ.get(ENV_LEVEL, "").strip().upper()
    if not name:
        return default
    level = logging.getLevelName(name)
    if not isinstance(level, int):
        raise ValueError(f"{ENV_LEVEL}={name!r} is not a logging level "
                         f"(use DEBUG, INFO, WARNING, ERROR or CRITICAL)")
    return level


def configure(session_dir, process_name, user_facing=False):
    """Send the `zray` loggers of this process to `<session_dir>/logs/<process_name>.log`.

    `user_facing` (drivers): WARNING and above also go to stderr in one line. Calling it again
    (a new session in the same process) replaces what the previous call installed."""
    reset()
    level = level_from_env()
    path = os.path.join(session_dir, "logs", f"{process_name}.log")
    if not os.path.isdir(session_dir):
        # The session is gone (a worker that started as its node shut down): making its logs
        # directory again would leave a stray directory behind; this process ends soon.
        return
    try:
        os.mkdir(os.path.dirname(path), 0o700)
    except FileExistsError:
        pass
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS,
                                                   delay=True)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.setLevel(level)
    _add(handler)
    if user_facing:
        console = _StderrHandler()
        console.setFormatter(logging.Formatter(USER_FORMAT))
        console.setLevel(logging.WARNING)
        _add(console)
    # A driver keeps its own application's logging config: zray's records stop at "zray".
    _root.propagate = False
    _root.setLevel(min(level, logging.WARNING) if user_facing else level)
    return path


def configure_stderr_only():
    """Before any session exists (e.g. the CLI): warnings to stderr, nothing to files."""
    reset()
    console = _StderrHandler()
    console.setFormatter(logging.Formatter(USER_FORMAT))
    console.setLevel(logging.WARNING)
    _add(console)
    _root.propagate = False
    _root.setLevel(level_from_env(logging.WARNING))


def reset():
    """Remove what configure() installed (shutdown(); tests)."""
    while _installed:
        handler = _installed.pop()
        _root.removeHandler(handler)
        try:
            handler.close()
        except Exception:   # a handler closing a file that is already gone: nothing to keep
            pass
    _root.propagate = True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted: tools and test harnesses
    replace sys.stderr after zray was configured, and the user must still see the line."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _add(handler):
    _root.addHandler(handler)
    _installed.append(handler)
