"""Functions and classes travel to workers pickled once, under the SHA-1 of their pickle."""
import hashlib
import os

from ..objects.code_pickle import dumps as cloudpickle_dumps


# A pickled function or class above this is refused (Ray's FUNCTION_SIZE_ERROR_THRESHOLD is the
# same 95 MiB): such a size means a captured array, which belongs in the object store.
FUNCTION_SIZE_LIMIT = int(os.environ.get("ZRAY_FUNCTION_SIZE_LIMIT", 95 << 20))


def pickle_for_export(obj, what):
    """(id, bytes) of a function or class to export: the id is the pickle's SHA-1, so the same
    code is exported once however many handles point at it."""
    try:
        pickled = cloudpickle_dumps(obj, protocol=5)
    except Exception as exc:
        raise TypeError(f"Could not pickle {what}: {exc}") from exc
    if len(pickled) > FUNCTION_SIZE_LIMIT:
        raise ValueError(
            f"The {what} is too large ({len(pickled) >> 20} MiB > FUNCTION_SIZE_ERROR_THRESHOLD="
            f"{FUNCTION_SIZE_LIMIT >> 20} MiB): its definition probably captures a large array "
            "or object from its scope. Put that in the object store with zray.put() and pass "
            "the ref instead.")
    return hashlib.sha1(pickled).digest(), pickled
