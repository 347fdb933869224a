"""A replica: the zray actor that holds one instance of a deployment's class (or function).

It is an async actor (one event loop) with a high max_concurrency: the deployment's
`max_ongoing_requests` is kept by the replica's own semaphore, so control calls (health checks,
metrics, reconfigure, drain) are never stuck behind requests.

Two ways in:
  handle_request / handle_request_streaming   one call per request, from DeploymentHandles
  exchange(proxy_id, requests)                HTTP, from a proxy: several requests per call

`exchange` starts the requests it carries, then waits until at least one event of this proxy's
requests is ready and returns every ready event (full responses, or the start, chunks and end of
streamed ones). At most one exchange per proxy waits at a time: a newer one releases the older
with no events. So a proxy keeps one call in flight per replica while it has requests there,
and both directions carry as many requests as are ready: one message for a burst of requests.

    proxy                               replica
      |-- exchange(p, [r1, r2]) -------->|  start r1, r2; wait for an event
      |-- exchange(p, [r3]) ------------>|  start r3; release the older call (no events);
      |<-------------------------- [] ---|  wait for an event
      |<-- [full r1, full r2, full r3] --|  r1..r3 done in one loop turn
"""
import asyncio
import inspect
import logging
import time
import traceback

from . import context
from .common import DeploymentID, ReplicaID
from .http_util import JSON, TEXT_UTF8, encode_result, plain_response, unpack_scope, with_length

logger = logging.getLogger("zray.serve")

# event kinds of the HTTP channel (tuples (request id, kind, a, b, c))
FULL, START, BODY, END, ABORT = 0, 1, 2, 3, 4
EXCHANGE_WAIT_S = 30.0
DRAIN_SETTLE_S = 0.25
STALE_OUTBOX_S = 300.0
# A burst of requests to a synchronous __call__ runs inline for at most this long; the rest go
# to tasks as usual, so a slow __call__ still lets health checks and metrics in between requests,
# and the requests still waiting count as ongoing (what autoscaling sees).
INLINE_BUDGET_S = 0.002
_NO_RESULT = object()      # _http: no return value yet, call the deployment


class _Outbox:
    __slots__ = ("events", "waiter", "last_seen")

    def __init__(self):
        self.events = []
        self.waiter = None
        self.last_seen = time.monotonic()

    def push(self, event):
        self.events.append(event)
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)


class _Stream:
    __slots__ = ("items", "done", "error", "waiter", "task")

    def __init__(self):
        self.items = []
        self.done = False
        self.error = None
        self.waiter = None
        self.task = None

    def _wake(self):
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def push(self, item):
        self.items.append(item)
        self._wake()

    def finish(self):
        self.done = True
        self._wake()


class _FunctionServable:
    """A function deployment: calling the replica calls the function."""

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)


