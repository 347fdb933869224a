"""The cluster KV store's client (zray/core/kv.py) against a fake request function: what it
sends, what it checks before sending, and how a missing answer becomes a timeout."""
import pytest

from zray import exceptions
from zray.core.inbox import RequestTimeout
from zray.core.kv import MAX_VALUE_BYTES, KvClient
from zray.transport import wire


class FakeDaemon:
    """Answers KV requests from a dict, as a KvService would."""

    def __init__(self):
        self.data = {}
        self.sent = []

    def __call__(self, msg_type, payload, timeout):
        self.sent.append((msg_type, payload, timeout))
        if msg_type == wire.KV_PUT:
            namespace, key, value, overwrite = payload
            if (namespace, key) in self.data and not overwrite:
                return False
            self.data[namespace, key] = value
            return True
        if msg_type == wire.KV_GET:
            return self.data.get(tuple(payload))
        if msg_type == wire.KV_DEL:
            return self.data.pop(tuple(payload), None) is not None
        namespace, prefix = payload
        return [k for (ns, k) in self.data if ns == namespace and k.startswith(prefix)]


def test_put_get_delete_keys_travel_as_the_wire_messages():
    daemon = FakeDaemon()
    kv = KvClient(daemon)
    assert kv.put("rank0", b"tcp://a:1", namespace="collective") is True
    assert kv.put("rank0", b"other", namespace="collective", overwrite=False) is False
    assert kv.get("rank0", namespace="collective") == b"tcp://a:1"
    assert kv.get("rank0") is None                     # another namespace
    kv.put("rank1", bytearray(b"x"), namespace="collective")
    assert kv.keys("rank", namespace="collective") == ["rank0", "rank1"]
    assert kv.delete("rank0", namespace="collective") is True
    assert kv.delete("rank0", namespace="collective") is False
    assert [m for m, _, _ in daemon.sent] == [
        wire.KV_PUT, wire.KV_PUT, wire.KV_GET, wire.KV_GET, wire.KV_PUT, wire.KV_KEYS,
        wire.KV_DEL, wire.KV_DEL]
    assert daemon.sent[0][1] == ("collective", "rank0", b"tcp://a:1", True)


@pytest.mark.parametrize("call", [
    lambda kv: kv.put("", b"v"),
    lambda kv: kv.put("k", b"v", namespace=""),
    lambda kv: kv.get(3),
    lambda kv: kv.keys(namespace=None),
    lambda kv: kv.put("k", b"v", timeout=0),
    lambda kv: kv.put("k", b"v", timeout=True),
    lambda kv: kv.put("k", b"x" * (MAX_VALUE_BYTES + 1)),
])
def test_invalid_arguments_are_refused_before_anything_is_sent(call):
    daemon = FakeDaemon()
    with pytest.raises(ValueError):
        call(KvClient(daemon))
    assert daemon.sent == []


def test_values_must_be_bytes():
    with pytest.raises(TypeError):
        KvClient(FakeDaemon()).put("k", "a str")
    with pytest.raises(TypeError):
        KvClient(FakeDaemon()).keys(prefix=3)


def test_no_answer_within_the_timeout_is_a_get_timeout_error():
    def silent(msg_type, payload, timeout):
        raise RequestTimeout("no reply")
    with pytest.raises(exceptions.GetTimeoutError, match="KV_GET within 0.5s"):
        KvClient(silent).get("k", timeout=0.5)


def test_an_error_the_daemon_sends_back_reaches_the_caller():
    def failing(msg_type, payload, timeout):
        raise exceptions.RaySystemError("the key's decider is gone")
    with pytest.raises(exceptions.RaySystemError, match="decider"):
        KvClient(failing).put("k", b"v")
