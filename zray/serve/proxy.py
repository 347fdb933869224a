"""The HTTP proxy: one detached async actor per node, serving HTTP with uvicorn on a thread of
its own (on uvloop when installed), routing each request to a replica of the application's
ingress deployment.

Routing: the route table and each deployment's replicas come by long poll from the
controller. A request goes to the less loaded of two random replicas with room (ongoing <
max_ongoing_requests); with none, it waits in the deployment's queue, and past
max_queued_requests it is answered 503 at once. Requests reach a replica over its `exchange`
channel (replica.py): every request ready in one turn of the proxy's loop travels in one actor
call, and answers come back the same way.

Failures: a replica that dies fails its outstanding requests with 503 (and is reported to the
controller, which replaces it); `request_timeout_s` answers 408; nothing waits without bound.
"""
import asyncio
import itertools
import logging
import os
import random
import socket
import threading
import time

import zray

from .common import CONTROLLER_NAME, MULTIPLEXED_MODEL_ID_HEADER, SERVE_NAMESPACE
from .http_util import pack_scope, plain_response
from .replica import ABORT, BODY, END, FULL, START

logger = logging.getLogger("zray.serve")
LONG_POLL_TIMEOUT_S = 30.0
_MODEL_HEADER = MULTIPLEXED_MODEL_ID_HEADER.encode()


class _Request:
    __slots__ = ("id", "payload", "events", "waiter", "channel", "model_id")

    def __init__(self, req_id, payload, model_id):
        self.id = req_id
        self.payload = payload
        self.events = []
        self.waiter = None
        self.channel = None
        self.model_id = model_id

    def deliver(self, event):
        self.events.append(event)
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)


class _Channel:
    """The proxy's side of one replica's exchange channel."""

    def __init__(self, router, unique_id, handle):
        self.router = router
        self.unique_id = unique_id
        self.handle = handle
        self.reqs = {}              # request id -> _Request
        self.pending = []
        self.inflight = 0
        self.flush_scheduled = False
        self.removed = False
        self.dead = False

    @property
    def ongoing(self):
        return len(self.reqs)

    def assign(self, req):
        req.channel = self
        self.reqs[req.id] = req
        self.pending.append(req.payload)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.router.loop.call_soon(self.flush)

    def flush(self):
        self.flush_scheduled = False
        if self.dead:
            return
        batch, self.pending = self.pending, []
        self._call(batch)

    def _call(self, batch):
        self.inflight += 1
        stats = self.router.proxy.stats
        stats["calls"] += 1
        stats["requests"] += len(batch)
        loop = self.router.loop
        try:
            fut = self.handle.exchange.remote(self.router.proxy.proxy_id, batch).future()
        except Exception as exc:  # noqa: BLE001 - the runtime refused the call: fail its requests
            self.inflight -= 1
            self._fail(exc)
            return
        fut.add_done_callback(lambda f: loop.call_soon_threadsafe(self._on_result, f))

    def _on_result(self, fut):
        self.inflight -= 1
        try:
            events = fut.result()
        except Exception as exc:  # noqa: BLE001 - the replica died or is unreachable
            self._fail(exc)
            return
        reqs = self.reqs
        for event in events:
            req = reqs.get(event[0])
            if req is None:
                continue
            kind = event[1]
            if kind == FULL or kind == END or kind == ABORT:
                del reqs[event[0]]
            req.deliver(event)
        if reqs and not self.inflight and not self.pending and not self.dead:
            self._call([])          # keep one call waiting for the rest
        self.router.on_capacity(self)

    def _fail(self, exc):
        if self.dead:
            return
        self.dead = True
        reqs, self.reqs = self.reqs, {}
        message = (f"The replica {self.unique_id} of deployment '{self.router.name}' died or became "
                   f"unreachable while handling this request: {type(exc).__name__}")
        logger.warning("%s: %s", message, exc)
        for req in reqs.values():
            req.deliver((req.id, FULL) + plain_response(503, message))
        self.router.on_channel_dead(self)


