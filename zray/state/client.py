"""Sending a state query to a node, from any process.

A process with a zray runtime (a driver or a worker) asks its own node over its connection. Any
other process (the CLI, a dashboard's HTTP thread, a benchmark) finds the node like `zray
status` does (`address`: "auto", "HOST:PORT" of any member, or a node file) or is handed the
node's info dict (`node`: at least "address" and "session"), and asks over a short-lived ipc
socket of its own in that node's session (unique per call, so threads may query at once).
"""
from .query import StateQuery

REPLY_GRACE_S = 5.0     # the node answers by the query's timeout; allow it this much more


class StateQueryTimeout(TimeoutError):
    pass


def run(query, address=None, node=None):
    """The answer dict of a StateQuery (see zray/state/query.py: rows, total, nodes,
    failed_nodes, summary, files). Raises the node's error (ValueError for a bad query),
    StateQueryTimeout when the node does not answer, ConnectionError when no node is found."""
    if not isinstance(query, StateQuery):
        raise TypeError(f"run() takes a StateQuery, not {type(query).__name__}")
    from ..transport import wire
    if node is None and address is None:
        from ..core import runtime
        if runtime.is_connected():
            rt = runtime.current()
            try:
                return rt.request(wire.STATE_QUERY, (query.to_wire(),),
                                  timeout=query.timeout + REPLY_GRACE_S)
            except TimeoutError as exc:
                raise StateQueryTimeout(str(exc)) from None
    if node is None:
        from ..node import local_node
        node = local_node.find_node(address)
    return ask_node(node, query)


def ask_node(node, query):
    """Ask the node described by `node` (its "address" and "session") over a private socket."""
    from ..node import local_node
    from ..transport import wire
    timeout = query.timeout + REPLY_GRACE_S
    with local_node.NodeClient(node) as client:
        try:
            return client.query(wire.STATE_QUERY, timeout, args=(query.to_wire(),))
        except TimeoutError:
            raise StateQueryTimeout(
                f"the zray node at {node['address']} did not answer the state query in "
                f"{timeout:g}s") from None
