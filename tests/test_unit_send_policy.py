"""No silent sends: only a closed transport is quiet; any other failure is logged and fails the
request it belonged to (CoreWorker.send, Executor.send_result), without processes."""
import logging
from types import SimpleNamespace

import pytest

from zray.core.core_worker import CoreWorker
from zray.core.executor import Executor
from zray.objects import serialization
from zray.scheduling.task_spec import TaskSpec
from zray.transport import wire
from zray.transport.zmq_transport import TransportClosed


class _Transport:
    def __init__(self, *errors):
        self.errors = list(errors)
        self.sent = []

    def send(self, address, msg_type, payload=(), frames=()):
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append((address, msg_type, payload, list(frames)))


def _core(*errors):
    return SimpleNamespace(transport=_Transport(*errors), inbox=SimpleNamespace(running=True))


def test_a_closed_transport_is_quiet():
    core = _core(TransportClosed("closed"))
    assert CoreWorker.send(core, "ipc://peer", wire.TASK_RESULT, ()) is False


def test_any_other_failure_is_logged_and_raised(caplog):
    core = _core(ValueError("cannot pickle the payload"))
    with caplog.at_level(logging.ERROR, logger="zray.core"):
        with pytest.raises(ValueError):
            CoreWorker.send(core, "ipc://peer", wire.ACTOR_CALL, ())
    assert "could not send ACTOR_CALL to ipc://peer" in caplog.text


def test_a_reply_that_cannot_be_sent_becomes_an_error_reply():
    transport = _Transport(RuntimeError("boom"))
    core = SimpleNamespace(transport=transport, inbox=SimpleNamespace(running=True, handle=lambda *a: None),
                           context=SimpleNamespace(daemon="ipc://node", debug_step_out_task=None),
                           executor=None)
    core.send = lambda *args: CoreWorker.send(core, *args)
    executor = Executor(core)
    spec = TaskSpec(b"t" * 12, "job", "f", b"fid", [], [], 1, {}, 0, False, "ipc://owner")
    executor.send_result(spec, [(0, 0, None)], [b"value"], False)
    [(address, msg_type, payload, frames)] = transport.sent
    assert (address, msg_type) == ("ipc://owner", wire.TASK_RESULT)
    task_id, attempt, results, retryable = payload
    assert (task_id, attempt, retryable) == (spec.task_id, 0, False)
    flags, data, buffers = serialization.parse(frames[results[0][1]])
    error = serialization.deserialize(flags, data, buffers)
    assert "could not be sent to its owner" in str(error) and "boom" in str(error)


def test_a_reply_to_a_closed_transport_is_dropped_quietly():
    transport = _Transport(TransportClosed("closed"))
    core = SimpleNamespace(transport=transport, inbox=SimpleNamespace(running=True, handle=lambda *a: None),
                           context=SimpleNamespace(daemon="ipc://node", debug_step_out_task=None),
                           executor=None)
    core.send = lambda *args: CoreWorker.send(core, *args)
    spec = TaskSpec(b"t" * 12, "job", "f", b"fid", [], [], 1, {}, 0, False, "ipc://owner")
    Executor(core).send_result(spec, [(0, 0, None)], [b"value"], False)
    assert transport.sent == []
