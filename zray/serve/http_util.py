"""HTTP pieces shared by the proxy and replicas: what travels for a request, and how a
deployment's return value becomes a response (Ray's mapping)."""
import dataclasses
import json

TEXT_PLAIN = b"text/plain"
TEXT_UTF8 = b"text/plain; charset=utf-8"
JSON = b"application/json"

# The scope keys a replica needs (the rest are the proxy's own business).
SCOPE_KEYS = ("type", "http_version", "method", "scheme", "path", "raw_path", "query_string",
              "root_path", "headers", "client", "server")


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
