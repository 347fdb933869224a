"""The distributed debugger: breakpoint() in a task or actor pauses it and registers it;
`zray debug`, driven through a pseudo-terminal, attaches, prints a variable and continues the
task, which then returns; post-mortem sessions with ZRAY_DEBUG_POST_MORTEM=1."""
import os
import pty
import select
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.timeout(240)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Terminal:
    """A command on a pseudo-terminal: send lines, read until a text shows up."""

    def __init__(self, args, env):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     cwd=REPO, close_fds=True)
        os.close(slave)
        self.seen = ""

    def expect(self, text, timeout=60):
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} did not appear; the terminal shows:\n{self.seen}")
            if select.select([self.master], [], [], left)[0]:
                try:
                    data = os.read(self.master, 4096)
                except OSError:      # the command exited
                    data = b""
                if not data:
                    if text not in self.seen:
                        raise AssertionError(f"{text!r} never appeared:\n{self.seen}")
                    break
                self.seen += data.decode(errors="replace")
        return self.seen

    def send(self, line):
        os.write(self.master, (line + "\n").encode())

    def close(self):
        try:
            self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            os.close(self.master)


def _wait_breakpoints(n=1, timeout=60):
    from zray.util.debug.registry import list_breakpoints
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list_breakpoints()
        if len(found) >= n:
            return found
        time.sleep(0.05)
    raise AssertionError("no breakpoint registered")


def _debug_env():
    import zray
    session = zray.api._context_info()["session_dir"]
    return dict(os.environ, PYTHONPATH=REPO, ZRAY_ADDRESS=os.path.join(session, "node.json"))


def _attach(breakpoint_id, env, dialogue):
    """`zray debug <breakpoint_id>` in a terminal: at the prompt, each (command, expected) of
    the dialogue is typed and its expected text (None: nothing) awaited."""
    term = Terminal([sys.executable, "-m", "zray.scripts.cli", "debug", breakpoint_id], env)
    try:
        term.expect("(Pdb)")
        for command, expected in dialogue:
            term.send(command)
            if expected is not None:
                term.expect(expected)
    finally:
        term.close()
    return term


def test_breakpoint_in_task_attach_print_continue(zray_cluster):
    zray = zray_cluster(num_cpus=2)

    @zray.remote
    def paused(a):
        secret_value = a * 6
        breakpoint()
        return secret_value + 1

    ref = paused.remote(7)
    started = time.monotonic()
    found = _wait_breakpoints()
    registered_after = time.monotonic() - started
    assert found[0]["task"] and "paused" in found[0]["task"]
    assert found[0]["function"] == "paused" and found[0]["kind"] == "pdb"
    ready, _ = zray.wait([ref], timeout=0.5)
    assert not ready                              # the task really waits
    term = Terminal([sys.executable, "-m", "zray.scripts.cli", "debug"], _debug_env())
    try:
        term.expect("Enter breakpoint index")
        assert found[0]["breakpoint_id"] in term.seen
        term.send("0")
        term.expect("(Pdb)")
        term.send("p ('secret', secret_value)")
        term.expect("('secret', 42)")
        term.send("where")
        term.expect("executor.py")   # the stack above the task, as `where` shows it
        term.send("c")
        term.expect("session ended")
    finally:
        term.close()
    assert term.proc.returncode == 0
    assert zray.get(ref, timeout=60) == 43
    from zray.util.debug.registry import list_breakpoints
    assert list_breakpoints() == []
    print(f"breakpoint registered {registered_after * 1000:.0f} ms after submit")