class ServeReplica:
    def __init__(self, app_name, deployment_name, unique_id, payload, config):
        self._deployment_id = DeploymentID(deployment_name, app_name)
        self._replica_id = ReplicaID(unique_id, self._deployment_id)
        self._payload = payload
        self._config = config
        self._instance = None
        self._asgi_app = None
        self._inline_call = None
        self._ongoing = 0
        self._sem = None
        self._boxes = {}
        self._idle = None
        self._started = time.time()

    # -- lifecycle ---------------------------------------------------------------------------
    async def initialize(self, user_config):
        import pickle
        target, args, kwargs = pickle.loads(self._payload)
        self._payload = None
        ctx = context.ReplicaContext(self._replica_id, None)
        context.set_replica_context(ctx)
        if inspect.isclass(target):
            instance = target(*args, **kwargs)
            if inspect.isawaitable(instance):      # never for a plain class; kept for symmetry
                instance = await instance
        else:
            instance = _FunctionServable(target)
        ctx.servable_object = instance
        self._instance = instance
        app = getattr(type(instance), "__serve_asgi_app__", None)
        if app is not None:
            from .ingress import bind_asgi_app
            self._asgi_app = bind_asgi_app(app, type(instance), instance)
        call = getattr(type(instance), "__call__", None)
        fn = getattr(instance, "_fn", None) if isinstance(instance, _FunctionServable) else call
        self._sem = asyncio.Semaphore(self._config.max_ongoing_requests)
        if self._asgi_app is None:
            try:        # the first HTTP request should not pay for this import
                _starlette()
            except ImportError:
                pass
            plain = not (inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn)
                         or inspect.isasyncgenfunction(fn))
            if callable(instance) and fn is not None and plain:
                # a plain synchronous __call__ runs to its end without yielding the loop: it
                # can run inline in exchange(), without a task of its own (see _http_inline)
                self._inline_call = instance if isinstance(instance, _FunctionServable) else instance.__call__
        if user_config is not None:
            await self.reconfigure(user_config)
        return {"replica_id": self._replica_id.unique_id, "pid": _pid(),
                "node_id": _node_id(), "actor_name": None}

    async def reconfigure(self, user_config):
        fn = getattr(self._instance, "reconfigure", None)
        if fn is None:
            if user_config is not None:
                raise ValueError(f"user_config was given but {self._deployment_id.name} has no "
                                 "reconfigure method")
            return
        result = fn(user_config)
        if inspect.isawaitable(result):
            await result

    async def check_health(self):
        fn = getattr(self._instance, "check_health", None)
        if fn is not None:
            result = fn()
            if inspect.isawaitable(result):
                await result
        return True

    async def get_num_ongoing(self):
        return self._ongoing

    async def prepare_for_shutdown(self, timeout_s, wait_loop_s):
        """Drain: wait until no request is running (at most timeout_s), then let the user's
        __del__ run."""
        deadline = time.monotonic() + timeout_s
        # callers learn by long poll (milliseconds) that this replica left the routing table;
        # a request they sent just before that still arrives: give it a moment
        await asyncio.sleep(min(wait_loop_s, timeout_s, DRAIN_SETTLE_S))
        while self._ongoing and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        left = self._ongoing
        fn = getattr(type(self._instance), "__del__", None) if self._instance is not None else None
        if fn is not None:
            try:
                result = fn(self._instance)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("%s's __del__ raised", self._deployment_id.name)
        return left

    # -- requests from handles ---------------------------------------------------------------
    def _method(self, name):
        if name == "__call__" and isinstance(self._instance, _FunctionServable):
            return self._instance
        fn = getattr(self._instance, name, None)
        if fn is None or not callable(fn):
            raise AttributeError(f"Deployment '{self._deployment_id.name}' has no method '{name}'")
        return fn

    async def handle_request(self, meta, *args, **kwargs):
        method, model_id, request_id = meta
        self._ongoing += 1
        try:
            async with self._sem:
                token = context.set_request_context(context.RequestContext(
                    "", request_id, self._deployment_id.app_name, model_id))
                try:
                    result = self._method(method)(*args, **kwargs)
                    if inspect.isawaitable(result):
                        result = await result
                    elif inspect.isgenerator(result) or inspect.isasyncgen(result):
                        raise TypeError(f"Method '{method}' returned a generator. You must use "
                                        "`handle.options(stream=True)` to call generators on a "
                                        "deployment.")
                    return result
                finally:
                    context.reset_request_context(token)
        finally:
            self._ongoing -= 1

    # Streaming to handles goes over a pull channel (stream_start / stream_next) rather than
    # a zray streaming generator: zray runs async-generator methods of async actors as plain
    # calls (see docs/serve.md), and pulling lets each call carry every item ready so far.
    async def stream_start(self, meta, *args, **kwargs):
        method, model_id, request_id = meta
        stream = _Stream()
        self._streams = getattr(self, "_streams", {})
        self._streams[request_id] = stream
        self._ongoing += 1
        asyncio.get_running_loop().create_task(self._pump(stream, method, model_id, request_id,
                                                          args, kwargs))
        return await self.stream_next(request_id)

    async def stream_next(self, stream_id):
        stream = self._streams.get(stream_id)
        if stream is None:
            raise ValueError(f"unknown or finished stream {stream_id}")
        if not stream.items and not stream.done:
            stream.waiter = asyncio.get_running_loop().create_future()
            await stream.waiter
        items, stream.items = stream.items, []
        if stream.done:
            self._streams.pop(stream_id, None)
            if stream.error is not None and not items:
                raise stream.error
            if stream.error is not None:       # deliver the items first, the error next time
                self._streams[stream_id] = stream
                return items, False
        return items, stream.done

    async def stream_cancel(self, stream_id):
        stream = self._streams.pop(stream_id, None) if hasattr(self, "_streams") else None
        if stream is not None and stream.task is not None:
            stream.task.cancel()
        return True

    async def _pump(self, stream, method, model_id, request_id, args, kwargs):
        stream.task = asyncio.current_task()
        try:
            async with self._sem:
                token = context.set_request_context(context.RequestContext(
                    "", request_id, self._deployment_id.app_name, model_id))
                try:
                    result = self._method(method)(*args, **kwargs)
                    if inspect.isawaitable(result) and not inspect.isasyncgen(result):
                        result = await result
                    if inspect.isasyncgen(result):
                        async for item in result:
                            stream.push(item)
                    elif inspect.isgenerator(result):
                        for item in result:
                            stream.push(item)
                            await asyncio.sleep(0)
                    else:
                        raise TypeError(f"`handle.options(stream=True)` was used but method "
                                        f"'{method}' did not return a generator")
                finally:
                    context.reset_request_context(token)
        except BaseException as exc:  # noqa: BLE001 - delivered to the caller
            stream.error = exc if isinstance(exc, Exception) else RuntimeError("stream cancelled")
        finally:
            self._ongoing -= 1
            stream.finish()

    # -- HTTP from proxies --------------------------------------------------------------------
    async def exchange(self, proxy_id, requests):
        box = self._boxes.get(proxy_id)
        now = time.monotonic()
        if box is None:
            box = self._boxes[proxy_id] = _Outbox()
            for pid, other in list(self._boxes.items()):     # a proxy that went away
                if other.waiter is None and now - other.last_seen > STALE_OUTBOX_S:
                    del self._boxes[pid]
        box.last_seen = now
        loop = asyncio.get_running_loop()
        inline = self._inline_call
        inline_until = time.perf_counter() + INLINE_BUDGET_S if inline is not None else 0.0
        for req_id, packed, body, model_id in requests:
            scope = unpack_scope(packed)
            if inline is not None and not self._sem.locked() and time.perf_counter() < inline_until:
                self._http_inline(box, inline, req_id, scope, body, model_id)
            else:
                self._ongoing += 1
                loop.create_task(self._http(box, req_id, scope, body, model_id))
        if not box.events:
            old = box.waiter
            if old is not None and not old.done():
                old.set_result(None)
            fut = box.waiter = loop.create_future()
            timer = loop.call_later(EXCHANGE_WAIT_S, _release, fut)
            await fut
            timer.cancel()
            if not box.events:
                return []
            await asyncio.sleep(0)      # let the rest of a burst finish in this turn
        events, box.events = box.events, []
        return events

    def _http_inline(self, box, call, req_id, scope, body, model_id):
        """A request to a plain synchronous __call__, run here and now instead of in a task
        (a task per request is most of a trivial request's cost in the replica). It cannot
        yield the loop, so it holds no semaphore slot: exchange() only runs it while the
        semaphore has room, and it is done before anything else runs. A return value that
        still needs awaiting (a starlette Response, a generator) is finished by a task."""
        self._ongoing += 1
        token = context.set_request_context(context.RequestContext(
            scope.get("path", ""), str(req_id), self._deployment_id.app_name, model_id or ""))
        try:
            receive = _receiver(body)
            result = call(_starlette().Request(scope, receive))
            if type(result) is str:
                data = result.encode("utf-8")
                box.push((req_id, FULL, 200, [(b"content-type", TEXT_UTF8),
                                              (b"content-length", str(len(data)).encode())], data))
                return
            if not (inspect.isawaitable(result) or inspect.isgenerator(result)
                    or inspect.isasyncgen(result) or isinstance(result, _starlette().Response)):
                content_type, data = encode_result(result)
                box.push((req_id, FULL, 200, [(b"content-type", content_type),
                                              (b"content-length", str(len(data)).encode())], data))
                return
        except BaseException:    # noqa: BLE001 - even SystemExit: it must not fail the whole exchange
            logger.error("Request %s to %s failed:\n%s", req_id, self._deployment_id.name,
                         traceback.format_exc())
            box.push((req_id, FULL) + plain_response(500, "Internal Server Error"))
            return
        finally:
            context.reset_request_context(token)
            self._ongoing -= 1
        self._ongoing += 1
        asyncio.get_running_loop().create_task(self._http(box, req_id, scope, body, model_id, result))

    async def _http(self, box, req_id, scope, body, model_id, result=_NO_RESULT):
        try:
            async with self._sem:
                token = context.set_request_context(context.RequestContext(
                    scope.get("path", ""), str(req_id), self._deployment_id.app_name, model_id or ""))
                try:
                    await self._serve_http(box, req_id, scope, body, result)
                finally:
                    context.reset_request_context(token)
        except BaseException as exc:   # noqa: BLE001 - every request gets an answer
            if not isinstance(exc, Exception):
                box.push((req_id, ABORT, "request cancelled", None, None))
                raise
            logger.error("Request %s to %s failed:\n%s", req_id, self._deployment_id.name,
                         traceback.format_exc())
            box.push((req_id, FULL) + plain_response(500, "Internal Server Error"))
        finally:
            self._ongoing -= 1

    async def _serve_http(self, box, req_id, scope, body, result=_NO_RESULT):
        sender = _Sender(box, req_id)
        receive = _receiver(body)
        if self._asgi_app is not None:
            await self._asgi_app(scope, receive, sender)
            sender.finish()
            return
        starlette = _starlette()
        if result is _NO_RESULT:
            if isinstance(self._instance, _FunctionServable):
                call = self._instance
            else:
                call = self._instance.__call__
            result = call(starlette.Request(scope, receive))
        if inspect.isawaitable(result):
            result = await result
        if inspect.isgenerator(result) or inspect.isasyncgen(result):
            result = starlette.StreamingResponse(_as_bytes(result), media_type="text/plain")
        if isinstance(result, starlette.Response):
            await result(scope, receive, sender)
            sender.finish()
            return
        content_type, data = encode_result(result)
        box.push((req_id, FULL, 200, [(b"content-type", content_type),
                                      (b"content-length", str(len(data)).encode())], data))


