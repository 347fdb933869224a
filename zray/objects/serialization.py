"""Values to bytes and back: cloudpickle with pickle protocol 5 out-of-band buffers.

One layout serves everywhere a value lives — inline in a message frame, in the shared-memory
store, in a spill file — so a value is written once and read in place:

    offset 0   header  <HHIQ: magic, flags, number of buffers, pickle length
               lengths <Q per out-of-band buffer
               pickle bytes
               buffers, each starting at a multiple of 64 from the start of the object

Reading gives memoryviews into the layout, so a numpy array read from the store is backed by
the store's memory (read-only) with no copy. ObjectRefs met while pickling are collected, so the
caller knows which references a value contains.
"""
import pickle
import struct
import threading

from ..exceptions import ObjectSerializationError
from .code_pickle import dumps as cloudpickle_dumps

MAGIC = 0x5A52
FLAG_ERROR = 1          # the value is an exception to raise on get
_HEADER = struct.Struct("<HHIQ")
_LEN = struct.Struct("<Q")
ALIGN = 64

_context = threading.local()


def _align(n):
    return (n + ALIGN - 1) & ~(ALIGN - 1)


class SerializedObject:
    """A pickled value with its out-of-band buffers and the ObjectRefs it contains."""

    __slots__ = ("flags", "data", "buffers", "contained_refs", "_layout")

    def __init__(self, flags, data, buffers, contained_refs):
        self.flags = flags
        self.data = data
        self.buffers = buffers
        self.contained_refs = contained_refs
        self._layout = None

    @property
    def is_error(self):
        return bool(self.flags & FLAG_ERROR)

    def _offsets(self):
        pos = _HEADER.size + _LEN.size * len(self.buffers) + len(self.data)
        offsets = []
        for buf in self.buffers:
            pos = _align(pos)
            offsets.append(pos)
            pos += buf.nbytes
        return offsets, pos

    @property
    def total_size(self):
        if self._layout is not None:
            return len(self._layout)
        return self._offsets()[1]

    def write_to(self, dst, copy=None):
        """Write the layout into the writable buffer `dst` (at least total_size bytes)."""
        dst = memoryview(dst).cast("B")
        head = _HEADER.pack(MAGIC, self.flags, len(self.buffers), len(self.data))
        pos = len(head)
        dst[:pos] = head
        for buf in self.buffers:
            dst[pos:pos + _LEN.size] = _LEN.pack(buf.nbytes)
            pos += _LEN.size
        dst[pos:pos + len(self.data)] = self.data
        offsets, _ = self._offsets()
        for off, buf in zip(offsets, self.buffers):
            if copy is not None:
                copy(dst[off:off + buf.nbytes], buf)
            else:
                dst[off:off + buf.nbytes] = buf.cast("B") if buf.format != "B" else buf

    def to_bytes(self):
        """The layout as one bytes-like object (for values small enough to travel inline)."""
        if self._layout is None:
            if not self.buffers:
                self._layout = _HEADER.pack(MAGIC, self.flags, 0, len(self.data)) + self.data
            else:
                out = bytearray(self.total_size)
                self.write_to(out)
                self._layout = out
        return self._layout


def parse(layout):
    """Split a layout into (flags, pickle bytes view, buffer views) without copying."""
    view = memoryview(layout).cast("B")
    magic, flags, nbuf, data_len = _HEADER.unpack_from(view, 0)
    if magic != MAGIC:
        raise ValueError("corrupt object: bad magic")
    pos = _HEADER.size
    lengths = []
    for _ in range(nbuf):
        lengths.append(_LEN.unpack_from(view, pos)[0])
        pos += _LEN.size
    data = view[pos:pos + data_len]
    pos += data_len
    buffers = []
    for n in lengths:
        pos = _align(pos)
        buffers.append(view[pos:pos + n])
        pos += n
    return flags, data, buffers


# Values that hold no ObjectRef, no out-of-band buffer and nothing cloudpickle pickles by
# value: plain pickle gives the same bytes without building a CloudPickler (~3x faster).
_PLAIN_TYPES = frozenset((bytes, str, int, float, bool, type(None)))


def serialize(value, flags=0):
    """Pickle `value`; large contiguous buffers (numpy, bytes-likes) stay out of band."""
    kind = type(value)
    if kind in _PLAIN_TYPES or (kind is tuple and len(value) <= 16
                                and all(type(v) in _PLAIN_TYPES for v in value)):
        # A flat tuple of those too (a Serve call's (method, model id, request id), say).
        return SerializedObject(flags, pickle.dumps(value, protocol=5), [], [])
    buffers = []
    previous = getattr(_context, "refs", None)
    refs = _context.refs = []
    try:
        try:
            data = cloudpickle_dumps(value, protocol=5, buffer_callback=buffers.append)
        except Exception as exc:
            raise ObjectSerializationError(_unpicklable_message(value, exc)) from exc
    finally:
        _context.refs = previous
    raw = [b.raw() for b in buffers]
    return SerializedObject(flags, data, raw, refs)


def serialize_error(exc):
    """Serialize an exception to be raised on get; falls back to a plain RayError by repr."""
    try:
        return serialize(exc, FLAG_ERROR)
    except ObjectSerializationError:
        from ..exceptions import RayError
        return serialize(RayError(repr(exc)), FLAG_ERROR)


def deserialize(flags, data, buffers):
    value = pickle.loads(data, buffers=buffers)
    return value


def note_ref_serialized(ref):
    """Called by ObjectRef.__reduce__: remember that the value being pickled contains `ref`."""
    refs = getattr(_context, "refs", None)
    if refs is not None:
        refs.append(ref)


def _unpicklable_message(value, exc):
    culprit = _find_unpicklable(value)
    what = f" ({culprit})" if culprit else ""
    return f"Could not serialize {type(value).__name__} value {_short_repr(value)}{what}: {exc}"


def _find_unpicklable(value, depth=0):
    """Name the innermost part of a container that will not pickle, to point the user at it."""
    if depth > 3:
        return None
    items = []
    if isinstance(value, dict):
        items = [(f"key {k!r}", v) for k, v in value.items()]
    elif isinstance(value, (list, tuple, set)):
        items = [(f"item {i}", v) for i, v in enumerate(value)]
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        items = [(f"attribute {k!r}", v) for k, v in vars(value).items()]
    for name, item in items:
        try:
            cloudpickle_dumps(item)
        except Exception:
            inner = _find_unpicklable(item, depth + 1)
            here = f"{name}: {type(item).__name__} {_short_repr(item)}"
            return f"{here}, {inner}" if inner else here
    return None


def _short_repr(value):
    try:
        text = repr(value)
    except Exception:
        text = object.__repr__(value)
    return text if len(text) <= 80 else text[:77] + "..."