class _Router:
    """Requests to one deployment, from this proxy."""

    def __init__(self, proxy, app_name, name):
        self.proxy = proxy
        self.loop = proxy.loop
        self.app_name = app_name
        self.name = name
        self.key = f"{app_name}#{name}"
        self.channels = {}          # unique id -> _Channel (routable)
        self.draining = set()
        self.queue = []
        self.max_ongoing = 5
        self.max_queued = -1
        self.version = None
        self.ready = asyncio.Event()
        self.model_affinity = {}
        self.task = self.loop.create_task(self._poll())

    async def _poll(self):
        controller = self.proxy.controller
        while True:
            try:
                version, table = await asyncio.wrap_future(controller.listen.remote(
                    "dep:" + self.key, self.version, LONG_POLL_TIMEOUT_S).future())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the controller may be restarting
                logger.warning("long poll for %s failed: %s", self.key, exc)
                await asyncio.sleep(0.5)
                continue
            self._apply(version, table)

    def _apply(self, version, table):
        self.version = version
        self.max_ongoing = table.max_ongoing_requests
        self.max_queued = table.max_queued_requests
        live = dict(table.replicas)
        for uid in list(self.channels):
            if uid not in live:
                ch = self.channels.pop(uid)
                ch.removed = True
        for uid, handle in live.items():
            if uid not in self.channels:
                self.channels[uid] = _Channel(self, uid, handle)
        self.ready.set()
        self._drain_queue()

    def choose(self, model_id):
        chans = self.channels
        cap = self.max_ongoing
        if model_id:
            uid = self.model_affinity.get(model_id)
            ch = chans.get(uid) if uid else None
            if ch is not None and not ch.dead and ch.ongoing < cap:
                return ch
        n = len(chans)
        if n == 0:
            return None
        if n == 1:
            ch = next(iter(chans.values()))
            return ch if ch.ongoing < cap and not ch.dead else None
        values = list(chans.values())
        a, b = random.sample(values, 2)
        best = a if a.ongoing <= b.ongoing else b
        if best.ongoing < cap and not best.dead:
            chosen = best
        else:
            free = [c for c in values if c.ongoing < cap and not c.dead]
            if not free:
                return None
            chosen = min(free, key=lambda c: c.ongoing)
        if model_id:
            self.model_affinity[model_id] = chosen.unique_id
        return chosen

    def submit(self, req):
        """Send the request or queue it; False when the queue is full."""
        if not self.queue:
            ch = self.choose(req.model_id)
            if ch is not None:
                ch.assign(req)
                return True
        if self.max_queued != -1 and len(self.queue) >= self.max_queued:
            return False
        self.queue.append(req)
        return True

    def cancel(self, req):
        if req.channel is None:
            try:
                self.queue.remove(req)
            except ValueError:
                pass

    def on_capacity(self, channel):
        if channel.removed and not channel.reqs:
            return
        if self.queue:
            self._drain_queue()

    def _drain_queue(self):
        while self.queue:
            ch = self.choose(self.queue[0].model_id)
            if ch is None:
                return
            ch.assign(self.queue.pop(0))

    def on_channel_dead(self, channel):
        if self.channels.get(channel.unique_id) is channel:
            del self.channels[channel.unique_id]
        self.proxy.report_dead(self.app_name, self.name, channel.unique_id)


