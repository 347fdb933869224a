"""@serve.multiplexed and get_multiplexed_model_id: many models per replica, an LRU of them.

The model id of a request comes from the `serve_multiplexed_model_id` HTTP header or from
`handle.options(multiplexed_model_id=...)`; callers send a model's requests back to the
replica they last sent it to while it has room, so loaded models are reused.
"""
import asyncio
import collections
import functools
import inspect
import logging

from .context import get_request_context

logger = logging.getLogger("zray.serve")


def get_multiplexed_model_id():
    """The model id of the request being handled ('' when none)."""
    return get_request_context().multiplexed_model_id


class _ModelCache:
    def __init__(self, loader, owner, capacity):
        self.loader = loader
        self.owner = owner
        self.capacity = capacity
        self.models = collections.OrderedDict()
        self.loading = {}

    async def get(self, model_id):
        if model_id in self.models:
            self.models.move_to_end(model_id)
            return self.models[model_id]
        fut = self.loading.get(model_id)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = self.loading[model_id] = asyncio.get_running_loop().create_future()
        try:
            while len(self.models) >= self.capacity:
                old_id, old = self.models.popitem(last=False)
                logger.info("unloading model %s", old_id)
                unload = getattr(old, "__del__", None)
                if unload is not None:
                    try:
                        result = unload()
                        if inspect.isawaitable(result):
                            await result
                    except Exception:  # noqa: BLE001
                        logger.exception("model %s's __del__ raised", old_id)
                del old
            args = (self.owner, model_id) if self.owner is not None else (model_id,)
            model = await self.loader(*args)
            self.models[model_id] = model
            fut.set_result(model)
            return model
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()      # retrieved: no "never retrieved" warning
            raise
        finally:
            self.loading.pop(model_id, None)


def multiplexed(func=None, max_num_models_per_replica=3):
    if isinstance(max_num_models_per_replica, bool) or not isinstance(max_num_models_per_replica, int) \
            or (max_num_models_per_replica < 1 and max_num_models_per_replica != -1):
        raise ValueError(f"max_num_models_per_replica must be an int >= 1 (or -1), got "
                         f"{max_num_models_per_replica!r}")
    capacity = float("inf") if max_num_models_per_replica == -1 else max_num_models_per_replica

    def decorate(fn):
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("@serve.multiplexed must decorate an 'async def' model loader")
        params = list(inspect.signature(fn).parameters)
        is_method = bool(params) and params[0] == "self"
        attr = f"__zray_models_{fn.__name__}"
        holder = {}

        @functools.wraps(fn)
        async def wrapper(*args):
            if is_method:
                owner, (model_id,) = args[0], args[1:]
                cache = owner.__dict__.get(attr)
                if cache is None:
                    cache = _ModelCache(fn, owner, capacity)
                    setattr(owner, attr, cache)
            else:
                (model_id,) = args
                cache = holder.get("c")
                if cache is None:
                    cache = holder["c"] = _ModelCache(fn, None, capacity)
            if not isinstance(model_id, str):
                raise TypeError(f"a multiplexed model id must be a str, got {type(model_id).__name__}")
            return await cache.get(model_id)
        return wrapper

    if func is not None:
        return decorate(func)
    return decorate
