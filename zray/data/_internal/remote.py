"""The remote entry points of zray.data (tasks and the map actor), and the chain cache.

A fused chain is put in the store once per execution; tasks receive its ObjectRef inside a list
(so zray does not resolve it) and fetch it only on a cache miss, so a chain's UDF is unpickled
once per worker instead of once per task.
"""
import collections
import threading

import zray

from .transforms import run_chain

_CHAINS = collections.OrderedDict()
_CHAINS_LOCK = threading.Lock()
_CHAINS_KEPT = 16


def _chain(key, holder):
    with _CHAINS_LOCK:
        chain = _CHAINS.get(key)
        if chain is not None:
            _CHAINS.move_to_end(key)
            return chain
    chain = zray.get(holder[0], timeout=300)
    for t in chain:
        t.setup()
    with _CHAINS_LOCK:
        _CHAINS[key] = chain
        while len(_CHAINS) > _CHAINS_KEPT:
            _CHAINS.popitem(last=False)
    return chain


@zray.remote(num_returns=2)
def map_task(key, holder, item, task_idx, op_name):
    return run_chain(_chain(key, holder), item, task_idx, op_name)


class MapActor:
    """Hosts a chain whose callable classes are constructed once."""

    def __init__(self, chain):
        self.chain = chain
        for t in chain:
            t.setup()

    def process(self, item, task_idx, op_name):
        return run_chain(self.chain, item, task_idx, op_name)

    def ready(self):
        return True


@zray.remote
def call_on_block(fn, block, *args):
    """Run a block-level helper (shuffle, zip, write) in a task; returns its result."""
    return fn(block, *args)