async def _as_bytes(gen):
    if inspect.isasyncgen(gen):
        async for item in gen:
            yield item if isinstance(item, (bytes, str)) else encode_result(item)[1]
    else:
        for item in gen:
            yield item if isinstance(item, (bytes, str)) else encode_result(item)[1]


_STARLETTE = []


def _starlette():
    """starlette's Request, Response and StreamingResponse, imported once."""
    if not _STARLETTE:
        from starlette import requests, responses

        class Names:
            Request = requests.Request
            Response = responses.Response
            StreamingResponse = responses.StreamingResponse
        _STARLETTE.append(Names)
    return _STARLETTE[0]


def _release(fut):
    if not fut.done():
        fut.set_result(None)


def _receiver(body):
    state = {"sent": False}

    async def receive():
        if not state["sent"]:
            state["sent"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()     # the client stays connected as far as we know
    return receive


class _Sender:
    """ASGI send that turns an app's messages into channel events: one FULL event when the
    body comes in one message, START/BODY.../END when it streams."""
    __slots__ = ("box", "req_id", "status", "headers", "streaming", "done")

    def __init__(self, box, req_id):
        self.box = box
        self.req_id = req_id
        self.status = None
        self.headers = None
        self.streaming = False
        self.done = False

    async def __call__(self, message):
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
        elif kind == "http.response.body":
            if self.done:
                return
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if not self.streaming and not more:
                self.done = True
                self.box.push((self.req_id, FULL, self.status, with_length(self.headers, body), body))
                return
            if not self.streaming:
                self.streaming = True
                self.box.push((self.req_id, START, self.status, self.headers, None))
            if body:
                self.box.push((self.req_id, BODY, bytes(body), None, None))
            if not more:
                self.done = True
                self.box.push((self.req_id, END, None, None, None))

    def finish(self):
        """The app returned: make sure the request is answered."""
        if self.done:
            return
        self.done = True
        if self.streaming:
            self.box.push((self.req_id, END, None, None, None))
        elif self.status is not None:
            self.box.push((self.req_id, FULL, self.status, with_length(self.headers, b""), b""))
        else:
            self.box.push((self.req_id, FULL) + plain_response(500, "The application sent no response"))


def _pid():
    import os
    return os.getpid()


def _node_id():
    import zray
    try:
        return zray.get_runtime_context().get_node_id()
    except Exception:   # noqa: BLE001 - informational only
        return None


__all__ = ["ServeReplica", "FULL", "START", "BODY", "END", "ABORT", "JSON"]