class ProxyApp:
    """The ASGI app uvicorn runs."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.routes = {}            # prefix -> (app, deployment)
        self.sorted_prefixes = []
        self.routers = {}
        self.ids = itertools.count(1)

    def set_routes(self, prefixes):
        self.routes = dict(prefixes)
        self.sorted_prefixes = sorted(self.routes, key=len, reverse=True)

    def match(self, path):
        for prefix in self.sorted_prefixes:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return prefix, self.routes[prefix]
        return None, None

    def router(self, app_name, name):
        key = (app_name, name)
        r = self.routers.get(key)
        if r is None:
            r = self.routers[key] = _Router(self.proxy, app_name, name)
        return r

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        path = scope["path"]
        if path.startswith("/-/"):
            if path == "/-/healthz":
                return await _respond(send, plain_response(200, "success"))
            if path == "/-/routes":
                import json
                body = json.dumps({p: a for p, (a, _) in self.routes.items()}).encode()
                return await _respond(send, (200, [(b"content-type", b"application/json")], body))
        prefix, target = self.match(path)
        if target is None:
            return await _respond(send, plain_response(
                404, f"Path '{path}' not found. Ping http://.../-/routes for available routes."))
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        router = self.router(*target)
        if not router.ready.is_set():
            try:
                await asyncio.wait_for(router.ready.wait(), 30)
            except asyncio.TimeoutError:
                return await _respond(send, plain_response(503, "The deployment is not ready"))
        model_id = ""
        for k, v in scope["headers"]:
            if k == _MODEL_HEADER:
                model_id = v.decode()
        sub = pack_scope(scope, scope.get("root_path", "") + ("" if prefix == "/" else prefix))
        req_id = next(self.ids)
        req = _Request(req_id, (req_id, sub, body, model_id), model_id)
        if not router.submit(req):
            return await _respond(send, plain_response(
                503, f"Request dropped: {router.max_queued} requests are already queued for "
                     f"deployment '{router.name}' (max_queued_requests)."))
        await self._answer(req, router, send)

    async def _answer(self, req, router, send):
        loop = self.proxy.loop
        timeout = self.proxy.request_timeout_s
        deadline = None if timeout is None else loop.time() + timeout
        started = False
        while True:
            if not req.events:
                req.waiter = loop.create_future()
                if deadline is None:
                    await req.waiter
                else:
                    try:
                        await asyncio.wait_for(req.waiter, max(0.0, deadline - loop.time()))
                    except asyncio.TimeoutError:
                        router.cancel(req)
                        if req.channel is not None:
                            req.channel.reqs.pop(req.id, None)
                        if not started:
                            await _respond(send, plain_response(408, "Request timed out"))
                        return
            events, req.events = req.events, []
            for event in events:
                kind = event[1]
                if kind == FULL:
                    await send({"type": "http.response.start", "status": event[2], "headers": event[3]})
                    await send({"type": "http.response.body", "body": event[4]})
                    return
                if kind == START:
                    started = True
                    await send({"type": "http.response.start", "status": event[2], "headers": event[3]})
                elif kind == BODY:
                    await send({"type": "http.response.body", "body": event[2], "more_body": True})
                elif kind == END:
                    await send({"type": "http.response.body", "body": b""})
                    return
                elif kind == ABORT:
                    if not started:
                        await _respond(send, plain_response(500, event[2]))
                        return
                    raise RuntimeError(f"the response stream was aborted: {event[2]}")


async def _respond(send, response):
    status, headers, body = response
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ServeProxy:
    """The actor: owns the server thread and answers the controller."""

    def __init__(self, node_id, host, port, root_path, request_timeout_s, keep_alive_timeout_s):
        self.node_id = node_id
        self.host = host
        self.port = port
        self.root_path = root_path
        self.request_timeout_s = request_timeout_s
        self.keep_alive_timeout_s = keep_alive_timeout_s
        self.proxy_id = f"{node_id[:12]}-{os.getpid()}"
        self.loop = None
        self.app = None
        self.server = None
        self.controller = None
        self._thread = None
        self._started = threading.Event()
        self._error = None
        self._reported = {}
        self.stats = {"calls": 0, "requests": 0}

    async def ready(self):
        if self._thread is None:
            self.controller = zray.get_actor(CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
            sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.port))
            except OSError as exc:
                sock.close()
                raise RuntimeError(f"the Serve proxy cannot listen on {self.host}:{self.port}: {exc}") from None
            sock.listen(2048)
            sock.setblocking(False)
            self._thread = threading.Thread(target=self._serve, args=(sock,), name="zray-serve-http",
                                            daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, self._started.wait, 30)
        if self._error is not None or not ok:
            raise RuntimeError(f"the Serve proxy did not start: {self._error}")
        return f"{self.host}:{self.port}"

    def _serve(self, sock):
        try:
            import uvicorn
            try:
                import uvloop
                loop = uvloop.new_event_loop()
            except ImportError:
                loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.loop = loop
            self.app = ProxyApp(self)
            try:
                import httptools  # noqa: F401
                http = "httptools"
            except ImportError:
                http = "h11"
            config = uvicorn.Config(self.app, lifespan="off", log_level="warning", access_log=False,
                                    http=http, timeout_keep_alive=int(self.keep_alive_timeout_s),
                                    root_path=self.root_path or "")
            self.server = uvicorn.Server(config)
            loop.create_task(self._poll_routes())
            loop.call_soon(self._started.set)
            loop.run_until_complete(self.server.serve(sockets=[sock]))
        except BaseException as exc:  # noqa: BLE001 - reported by ready()
            self._error = exc
            logger.exception("the Serve proxy stopped")
            self._started.set()

    async def _poll_routes(self):
        version = None
        while True:
            try:
                version, routes = await asyncio.wrap_future(self.controller.listen.remote(
                    "routes", version, LONG_POLL_TIMEOUT_S).future())
            except Exception as exc:  # noqa: BLE001 - the controller may be restarting
                logger.warning("route long poll failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if routes is not None:
                self.app.set_routes(routes.prefixes)

    def report_dead(self, app_name, name, unique_id):
        key = (app_name, name, unique_id)
        if key in self._reported:
            return
        self._reported[key] = time.monotonic()
        try:
            self.controller.report_replica_unavailable.remote(app_name, name, unique_id)
        except Exception:   # noqa: BLE001 - the health check finds it anyway
            logger.exception("could not report replica %s", unique_id)

    async def get_queued(self, key):
        app = self.app
        if app is None:
            return 0
        for (a, n), router in list(app.routers.items()):
            if f"{a}#{n}" == key:
                return len(router.queue)
        return 0

    async def get_stats(self):
        """Exchange calls made and requests they carried (requests per call = batching)."""
        return dict(self.stats)

    async def shutdown(self):
        server = self.server
        if server is not None:
            server.should_exit = True
        thread = self._thread
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
        return True
