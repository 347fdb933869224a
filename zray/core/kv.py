"""The client of the cluster key-value store: small values for rendezvous (collectives, launch,
libraries), kept by the node daemons on the membership ring (the daemon side: KvService).

Every operation is one request to this process's node daemon (KV_PUT, KV_GET, KV_DEL, KV_KEYS
in zray/transport/wire.py), answered with KV_REPLY; a request not answered within its timeout
raises GetTimeoutError. Keys live in a namespace (a str; libraries use their own, e.g.
"collective"); values are bytes. `request(msg_type, payload, timeout)` is given by the runtime.
"""
from .. import exceptions
from ..transport import wire
from .inbox import RequestTimeout

KV_TIMEOUT_S = 30.0       # one request's answer, including a forward to the key's decider
MAX_VALUE_BYTES = 16 << 20  # a rendezvous value, not a data store: bigger values use put()


class KvClient:
    def __init__(self, request):
        self._request = request

    def put(self, key, value, *, namespace="default", overwrite=True, timeout=KV_TIMEOUT_S):
        """Store value (bytes) under key; False if the key exists and overwrite is off."""
        _check_key(namespace, key)
        if isinstance(value, (bytearray, memoryview)):
            value = bytes(value)
        if not isinstance(value, bytes):
            raise TypeError(f"a KV value must be bytes, got {type(value).__name__}")
        if len(value) > MAX_VALUE_BYTES:
            raise ValueError(f"a KV value is at most {MAX_VALUE_BYTES} bytes, got {len(value)}; "
                             "store large values with put() and share the ref")
        return bool(self._call(wire.KV_PUT, (namespace, key, value, bool(overwrite)), timeout))

    def get(self, key, *, namespace="default", timeout=KV_TIMEOUT_S):
        """The value under key, or None."""
        _check_key(namespace, key)
        return self._call(wire.KV_GET, (namespace, key), timeout)

    def delete(self, key, *, namespace="default", timeout=KV_TIMEOUT_S):
        """Remove key; True if it existed."""
        _check_key(namespace, key)
        return bool(self._call(wire.KV_DEL, (namespace, key), timeout))

    def keys(self, prefix="", *, namespace="default", timeout=KV_TIMEOUT_S):
        """The keys of the namespace that start with prefix, sorted."""
        _check_namespace(namespace)
        if not isinstance(prefix, str):
            raise TypeError(f"a KV key prefix must be a str, got {type(prefix).__name__}")
        return sorted(self._call(wire.KV_KEYS, (namespace, prefix), timeout) or ())

    def _call(self, msg_type, payload, timeout):
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        try:
            return self._request(msg_type, payload, timeout)
        except RequestTimeout:
            raise exceptions.GetTimeoutError(
                f"the cluster KV store did not answer {wire.NAMES[msg_type]} within "
                f"{timeout}s") from None


def _check_namespace(namespace):
    if not isinstance(namespace, str) or not namespace:
        raise ValueError(f"a KV namespace must be a non-empty str, got {namespace!r}")


def _check_key(namespace, key):
    _check_namespace(namespace)
    if not isinstance(key, str) or not key:
        raise ValueError(f"a KV key must be a non-empty str, got {key!r}")