def test_breakpoint_in_actor_and_list(zray_cluster):
    zray = zray_cluster(num_cpus=2)

    @zray.remote
    class Counter:
        def __init__(self):
            self.count = 5

        def bump(self):
            self.count += 1
            breakpoint()
            return self.count

    counter = Counter.remote()
    ref = counter.bump.remote()
    found = _wait_breakpoints()
    assert found[0]["actor"] == "Counter"
    env = _debug_env()
    listed = subprocess.run([sys.executable, "-m", "zray.scripts.cli", "debug", "--list"],
                            capture_output=True, text=True, env=env, timeout=60, cwd=REPO)
    assert "Active breakpoints (1)" in listed.stdout and "Counter" in listed.stdout
    bad = subprocess.run([sys.executable, "-m", "zray.scripts.cli", "debug", "nonexistent"],
                         capture_output=True, text=True, env=env, timeout=60, cwd=REPO)
    assert bad.returncode == 1 and "no paused breakpoint" in bad.stderr
    _attach(found[0]["breakpoint_id"], env, [
        ("p ('count', self.count)", "('count', 6)"),
        ("self.count = 100", None),
        ("p ('now', self.count)", "('now', 100)"),
        ("c", "session ended"),
    ])
    assert zray.get(ref, timeout=60) == 100


def test_post_mortem_on_unhandled_exception(zray_cluster, monkeypatch):
    monkeypatch.setenv("ZRAY_DEBUG_POST_MORTEM", "1")
    zray = zray_cluster(num_cpus=1)

    @zray.remote
    def broken():
        local_reason = "bad-input-17"
        raise ValueError(local_reason)

    ref = broken.remote()
    found = _wait_breakpoints()
    assert found[0]["post_mortem"] is True
    _attach("0", _debug_env(), [
        ("p ('reason', local_reason)", "('reason', 'bad-input-17')"),
        ("c", "session ended"),
    ])
    with pytest.raises(ValueError, match="bad-input-17"):
        zray.get(ref, timeout=60)


def test_breakpoint_in_driver_is_plain_pdb(tmp_path):
    """A driver keeps Python's own pdb (PYTHONBREAKPOINT is set only in workers)."""
    script = tmp_path / "drv.py"
    script.write_text("import sys\nvalue = 99\nbreakpoint()\nprint('after', value)\n")
    r = subprocess.run([sys.executable, str(script)], input="p value\nc\n", capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, PYTHONPATH=REPO))
    assert "99" in r.stdout and "after 99" in r.stdout


def _dap_send(sock, seq, command, arguments=None):
    import json
    body = json.dumps({"seq": seq, "type": "request", "command": command,
                       "arguments": arguments or {}}).encode()
    sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)


def _dap_read(sock, buffer, timeout=60):
    """The next DAP message (a dict); buffer is a bytearray kept between calls."""
    import json
    import socket as socket_mod
    deadline = time.monotonic() + timeout
    while True:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            length = int([h for h in buffer[:head_end].split(b"\r\n")
                          if h.lower().startswith(b"content-length")][0].split(b":")[1])
            if len(buffer) >= head_end + 4 + length:
                msg = json.loads(bytes(buffer[head_end + 4:head_end + 4 + length]))
                del buffer[:head_end + 4 + length]
                return msg
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket_mod.timeout:
            raise AssertionError("no DAP message in time") from None
        if not data:
            raise AssertionError("the DAP endpoint closed")
        buffer.extend(data)


def test_debugpy_endpoint_when_asked(zray_cluster, monkeypatch):
    pytest.importorskip("debugpy")
    import socket
    monkeypatch.setenv("ZRAY_DEBUG", "debugpy")
    zray = zray_cluster(num_cpus=1)

    @zray.remote
    def under_vscode():
        answer = 41
        breakpoint()
        return answer + 1

    ref = under_vscode.remote()
    found = _wait_breakpoints(timeout=90)
    assert found[0]["kind"] == "debugpy" and found[0]["port"] > 0
    sock = socket.create_connection((found[0]["host"], found[0]["port"]), timeout=30)
    buffer = bytearray()
    try:
        _dap_send(sock, 1, "initialize", {"adapterID": "zray-test", "clientID": "zray-test"})
        _dap_send(sock, 2, "attach", {"justMyCode": False})
        seen = []
        while not any(m.get("event") == "initialized" for m in seen):
            seen.append(_dap_read(sock, buffer))
        assert any(m.get("command") == "initialize" and m.get("success") for m in seen)
        _dap_send(sock, 3, "configurationDone")
        stopped = None
        while stopped is None:
            msg = _dap_read(sock, buffer)
            if msg.get("event") == "stopped":
                stopped = msg
        _dap_send(sock, 4, "continue", {"threadId": stopped["body"]["threadId"]})
        assert zray.get(ref, timeout=60) == 42
        _dap_send(sock, 5, "disconnect", {})
    finally:
        sock.close()


