"""`zray debug`: list the paused breakpoints of the whole cluster and attach a pdb to one.

    zray debug                 list, then ask which to attach (enter: refresh, q: quit)
    zray debug --list          list and exit
    zray debug ID|INDEX        attach to that breakpoint at once

Attaching bridges this terminal to the breakpoint's socket: pdb's output appears here and each
line typed goes to pdb; the session ends when pdb continues the task (`c`) or the task ends.
"""
import argparse
import os
import select
import socket
import sys
import time

CONNECT_TIMEOUT_S = 10.0


def _table(breakpoints):
    lines = [f"Active breakpoints ({len(breakpoints)}):"]
    now = time.time()
    for i, bp in enumerate(breakpoints):
        where = f"{os.path.basename(bp.get('filename') or '?')}:{bp.get('lineno')}"
        what = bp.get("actor") or bp.get("task") or "-"
        kind = "post-mortem" if bp.get("post_mortem") else bp.get("kind", "pdb")
        lines.append(f"  {i:>3}  {bp['breakpoint_id']:<24} {kind:<11} {what:<28} {where:<28} "
                     f"pid {bp.get('pid')}  node {str(bp.get('node_id'))[:8]}  "
                     f"{now - bp.get('time', now):.0f}s ago")
    return "\n".join(lines)


def _choose(breakpoints, wanted):
    for bp in breakpoints:
        if bp["breakpoint_id"] == wanted:
            return bp
    if wanted.isdigit() and int(wanted) < len(breakpoints):
        return breakpoints[int(wanted)]
    return None


def attach(bp, stdin=None, stdout=None):
    """Bridge stdin/stdout to the breakpoint's pdb until the session ends."""
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    if bp.get("kind") == "debugpy":
        stdout.write(f"breakpoint {bp['breakpoint_id']} waits for a DAP client: attach VS Code "
                     f"(or any debugpy client) to {bp['host']}:{bp['port']}\n")
        return 0
    conn = socket.create_connection((bp["host"], bp["port"]), timeout=CONNECT_TIMEOUT_S)
    conn.settimeout(None)
    in_fd = stdin.fileno()
    try:
        while True:
            ready, _, _ = select.select([conn, in_fd], [], [])
            if conn in ready:
                data = conn.recv(65536)
                if not data:
                    break
                stdout.write(data.decode(errors="replace"))
                stdout.flush()
            if in_fd in ready:
                line = os.read(in_fd, 4096)
                if not line:
                    conn.shutdown(socket.SHUT_WR)
                    continue
                conn.sendall(line)
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        conn.close()
    stdout.write("\nzray debug: session ended\n")
    stdout.flush()
    return 0


def main(argv):
    p = argparse.ArgumentParser(prog="zray debug", description=__doc__.split("\n")[0])
    p.add_argument("breakpoint", nargs="?", help="a breakpoint id or index to attach to")
    p.add_argument("--address", default=None, help="the cluster (default: ZRAY_ADDRESS, else "
                   "this host's only node)")
    p.add_argument("--list", action="store_true", help="list and exit")
    args = p.parse_args(argv)
    import zray

    from .registry import list_breakpoints
    from ... import logs
    logs.configure_stderr_only()
    try:
        zray.init(address=args.address or os.environ.get("ZRAY_ADDRESS") or "auto",
                  namespace="_zray_debug_cli")
    except (ConnectionError, ValueError) as exc:
        print(f"zray debug: {exc}", file=sys.stderr)
        return 1
    try:
        breakpoints = list_breakpoints()
        if args.list:
            print(_table(breakpoints))
            return 0
        if args.breakpoint is not None:
            bp = _choose(breakpoints, args.breakpoint)
            if bp is None:
                print(f"zray debug: no paused breakpoint {args.breakpoint!r}\n{_table(breakpoints)}",
                      file=sys.stderr)
                return 1
            return attach(bp)
        while True:
            print(_table(breakpoints))
            sys.stdout.write("Enter breakpoint index or id (enter: refresh, q: quit): ")
            sys.stdout.flush()
            answer = sys.stdin.readline()
            if not answer or answer.strip().lower() in ("q", "quit", "exit"):
                return 0
            answer = answer.strip()
            if answer:
                bp = _choose(breakpoints, answer)
                if bp is None:
                    print(f"no breakpoint {answer!r}")
                else:
                    return attach(bp)
            breakpoints = list_breakpoints()
    finally:
        zray.shutdown()
