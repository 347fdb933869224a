"""Fuzzing the wire decoder of every process type (issue 10, defect 5).

An authenticated peer (here: the same user over ipc, with our protocol version in its routing
id) sends malformed messages to a node daemon, a driver and a worker: undecodable headers,
headers of the wrong shape, every message type with payloads of random values and random
frames. None may kill the process: each is logged and dropped, and afterwards the cluster
still runs a task and an actor call. Bounded to a few seconds (max_examples); the crashes found
so far are kept as explicit examples (the corpus).
"""
import os
import pickle
import time

import pytest
import zmq

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings, strategies as st  # noqa: E402

import zray  # noqa: E402
from zray.transport import wire  # noqa: E402
from zray.transport.zmq_transport import identity_of  # noqa: E402

# Well-formed, these end a process or the node by design: not a decoder's failure.
_EXCLUDED = {wire.SHUTDOWN_NODE, wire.TERMINATE_ACTOR, wire.CLIENT_EXIT}
_TYPES = sorted(t for t in wire.NAMES if t not in _EXCLUDED)

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(),
                     st.text(max_size=20), st.binary(max_size=40))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=8)
_payloads = st.lists(_values, max_size=8).map(tuple)


def _ends_a_process(value):
    """A random value that happens to be a well-formed (SHUTDOWN_NODE, ...) pair, say (4, ()),
    would stop the node by design; such values are not malformed."""
    try:
        return isinstance(value, (tuple, list)) and len(value) == 2 and value[0] in _EXCLUDED
    except TypeError:   # an unhashable first element
        return False


_headers = st.one_of(
    st.binary(max_size=120),                                                  # not a pickle
    _values.filter(lambda v: not _ends_a_process(v))
           .map(lambda v: pickle.dumps(v, protocol=5)),                       # wrong shape
    st.tuples(st.sampled_from(_TYPES), _payloads).map(lambda h: pickle.dumps(h, protocol=5)),
    st.tuples(st.sampled_from(_TYPES), _values).map(lambda h: pickle.dumps(h, protocol=5)),
)
_frames = st.lists(st.binary(max_size=64), max_size=3)

# The corpus: messages that killed a process before the fix.
_CORPUS = [
    (b"not a pickle", []),                                       # undecodable header
    (pickle.dumps(5), []),                                       # a header that is no pair
    (pickle.dumps(([1], ())), []),                               # an unhashable message type
    (pickle.dumps((wire.EXECUTE_TASK, (1, 2))), []),             # a task that is no TaskSpec
    (pickle.dumps((wire.ACTOR_TASK, ("x",))), []),
    (pickle.dumps((wire.ACTOR_CALL, tuple(range(15)))), []),     # a spec of garbage fields
    (pickle.dumps((wire.TASK_RESULT, (b"x", 0, None, False))), [b"junk"]),
]


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    if zray.is_initialized():
        zray.shutdown()
    zray.init(num_cpus=1)

    @zray.remote
    class Echo:
        def address(self):
            return zray.core.runtime.current().address

        def echo(self, x):
            return x

    actor = Echo.remote()
    worker = zray.get(actor.address.remote(), timeout=60)
    core = zray.core.runtime.current()
    ctx = zmq.Context()
    me = f"ipc://{tmp_path_factory.mktemp('fuzz')}/fuzzer"
    socks = []
    for address in (core.daemon, core.address, worker):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, identity_of(me))
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        socks.append(sock)
    yield socks, actor
    for sock in socks:
        sock.close(0)
    ctx.term()
    zray.shutdown()


def _send_everywhere(socks, header, frames):
    for sock in socks:
        sock.send_multipart([header, *frames])


def _still_serving(actor):
    @zray.remote
    def one():
        return 1
    assert zray.get(one.remote(), timeout=60) == 1
    assert zray.get(actor.echo.remote("still here"), timeout=60) == "still here"
    assert zray.cluster_resources()["CPU"] == 1


def test_the_corpus_kills_nobody(targets):
    socks, actor = targets
    for header, frames in _CORPUS:
        _send_everywhere(socks, header, frames)
    time.sleep(0.5)
    _still_serving(actor)


@settings(max_examples=int(os.environ.get("ZRAY_FUZZ_EXAMPLES", "300")), deadline=None,
          suppress_health_check=list(HealthCheck), database=None)
@given(header=_headers, frames=_frames)
@example(header=_CORPUS[0][0], frames=[])
def test_random_messages_kill_nobody(targets, header, frames):
    socks, _ = targets
    _send_everywhere(socks, header, frames)


def test_after_the_fuzz_everyone_serves(targets):
    socks, actor = targets
    time.sleep(0.5)
    _still_serving(actor)


def test_a_malformed_message_is_logged_with_its_sender(tmp_path):
    import logging

    class Capture(logging.Handler):
        text = ""

        def emit(self, record):
            Capture.text += record.getMessage() + "\n"
    capture = Capture(logging.WARNING)
    logging.getLogger("zray.core").addHandler(capture)
    from zray.core.inbox import Inbox
    from zray.transport.zmq_transport import Transport
    transport = Transport(f"ipc://{tmp_path}/me")
    inbox = Inbox(transport, lambda: False, lambda: None, lambda: False)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sender = f"ipc://{tmp_path}/sender"
    sock.setsockopt(zmq.IDENTITY, identity_of(sender))
    sock.connect(transport.address)
    try:
        sock.send(b"garbage")
        deadline = time.monotonic() + 10
        while "malformed" not in capture.text and time.monotonic() < deadline:
            inbox.read_until(lambda: False, time.monotonic() + 0.2)
        assert f"dropped a malformed message from {sender}" in capture.text
    finally:
        logging.getLogger("zray.core").removeHandler(capture)
        sock.close(0)
        ctx.term()
        transport.close()
