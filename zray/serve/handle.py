"""DeploymentHandle, DeploymentResponse and the per-process router behind handles.

A handle is just (deployment, application, call options): it pickles as names, so it can be
passed to other deployments (composition) and works in any process. The process's router for a
deployment learns the live replicas by long poll from the controller and picks one by power of
two choices on the calls this process has outstanding on each. Each call is one actor call; the
replica keeps max_ongoing_requests with its own semaphore.
"""
import asyncio
import concurrent.futures
import itertools
import logging
import os
import random
import threading
import time

import zray

from .common import CONTROLLER_NAME, SERVE_NAMESPACE
from .exceptions import RayServeException

logger = logging.getLogger("zray.serve")
LONG_POLL_TIMEOUT_S = 30.0
PRUNE_AT = 64
_controller = {"handle": None}
_routers = {}
_routers_lock = threading.Lock()
_ids = itertools.count(1)


def get_controller(check=True):
    handle = _controller["handle"]
    if handle is None:
        try:
            handle = zray.get_actor(CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        except ValueError:
            if not check:
                return None
            raise RayServeException("There is no Serve instance running on this zray cluster; "
                                    "call serve.run() or serve.start() first") from None
        _controller["handle"] = handle
    return handle


def forget_controller():
    _controller["handle"] = None
    with _routers_lock:
        routers = list(_routers.values())
        _routers.clear()
    for r in routers:
        r.stop()


class _Router:
    def __init__(self, app_name, name):
        self.app_name = app_name
        self.name = name
        self.key = f"{app_name}#{name}"
        self.lock = threading.Lock()
        self.replicas = {}              # unique id -> ActorHandle
        self.outstanding = {}           # unique id -> [ObjectRef]
        self.version = None
        self.exists = True
        self.changed = threading.Condition(self.lock)
        self.model_affinity = {}
        self._stopped = False
        self._queued = 0
        self._caller_id = f"{os.getpid()}-{id(self):x}"
        self._refresh(block=True)
        threading.Thread(target=self._poll, name=f"zray-serve-router-{name}", daemon=True).start()

    def stop(self):
        self._stopped = True

    def _refresh(self, block):
        controller = get_controller()
        timeout = 0 if block else LONG_POLL_TIMEOUT_S
        ref = controller.listen.remote("dep:" + self.key, self.version, timeout)
        if block:
            version, table = zray.get(ref, timeout=timeout + 30)
        else:
            # Not zray.get: a thread blocked in get reads the process's inbox itself, so every
            # reply (the user's own handle calls too) would reach the waiting caller through
            # this thread, one more thread hand-off per call. The future is completed by
            # whichever thread reads.
            try:
                version, table = ref.future().result(timeout + 30)
            except concurrent.futures.TimeoutError:
                raise TimeoutError(f"no long poll reply for {self.key}") from None
        with self.lock:
            self.version = version
            self.exists = table.exists
            live = dict(table.replicas)
            self.replicas = live
            for uid in list(self.outstanding):
                if uid not in live:
                    del self.outstanding[uid]
            self.changed.notify_all()

    def _poll(self):
        while not self._stopped:
            try:
                self._refresh(block=False)
            except Exception as exc:  # noqa: BLE001 - the controller may be gone; retry
                if self._stopped or not zray.is_initialized():
                    return
                logger.debug("handle long poll for %s failed: %s", self.key, exc)
                time.sleep(0.5)

    def choose(self, model_id):
        """(unique id, handle) of the replica to call; None when there is none."""
        with self.lock:
            replicas = self.replicas
            n = len(replicas)
            if n == 0:
                return None
            if model_id:
                uid = self.model_affinity.get(model_id)
                if uid in replicas:
                    return uid, replicas[uid]
            if n == 1:
                uid = next(iter(replicas))
            else:
                a, b = random.sample(list(replicas), 2)
                uid = a if self._load(a) <= self._load(b) else b
            if model_id:
                self.model_affinity[model_id] = uid
            return uid, replicas[uid]

    def _load(self, uid):
        refs = self.outstanding.get(uid)
        if not refs:
            return 0
        _, not_ready = zray.wait(refs, num_returns=len(refs), timeout=0)
        self.outstanding[uid] = not_ready
        return len(not_ready)

    def record(self, uid, ref):
        with self.lock:
            if uid in self.replicas:
                refs = self.outstanding.setdefault(uid, [])
                refs.append(ref)
                if len(refs) >= PRUNE_AT:       # keep the list to what is really outstanding
                    self._load(uid)

    def wait_for_replica(self, model_id, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        reported = 0.0
        with self.lock:
            self._queued += 1
        try:
            while True:
                chosen = self.choose(model_id)
                if chosen is not None:
                    return chosen
                with self.lock:
                    if not self.exists:
                        raise RayServeException(f"Deployment '{self.name}' in application "
                                                f"'{self.app_name}' does not exist")
                now = time.monotonic()
                if now - reported > 1.0:      # tell the autoscaler requests wait (scale from 0)
                    reported = now
                    try:
                        get_controller().record_handle_queued.remote(self.key, self._caller_id, self._queued)
                    except Exception:   # noqa: BLE001
                        pass
                if deadline is not None and now >= deadline:
                    raise TimeoutError(f"no replica of {self.name} became available within {timeout}s")
                with self.lock:
                    self.changed.wait(0.5)
        finally:
            with self.lock:
                self._queued -= 1

    def mark_unavailable(self, uid):
        with self.lock:
            self.replicas = {k: v for k, v in self.replicas.items() if k != uid}
            self.outstanding.pop(uid, None)
        try:
            get_controller().report_replica_unavailable.remote(self.app_name, self.name, uid)
        except Exception:   # noqa: BLE001
            pass


def _router(app_name, name):
    key = (app_name, name)
    r = _routers.get(key)
    if r is None:
        with _routers_lock:
            r = _routers.get(key)
            if r is None:
                r = _routers[key] = _Router(app_name, name)
    return r


def _to_arg(value):
    if isinstance(value, DeploymentResponse):
        return value._to_object_ref_sync()
    if isinstance(value, DeploymentResponseGenerator):
        raise TypeError("A streaming DeploymentResponseGenerator cannot be passed to another call")
    return value


class DeploymentHandle:
    def __init__(self, deployment_name, app_name="default", *, _method_name="__call__",
                 _stream=False, _multiplexed_model_id=""):
        self.deployment_name = deployment_name
        self.app_name = app_name
        self._method_name = _method_name
        self._stream = _stream
        self._model_id = _multiplexed_model_id

    @property
    def deployment_id(self):
        from .common import DeploymentID
        return DeploymentID(self.deployment_name, self.app_name)

    def options(self, *, method_name=None, multiplexed_model_id=None, stream=None,
                use_new_handle_api=None, session_id=None, _prefer_local_routing=None, **_ignored):
        return DeploymentHandle(
            self.deployment_name, self.app_name,
            _method_name=self._method_name if method_name is None else method_name,
            _stream=self._stream if stream is None else bool(stream),
            _multiplexed_model_id=self._model_id if multiplexed_model_id is None else multiplexed_model_id)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self.options(method_name=name)

    def remote(self, *args, **kwargs):
        router = _router(self.app_name, self.deployment_name)
        chosen = router.choose(self._model_id)
        args = tuple(_to_arg(a) for a in args)
        kwargs = {k: _to_arg(v) for k, v in kwargs.items()}
        request_id = f"{os.getpid():x}-{next(_ids)}"
        meta = (self._method_name, self._model_id, request_id)
        if chosen is None:
            # no replica yet (deploying, or scaled to zero): a thread waits for one
            fut = concurrent.futures.Future()

            def later():
                try:
                    uid, replica = router.wait_for_replica(self._model_id, None)
                    fut.set_result(self._send(router, uid, replica, meta, args, kwargs))
                except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                    fut.set_exception(exc)
            threading.Thread(target=later, daemon=True).start()
            if self._stream:
                return DeploymentResponseGenerator(None, router, None, fut)
            return DeploymentResponse(None, router, None, fut)
        uid, replica = chosen
        sent = self._send(router, uid, replica, meta, args, kwargs)
        if self._stream:
            return DeploymentResponseGenerator(sent[1], router, uid)
        return DeploymentResponse(sent[1], router, uid)

    def _send(self, router, uid, replica, meta, args, kwargs):
        if self._stream:
            return uid, (replica, meta[2], replica.stream_start.remote(meta, *args, **kwargs))
        ref = replica.handle_request.remote(meta, *args, **kwargs)
        router.record(uid, ref)
        return uid, ref

    def __reduce__(self):
        return _rebuild_handle, (self.deployment_name, self.app_name, self._method_name,
                                 self._stream, self._model_id)

    def __repr__(self):
        return f"DeploymentHandle(deployment='{self.deployment_name}', app='{self.app_name}')"


def _rebuild_handle(name, app, method, stream, model_id):
    return DeploymentHandle(name, app, _method_name=method, _stream=stream,
                            _multiplexed_model_id=model_id)


class _ResponseBase:
    def __init__(self, ref, router, uid, assign=None):
        self._ref = ref
        self._router = router
        self._uid = uid
        self._assign = assign

    def _resolve(self, timeout=None):
        if self._ref is None:
            try:
                self._uid, self._ref = self._assign.result(timeout)
            except concurrent.futures.TimeoutError:
                raise TimeoutError("no replica was assigned in time") from None
        return self._ref

    async def _resolve_async(self):
        if self._ref is None:
            self._uid, self._ref = await asyncio.wrap_future(self._assign)
        return self._ref

    def _on_error(self, exc):
        from ..exceptions import ActorDiedError, ActorUnavailableError
        if isinstance(exc, (ActorDiedError, ActorUnavailableError)) and self._uid is not None:
            self._router.mark_unavailable(self._uid)


class DeploymentResponse(_ResponseBase):
    """The future result of handle.remote(): result(), await, or pass it to another call."""

    def result(self, *, timeout_s=None, _skip_asyncio_check=False):
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        ref = self._resolve(timeout_s)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return zray.get(ref, timeout=left)
        except Exception as exc:
            self._on_error(exc)
            raise

    def __await__(self):
        return self._await().__await__()

    async def _await(self):
        ref = await self._resolve_async()
        try:
            return await ref
        except Exception as exc:
            self._on_error(exc)
            raise

    async def _to_object_ref(self):
        return await self._resolve_async()

    def _to_object_ref_sync(self, _include_ray_actor_handle=False):
        return self._resolve()

    def cancel(self):
        if self._ref is not None:
            zray.cancel(self._ref)
        elif self._assign is not None:
            self._assign.cancel()

    @property
    def request_id(self):
        return None


class DeploymentResponseGenerator(_ResponseBase):
    """The items a streaming call yields, as they come: iterate it, or `async for` it. Each
    pull brings every item the replica has produced since the last one."""

    _buffer = None
    _done = False

    def __iter__(self):
        return self

    def __next__(self):
        while not self._buffer:
            if self._done:
                raise StopIteration
            replica, stream_id, first = self._resolve()
            ref = first if self._buffer is None else replica.stream_next.remote(stream_id)
            try:
                items, self._done = zray.get(ref)
            except Exception as exc:
                self._done = True
                self._on_error(exc)
                raise
            self._buffer = list(items)
        return self._buffer.pop(0)

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self._buffer:
            if self._done:
                raise StopAsyncIteration
            replica, stream_id, first = await self._resolve_async()
            ref = first if self._buffer is None else replica.stream_next.remote(stream_id)
            try:
                items, self._done = await ref
            except Exception as exc:
                self._done = True
                self._on_error(exc)
                raise
            self._buffer = list(items)
        return self._buffer.pop(0)

    def cancel(self):
        if self._ref is not None and not self._done:
            replica, stream_id, _ = self._ref
            replica.stream_cancel.remote(stream_id)
            self._done = True
