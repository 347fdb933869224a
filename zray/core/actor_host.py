"""The worker side of an actor: the instance, and how its calls run.

  serial    the default: calls run one at a time on the main thread, in arrival order (so in
            each caller's submission order)
  threaded  max_concurrency > 1 or concurrency groups: a thread pool per group
  async     any `async def` method: one event loop thread; each group's semaphore caps the calls
            running at once (1000 by default)
"""
import asyncio
import concurrent.futures
import inspect
import os
import sys
import threading

from .. import exceptions
from ..actor import ActorExit as ActorExitRequested
from ..objects import serialization
from ..scheduling.task_spec import TaskSpec
from ..transport import wire

DEFAULT_GROUP = "_default"


class ActorHost:
    def __init__(self, runtime, actor_id, instance, meta):
        self.runtime = runtime
        self.actor_id = actor_id
        self.instance = instance
        self.meta = meta
        self.class_name = meta["class_name"]
        groups = dict(meta.get("concurrency_groups") or {})
        groups[DEFAULT_GROUP] = meta.get("max_concurrency", 1)
        self.groups = groups
        if meta.get("is_async"):
            self.mode = "async"
            self.loop = asyncio.new_event_loop()
            self.semaphores = {}
            threading.Thread(target=self._run_loop, name="zray-actor-loop", daemon=True).start()
        elif len(groups) > 1 or groups[DEFAULT_GROUP] > 1:
            self.mode = "threaded"
            self.pools = {g: concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix=f"zray-{g}")
                          for g, n in groups.items()}
        else:
            self.mode = "serial"
        self.async_tasks = {}

    # -- routing (I/O thread) --------------------------------------------------------------------
    def submit(self, spec, frames):
        if self.mode == "serial":
            self.runtime.tasks.put((spec, None, frames))
            return
        group = self._group_of(spec)
        if self.mode == "threaded":
            self.pools[group].submit(self.runtime.execute_actor_call, spec, frames)
        else:
            # call_soon_threadsafe and a plain Task on the loop: run_coroutine_threadsafe adds
            # a concurrent Future chained to the Task (~10 µs of the loop thread per call).
            self.async_tasks[spec.task_id] = None     # pending, for _terminate_when_idle
            self.loop.call_soon_threadsafe(self._start_async, spec, frames, group)

    def _start_async(self, spec, frames, group):
        """On the loop thread: run one call as a Task."""
        task = self.loop.create_task(self._run_async(spec, frames, group))
        self.async_tasks[spec.task_id] = task
        task.add_done_callback(lambda _t, t=spec.task_id: self.async_tasks.pop(t, None))

    def _group_of(self, spec):
        group = spec.extra.get("group")
        if group is None:
            method = self.meta["methods"].get(spec.extra["method"], {})
            group = method.get("concurrency_group")
        if group is not None and group not in self.groups:
            group = DEFAULT_GROUP    # an unknown group is reported as an error by the call itself
        return group or DEFAULT_GROUP

    def cancel(self, task_id):
        task = self.async_tasks.get(task_id)
        if task is not None:
            self.loop.call_soon_threadsafe(task.cancel)    # asyncio Tasks are not thread-safe
            return True
        return False

    # -- async mode --------------------------------------------------------------------------------
    def _run_loop(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _run_async(self, spec, frames, group):
        sem = self.semaphores.get(group)
        if sem is None:
            sem = self.semaphores[group] = asyncio.Semaphore(self.groups[group])
        async with sem:
            await self.runtime.execute_actor_call_async(spec, frames)

    # -- calling a method ------------------------------------------------------------------------
    def method(self, name):
        if name == "__ray_ready__":
            return lambda: True
        fn = getattr(self.instance, name, None)
        if fn is None:
            raise AttributeError(f"'{self.class_name}' actor has no method {name!r}")
        return fn

    def exit_process(self):
        """Leave now: tell the node first so it does not restart us, flush, and go."""
        self.runtime._safe_send(self.runtime._home(self.meta), wire.ACTOR_EXITING, (self.actor_id,))
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        try:
            self.runtime.transport.close(linger_ms=2000)
        except Exception:
            pass
        os._exit(0)


def is_coroutine_result(value):
    return inspect.isawaitable(value)


class ActorExecution:
    """Mixed into WorkerRuntime: creating the actor and running its calls."""

    actor = None

    def _on_actor_task(self, sender, payload, frames):
        (spec,) = payload
        if self.actor is None:
            return      # cannot happen: callers learn our address only once the actor exists
        self.actor.submit(spec, frames)

    def _on_actor_call(self, sender, payload, frames):
        if self.actor is None:
            return
        self.actor.submit(TaskSpec(*payload), frames)

    def _on_terminate(self, sender, payload, frames):
        """No handle remains: end after the calls already queued."""
        if self.actor is not None:
            if self.actor.mode == "serial":
                self.tasks.put((_TERMINATE, None, None))
            else:
                threading.Thread(target=self._terminate_when_idle, daemon=True).start()

    def _terminate_when_idle(self):
        host = self.actor
        if host.mode == "threaded":
            for pool in host.pools.values():
                pool.shutdown(wait=True)
        else:
            while host.async_tasks:
                threading.Event().wait(0.05)
        host.exit_process()

    def create_actor_instance(self, spec, frames):
        """Run the constructor (main thread) and tell the node how it went."""
        actor_id = spec.extra["actor_id"]
        meta = spec.extra["meta"]
        self.running_task = spec
        self.current_task_id = spec.task_id
        self.current_task_name = meta["class_name"]
        try:
            cls = self._function(spec.function_id)
            args, kwargs = self._resolve_args(spec, frames)
            instance = cls(*args, **kwargs)
        except BaseException as exc:
            sobj = self._task_error(spec, exc)
            message = (f"The actor {meta['class_name']} died because its constructor raised "
                       f"{type(exc).__name__}: {exc}")
            self._flush_output()
            self._safe_send(self.daemon, wire.ACTOR_STARTED, (actor_id, False, message), [sobj.to_bytes()])
            return
        finally:
            self.running_task = None
        self.actor = ActorHost(self, actor_id, instance, meta)
        self._safe_send(self.daemon, wire.ACTOR_STARTED, (actor_id, True, None))

    def execute_actor_call(self, spec, frames):
        """Run one method call (main thread for serial actors, a pool thread otherwise)."""
        serial = self.actor.mode == "serial"
        if serial:
            self.running_task = spec
            self.current_task_id = spec.task_id
        exiting = False
        try:
            name = spec.extra["method"]
            if name == "__ray_terminate__":
                results, result_frames, retryable = self._store_returns(spec, None) + (False,)
                exiting = True
            else:
                try:
                    function = self.actor.method(name)
                except AttributeError as exc:
                    results, result_frames = self._error_returns(spec, self._task_error(spec, exc))
                    retryable = False
                else:
                    results, result_frames, retryable = self._run(spec, frames, function)
        except ActorExitRequested:
            results, result_frames, retryable = self._store_returns(spec, None) + (False,)
            exiting = True
        finally:
            if serial:
                self.interruptible = False
                self.running_task = None
        self._flush_output()
        self._safe_send(spec.owner, wire.TASK_RESULT, (spec.task_id, spec.attempt, results, retryable),
                        result_frames)
        if exiting:
            self.actor.exit_process()

    async def execute_actor_call_async(self, spec, frames):
        exiting = False
        retryable = False
        try:
            function = self.actor.method(spec.extra["method"])
            args, kwargs = self._resolve_args(spec, frames)
            value = function(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
            results, result_frames = self._store_returns(spec, value)
        except ActorExitRequested:
            results, result_frames = self._store_returns(spec, None)
            exiting = True
        except asyncio.CancelledError:
            err = exceptions.TaskCancelledError(spec.task_id)
            results, result_frames = self._error_returns(spec, serialization.serialize_error(err))
        except BaseException as exc:
            results, result_frames = self._error_returns(spec, self._task_error(spec, exc))
        self._safe_send(spec.owner, wire.TASK_RESULT, (spec.task_id, spec.attempt, results, retryable),
                        result_frames)
        if exiting:
            self.actor.exit_process()


_TERMINATE = object()