def test_remote_steps_into_the_called_task(zray_cluster):
    zray = zray_cluster(num_cpus=2)

    @zray.remote
    def callee(x):
        doubled = x * 2
        return doubled

    @zray.remote
    def caller():
        breakpoint()
        return zray.get(callee.remote(21))

    ref = caller.remote()
    (first,) = _wait_breakpoints()
    env = _debug_env()
    _attach(first["breakpoint_id"], env, [
        ("remote", "session ended"),
    ])
    from zray.util.debug.registry import list_breakpoints
    deadline = time.monotonic() + 60
    while not list_breakpoints() and time.monotonic() < deadline:
        time.sleep(0.05)
    (second,) = list_breakpoints()
    assert second["task"].endswith("callee") and second.get("step_into")
    _attach(second["breakpoint_id"], env, [
        ("p ('x', x)", "('x', 21)"),
        ("c", "session ended"),
    ])
    assert zray.get(ref, timeout=60) == 42


def _next_breakpoint(timeout=60):
    from zray.util.debug.registry import list_breakpoints
    deadline = time.monotonic() + timeout
    while not list_breakpoints() and time.monotonic() < deadline:
        time.sleep(0.05)
    found = list_breakpoints()
    assert len(found) == 1, found
    return found[0]


def test_get_steps_out_to_where_the_result_is_consumed(zray_cluster):
    zray = zray_cluster(num_cpus=2)

    @zray.remote
    def callee(x):
        doubled = x * 2
        breakpoint()
        return doubled

    @zray.remote
    def caller():
        value = zray.get(callee.remote(21))
        consumed = value + 1
        return consumed

    ref = caller.remote()
    (first,) = _wait_breakpoints()
    assert first["function"] == "callee"
    env = _debug_env()
    _attach(first["breakpoint_id"], env, [
        ("get", "session ended"),
    ])
    second = _next_breakpoint()
    assert second["function"] == "caller" and second.get("step_out")
    assert second["breakpoint_id"] != first["breakpoint_id"]
    ready, _ = zray.wait([ref], timeout=0.5)
    assert not ready                              # the caller waits at the get
    _attach(second["breakpoint_id"], env, [
        ("p ('value', value)", "('value', 42)"),
        ("c", "session ended"),
    ])
    assert zray.get(ref, timeout=60) == 43
    from zray.util.debug.registry import list_breakpoints
    assert list_breakpoints() == []


def test_get_pauses_the_process_that_gets_the_result_not_only_its_owner(zray_cluster):
    """The owner (`submitter`) only hands the ref on; `consumer`, a borrower, calls get on it
    and is the one that pauses, as in Ray, where any process getting the ref stops."""
    zray = zray_cluster(num_cpus=3)

    @zray.remote
    def callee(x):
        doubled = x * 2
        breakpoint()
        return doubled

    @zray.remote
    def consumer(refs):
        got = zray.get(refs[0])
        return got + 1

    @zray.remote
    def submitter():
        inner = callee.remote(21)
        return zray.get(consumer.remote([inner]))     # never gets `inner` itself

    ref = submitter.remote()
    (first,) = _wait_breakpoints()
    assert first["function"] == "callee"
    env = _debug_env()
    _attach(first["breakpoint_id"], env, [
        ("get", "session ended"),
    ])
    second = _next_breakpoint()
    assert second["function"] == "consumer" and second.get("step_out"), second
    assert second["pid"] != first["pid"]
    _attach(second["breakpoint_id"], env, [
        ("p ('got', got)", "('got', 42)"),
        ("c", "session ended"),
    ])
    assert zray.get(ref, timeout=60) == 43
    from zray.util.debug.registry import list_breakpoints
    assert list_breakpoints() == []


