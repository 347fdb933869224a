"""Functions and classes travel to workers pickled once, under the SHA-1 of their pickle."""
import hashlib

from ..objects.code_pickle import dumps as cloudpickle_dumps


def pickle_for_export(obj, what):
    """(id, bytes) of a function or class to export: the id is the pickle's SHA-1, so the same
    code is exported once however many handles point at it."""
    try:
        pickled = cloudpickle_dumps(obj, protocol=5)
    except Exception as exc:
        raise TypeError(f"Could not pickle {what}: {exc}") from exc
    return hashlib.sha1(pickled).digest(), pickled
