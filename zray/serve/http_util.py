"""HTTP pieces shared by the proxy and replicas: what travels for a request, and how a
deployment's return value becomes a response (Ray's mapping)."""
import dataclasses
import json

TEXT_PLAIN = b"text/plain"
TEXT_UTF8 = b"text/plain; charset=utf-8"
JSON = b"application/json"

# The scope a replica needs (the rest is the proxy's own business) travels as a tuple of these
# values: a batch of tuples pickles and unpickles in a third of the time of a batch of dicts.
SCOPE_KEYS = ("method", "path", "raw_path", "query_string", "root_path", "headers", "client",
              "server", "http_version", "scheme")


def pack_scope(scope, root_path):
    """The tuple a replica rebuilds the request's ASGI scope from (unpack_scope)."""
    get = scope.get
    return (scope["method"], scope["path"], get("raw_path"), get("query_string", b""), root_path,
            scope["headers"], get("client"), get("server"), get("http_version", "1.1"),
            get("scheme", "http"))


def unpack_scope(packed):
    scope = dict(zip(SCOPE_KEYS, packed))
    scope["type"] = "http"
    scope["asgi"] = {"version": "3.0", "spec_version": "2.4"}
    return scope


def _default(obj):
    if hasattr(obj, "tolist"):              # numpy arrays and scalars
        return obj.tolist()
    if hasattr(obj, "model_dump"):          # pydantic v2
        return obj.model_dump(mode="json")
    if hasattr(obj, "dict") and callable(obj.dict):
        return obj.dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return str(obj)


def encode_result(obj):
    """(content-type, body) for a plain return value: None/bytes -> text/plain, str -> UTF-8
    text, anything else -> compact JSON."""
    if obj is None:
        return TEXT_PLAIN, b""
    if isinstance(obj, bytes):
        return TEXT_PLAIN, obj
    if isinstance(obj, str):
        return TEXT_UTF8, obj.encode("utf-8")
    return JSON, json.dumps(obj, separators=(",", ":"), default=_default).encode()


def plain_response(status, text):
    body = text.encode() if isinstance(text, str) else text
    return (status, [(b"content-type", TEXT_UTF8), (b"content-length", str(len(body)).encode())], body)


def with_length(headers, body):
    if not any(k.lower() == b"content-length" for k, _ in headers):
        headers = list(headers) + [(b"content-length", str(len(body)).encode())]
    return headers