def test_get_with_an_argument_is_refused_and_the_session_goes_on(zray_cluster):
    zray = zray_cluster(num_cpus=2)

    @zray.remote
    def paused():
        breakpoint()
        return "done"

    ref = paused.remote()
    (first,) = _wait_breakpoints()
    _attach(first["breakpoint_id"], _debug_env(), [
        ("get extra", "get takes no argument"),
        ("p 'still here'", "'still here'"),
        ("c", "session ended"),
    ])
    assert zray.get(ref, timeout=60) == "done"


def _worker_row(pid, want_paused, timeout=30):
    from zray.util.state import list_workers
    deadline = time.monotonic() + timeout
    while True:
        rows = [w for w in list_workers(filters=[("pid", "=", pid)], limit=10_000, detail=True) if w.is_alive]
        if rows and (rows[0].num_paused_threads > 0) == want_paused:
            return rows[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker of pid {pid} never showed paused={want_paused}: "
                                 f"{rows}")
        time.sleep(0.1)


def test_list_workers_shows_a_paused_worker_debugger_port(zray_cluster):
    zray = zray_cluster(num_cpus=2)

    @zray.remote
    def paused():
        breakpoint()
        return os.getpid()

    ref = paused.remote()
    (bp,) = _wait_breakpoints()
    row = _worker_row(bp["pid"], want_paused=True)
    assert row.num_paused_threads == 1 and row.debugger_port == bp["port"]
    from zray.util.state import list_workers
    others = [w for w in list_workers(limit=10_000, detail=True) if w.pid != bp["pid"]]
    assert others and all(w.num_paused_threads == 0 and w.debugger_port is None for w in others)
    _attach(bp["breakpoint_id"], _debug_env(), [
        ("c", "session ended"),
    ])
    assert zray.get(ref, timeout=60) == bp["pid"]
    row = _worker_row(bp["pid"], want_paused=False)
    assert row.debugger_port is None and row.num_paused_threads == 0


DRIVER_GET = """
import os, zray
zray.init(num_cpus=2)

@zray.remote
def callee(x):
    doubled = x * 2
    breakpoint()
    return doubled

print("NODE", os.path.join(zray.api._context_info()["session_dir"], "node.json"), flush=True)
value = zray.get(callee.remote(21))
print("got", value + 1, flush=True)
zray.shutdown()
"""


def test_get_from_a_task_called_by_the_driver_pauses_the_driver_in_its_own_pdb(tmp_path):
    script = tmp_path / "drv_get.py"
    script.write_text(DRIVER_GET)
    env = dict(os.environ, PYTHONPATH=REPO, ZRAY_TMPDIR=str(tmp_path / "zt"))
    driver = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, cwd=str(tmp_path))
    try:
        line = driver.stdout.readline()
        while line and not line.startswith("NODE "):
            line = driver.stdout.readline()
        assert line.startswith("NODE "), "the driver did not start"
        debug_env = dict(env, ZRAY_ADDRESS=line.split(" ", 1)[1].strip())
        term = Terminal([sys.executable, "-m", "zray.scripts.cli", "debug"], debug_env)
        try:
            deadline = time.monotonic() + 60
            term.expect("Enter breakpoint index")
            while "callee" not in term.seen and time.monotonic() < deadline:
                term.send("")                       # refresh until the breakpoint is listed
                time.sleep(0.5)
                term.expect("Enter breakpoint index")
            term.send("0")
            term.expect("(Pdb)")
            term.send("get")
            term.expect("session ended")
        finally:
            term.close()
        out, _ = driver.communicate("p ('value', value)\nc\n", timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
    assert "('value', 42)" in out and "got 43" in out, out
    assert driver.returncode == 0, out
