"""as_completed and map_unordered: results as they finish, with a bound on tasks in flight."""
from .. import api as zray   # the public API, without importing the zray package from inside it

DEFAULT_CHUNK_SIZE = 10          # refs waited for at once (num_returns of each wait)
DEFAULT_BACKPRESSURE_SIZE = 100  # map_unordered's tasks in flight before it waits for some


def _check(chunk_size, wait_kwargs):
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(f"chunk_size must be an int, got {chunk_size!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if "num_returns" in wait_kwargs:
        raise ValueError("pass chunk_size instead of num_returns")


def _next_batch(refs, chunk_size, yield_obj_refs, wait_kwargs):
    """(finished values or refs, refs still pending): one wait for up to chunk_size refs."""
    ready, pending = zray.wait(refs, num_returns=min(chunk_size, len(refs)), **wait_kwargs)
    if not ready and wait_kwargs.get("timeout") is not None:
        raise TimeoutError(f"none of {len(refs)} refs finished within {wait_kwargs['timeout']}s")
    return (ready if yield_obj_refs else zray.get(ready)), pending


def as_completed(refs, *, chunk_size=DEFAULT_CHUNK_SIZE, yield_obj_refs=False, **wait_kwargs):
    """Yield the values of `refs` (or the refs, with yield_obj_refs) as they finish, in batches
    of up to chunk_size; `wait_kwargs` (timeout, fetch_local) go to each wait."""
    _check(chunk_size, wait_kwargs)
    pending = list(refs)
    while pending:
        done, pending = _next_batch(pending, chunk_size, yield_obj_refs, wait_kwargs)
        yield from done


def map_unordered(fn, items, *, backpressure_size=DEFAULT_BACKPRESSURE_SIZE,
                  chunk_size=DEFAULT_CHUNK_SIZE, yield_obj_refs=False, **wait_kwargs):
    """fn.remote(item) for each item, yielding results as they finish; at most
    backpressure_size tasks are in flight (None: no bound)."""
    _check(chunk_size, wait_kwargs)
    if backpressure_size is None:
        backpressure_size = float("inf")
    elif isinstance(backpressure_size, bool) or not isinstance(backpressure_size, int):
        raise TypeError(f"backpressure_size must be an int or None, got {backpressure_size!r}")
    elif backpressure_size < 1:
        raise ValueError(f"backpressure_size must be >= 1, got {backpressure_size}")
    if not hasattr(fn, "remote"):
        raise TypeError(f"map_unordered needs a remote function, got {type(fn).__name__}")
    pending = []
    for item in items:
        pending.append(fn.remote(item))
        if len(pending) >= backpressure_size:
            done, pending = _next_batch(pending, chunk_size, yield_obj_refs, wait_kwargs)
            yield from done
    yield from as_completed(pending, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs,
                            **wait_kwargs)


def get_node_ip_address():
    """The IP address of this process's node; before init(), the address this host is
    reached at."""
    if zray.is_initialized():
        return zray._runtime().node_info["node_ip"]
    from ..launch.launcher import own_ip
    return own_ip(None)
