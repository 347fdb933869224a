"""Exported functions: a driver exports a function to its node once; workers fetch it there;
a peer that is sent a task (or an actor record) gets the function first, once per peer.

Interface: export_to(node_id, address, function_id) sends it to a peer unless sent already.
"""
from ..exceptions import RaySystemError
from ..transport import wire
from .service import Service


class FunctionService(Service):
    def __init__(self, ctx):
        self.ctx = ctx
        self.functions = {}          # function_id -> pickled function (a frame)
        self.sent = set()            # (node_id, function_id) exported to peers

    def handlers(self):
        return {wire.EXPORT_FUNCTION: self.on_export_function,
                wire.FETCH_FUNCTION: self.on_fetch_function}

    def on_export_function(self, sender, payload, frames):
        self.functions[payload[0]] = frames[0]

    def on_fetch_function(self, sender, payload, frames):
        req_id, function_id = payload
        frame = self.functions.get(function_id)
        if frame is None:
            self.ctx.reply(sender, wire.FUNCTION, req_id, None, RaySystemError(
                f"function {function_id.hex()} was never exported to this node"))
        else:
            self.ctx.reply(sender, wire.FUNCTION, req_id, function_id, None, [frame])

    def export_to(self, node_id, address, function_id):
        if (function_id is None or address is None or (node_id, function_id) in self.sent
                or function_id not in self.functions):
            return
        self.sent.add((node_id, function_id))
        self.ctx.send(address, wire.EXPORT_FUNCTION, (function_id,), [self.functions[function_id]])

    def member_gone(self, member):
        self.sent = {k for k in self.sent if k[0] != member.name}
