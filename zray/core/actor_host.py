"""The worker side of an actor: the instance, and how its calls run.

  serial    the default: calls run one at a time on the main thread, in arrival order (so in
            each caller's submission order)
  threaded  max_concurrency > 1 or concurrency groups: a thread pool per group
  async     any `async def` method: one event loop thread; each group's semaphore caps the calls
            running at once (1000 by default)
"""
import asyncio
import atexit
import collections
import concurrent.futures
import inspect
import logging
import os
import selectors
import sys
import threading
import time
import types

import zmq

from .. import exceptions
from ..objects import serialization
from ..scheduling.actor_directory import EXITED_REASON
from ..scheduling.task_spec import TaskSpec
from ..transport import wire
from .context import ActorExit

DEFAULT_GROUP = "_default"
_COROUTINE = types.CoroutineType     # what an async def method returns: no inspect call
# How long a graceful end waits for __ray_shutdown__ and the atexit handlers (Ray's default
# graceful-shutdown timeout is 30 s too); ZRAY_ACTOR_SHUTDOWN_TIMEOUT_S changes it.
ACTOR_SHUTDOWN_TIMEOUT_S = float(os.environ.get("ZRAY_ACTOR_SHUTDOWN_TIMEOUT_S", "30"))

log = logging.getLogger("zray.actor")


class ActorHost:
    def __init__(self, execution, actor_id, instance, meta, restarts=0):
        self.execution = execution
        self.restarts = restarts      # the creation task's attempt: 0 for the first life
        self.actor_id = actor_id
        self.instance = instance
        self.meta = meta
        self.class_name = meta["class_name"]
        groups = dict(meta.get("concurrency_groups") or {})
        groups[DEFAULT_GROUP] = meta.get("max_concurrency", 1)
        self.groups = groups
        if meta.get("is_async"):
            self.mode = "async"
            self.loops = {}        # group -> its event loop, on a thread of its own
            self.loop_threads = {}  # group -> the ident of its loop's thread
            self.handoffs = {}     # group -> [calls handed to its loop, of those started]
            self._loops_lock = threading.Lock()
            self.semaphores = {}
            execution.executor.reads_inbox = False
            self.loop = self._loop_of(DEFAULT_GROUP)
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
            self.execution.executor.enqueue((spec, None, frames))
            return
        group = self._group_of(spec)
        if self.mode == "threaded":
            self.pools[group].submit(self.execution.execute_call, spec, frames)
        else:
            # call_soon_threadsafe and a plain Task on the loop: run_coroutine_threadsafe adds
            # a concurrent Future chained to the Task (~10 µs of the loop thread per call).
            # The call is pending until _run_async ends (for _terminate_when_idle); it removes
            # itself there, not in a done callback: that would cost the loop one more turn
            # (a select and a handle) per call. Nothing cancels these Tasks before they start.
            self.async_tasks[spec.task_id] = None
            loop = self._loop_of(group)
            coro = self._run_async(spec, frames, group)
            # Handlers run on whichever thread reads the inbox (always holding it, so the
            # counts below change one thread at a time). Usually that is the loop's own thread,
            # waiting in its selector (_InboxSelector): the Task starts in this loop turn, with
            # no wake-up of another thread. Calls start in arrival order either way: one
            # handed over from another thread and not started yet goes first.
            if self.loop_threads.get(group) == threading.get_ident():
                counts = self.handoffs[group]
                if counts[0] == counts[1]:
                    loop.create_task(coro)
                else:
                    counts[0] += 1
                    loop.call_soon(self._create_handed, loop, coro, counts)
            else:
                counts = self.handoffs[group]
                counts[0] += 1
                loop.call_soon_threadsafe(self._create_handed, loop, coro, counts)

    @staticmethod
    def _create_handed(loop, coro, counts):
        """On the loop's thread: start a call handed over (counts: [handed, started])."""
        counts[1] += 1
        loop.create_task(coro)

    def _group_of(self, spec):
        group = spec.extra.get("group")
        if group is None:
            method = self.meta["methods"].get(spec.extra["method"], {})
            group = method.get("concurrency_group")
        if group is not None and group not in self.groups:
            group = DEFAULT_GROUP    # an unknown group is reported as an error by the call itself
        return group or DEFAULT_GROUP

    # -- async mode --------------------------------------------------------------------------------
    def _loop_of(self, group):
        """The group's event loop, started on first use. Each concurrency group has its own
        loop and thread, as in Ray: a call that blocks its loop (a sync sleep, a C call)
        stalls only its group."""
        loop = self.loops.get(group)
        if loop is None:
            with self._loops_lock:
                loop = self.loops.get(group)
                if loop is None:
                    loop = asyncio.SelectorEventLoop(_InboxSelector(self.execution.core.inbox))
                    self.handoffs[group] = [0, 0]
                    threading.Thread(target=self._run_loop, args=(loop, group), daemon=True,
                                     name=f"zray-actor-loop-{group}").start()
                    self.loops[group] = loop
        return loop

    def _run_loop(self, loop, group):
        self.loop_threads[group] = threading.get_ident()
        asyncio.set_event_loop(loop)
        loop.run_forever()

    async def _run_async(self, spec, frames, group):
        slots = self.semaphores.get(group)
        if slots is None:
            slots = self.semaphores[group] = _CallSlots(self.groups[group])
        try:
            if slots.free > 0 and not slots.waiters:
                slots.free -= 1
            else:
                await slots.wait()
            try:
                await self.execution.execute_call_async(spec, frames)
            finally:
                slots.release()
        finally:
            self.async_tasks.pop(spec.task_id, None)

    # -- calling a method ------------------------------------------------------------------------
    def method(self, name):
        if name == "__ray_ready__":
            return lambda: True
        fn = getattr(self.instance, name, None)
        if fn is None:
            raise AttributeError(f"'{self.class_name}' actor has no method {name!r}")
        return fn


class _CallSlots:
    """A concurrency group's cap on the calls running at once (max_concurrency), touched only
    on the group's loop thread: a count and a FIFO of waiters. asyncio.Semaphore did the same
    for ~10 µs per call (two coroutines and a scan of its waiters on every acquire)."""

    __slots__ = ("free", "waiters")

    def __init__(self, n):
        self.free = n
        self.waiters = collections.deque()

    async def wait(self):
        """Wait for a slot (the caller found none free): release() hands one over."""
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()      # handed a slot as the cancel came: pass it on
            raise

    def release(self):
        waiters = self.waiters
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self.free += 1


class _InboxSelector(selectors.EpollSelector):
    """An async actor's event loop reads the process's inbox while it waits (Inbox.
    read_while_idle), so the calls it dispatches start on the loop without a thread hand-off
    (a self-pipe write, a wake-up, a GIL hand-over and two more loop turns per call). When
    another thread reads the inbox it waits as a plain loop does, and calls come handed over."""

    def __init__(self, inbox):
        super().__init__()
        self._inbox = inbox

    def select(self, timeout=None):
        if timeout is None or timeout > 0:
            try:
                if self._inbox.read_while_idle(self.fileno(), timeout):
                    timeout = 0
            except zmq.ZMQError:     # the transport closed under us: the process is ending
                pass
        return super().select(timeout)


class ActorExecution:
    """A worker's actor, if it hosts one: creating it and running its calls.

    A part of the worker runtime with two collaborators: the executor (executor.py: the main
    thread's queue, running code, storing returns, replying) and the core (its inbox, send,
    and where the actor's record lives)."""

    def __init__(self, executor, core):
        self.executor = executor
        self.core = core
        self.host = None           # the ActorHost, once the constructor ran
        self.callers = set()       # who called: told EXITED after our last reply (exit_process)
        inbox = core.inbox
        inbox.handle(wire.ACTOR_TASK, self._on_actor_task)
        inbox.handle(wire.ACTOR_CALL, self._on_actor_call)
        inbox.handle(wire.TERMINATE_ACTOR, self._on_terminate)

    def _on_actor_task(self, sender, payload, frames):
        (spec,) = payload
        if self.host is None:
            return      # cannot happen: callers learn our address only once the actor exists
        if not isinstance(spec, TaskSpec):
            raise TypeError(f"ACTOR_TASK carries a {type(spec).__name__}, not a TaskSpec")
        self.host.submit(spec, frames)

    def _on_actor_call(self, sender, payload, frames):
        if self.host is None:
            return
        spec = TaskSpec(*payload)
        self.callers.add(spec.owner)
        self.host.submit(spec, frames)

    def _on_terminate(self, sender, payload, frames):
        """No handle remains: end after the calls already queued."""
        if self.host is not None:
            if self.host.mode == "serial":
                self.executor.enqueue((_TERMINATE, None, None))
            else:
                threading.Thread(target=self._terminate_when_idle, daemon=True).start()

    def _terminate_when_idle(self):
        host = self.host
        if host.mode == "threaded":
            for pool in host.pools.values():
                pool.shutdown(wait=True)
        else:
            while host.async_tasks:
                threading.Event().wait(0.05)
        self.exit_process()

    def create_instance(self, spec, frames):
        """Run the constructor (main thread) and tell the node how it went."""
        executor = self.executor
        actor_id = spec.extra["actor_id"]
        meta = spec.extra["meta"]
        executor.begin(spec, meta["class_name"])
        try:
            cls = executor.function(spec.function_id)
            # Constructor arguments are copied out of the store: an actor usually keeps them
            # for its whole life, and read in place they would stay pinned there, so a store
            # full of them could neither spill nor take the next actor's arguments.
            args, kwargs = executor.resolve_args(spec, frames, copy=True)
            instance = cls(*args, **kwargs)
        except BaseException as exc:
            sobj = executor.task_error(spec, exc)
            message = (f"The actor {meta['class_name']} died because its constructor raised "
                       f"{type(exc).__name__}: {exc}")
            executor.flush_output()
            self.core.send(self.core.daemon, wire.ACTOR_STARTED, (actor_id, False, message),
                           [sobj.to_bytes()])
            return
        finally:
            executor.end()
        self.host = ActorHost(self, actor_id, instance, meta, spec.attempt)
        # The actor holds what it asked for explicitly (none by default), not what placing
        # it took: that is what get_assigned_resources() shows inside it, as in Ray.
        executor.set_assigned(spec.extra.get("lifetime") or {})
        self.core.send(self.core.daemon, wire.ACTOR_STARTED, (actor_id, True, None))

    def execute_call(self, spec, frames):
        """Run one method call (main thread for serial actors, a pool thread otherwise)."""
        executor = self.executor
        start = time.time()
        self.core.reporter.call_started((spec, self.host.actor_id, self.host.class_name, start))
        serial = self.host.mode == "serial"
        if serial:
            executor.running_task = spec
            executor.context.current_task_id = spec.task_id
        exiting = False
        try:
            name = spec.extra["method"]
            if name == "__ray_terminate__":
                results, result_frames, retryable = self._exit_returns(spec) + (False,)
                exiting = True
            else:
                try:
                    function = self.host.method(name)
                except AttributeError as exc:
                    results, result_frames = executor.error_returns(spec, executor.task_error(spec, exc))
                    retryable = False
                else:
                    results, result_frames, retryable = executor.run(spec, frames, function)
        except ActorExit:
            results, result_frames, retryable = self._exit_returns(spec) + (False,)
            exiting = True
        except Exception as exc:      # zray's own error path failed: the caller still hears
            results, result_frames, retryable = executor.internal_error_returns(spec, exc)
        finally:
            if serial:
                executor.end()
        executor.flush_output()
        executor.send_result(spec, results, result_frames, retryable)
        self.report_call(spec, start)
        if exiting:
            self.exit_process()

    def report_call(self, spec, start):
        """The call ended: one tuple for the node's task history (core/reporter.py formats it
        later, on its own thread, off the call's path)."""
        host = self.host
        self.core.reporter.call_ended((spec, host.actor_id, host.class_name, start, time.time(),
                                       self.executor.call_errors.pop(spec.task_id, None)))

    async def execute_call_async(self, spec, frames):
        executor = self.executor
        start = time.time()
        self.core.reporter.call_started((spec, self.host.actor_id, self.host.class_name, start))
        exiting = False
        items = [0]        # a streaming call's items sent so far (calls interleave: not shared)
        try:
            if spec.extra["method"] == "__ray_terminate__":
                raise ActorExit()
            function = self.host.method(spec.extra["method"])
            args, kwargs = executor.resolve_args(spec, frames)
            value = function(*args, **kwargs)
            if spec.streaming:
                results, result_frames = await self._stream_async(spec, value, items)
            else:
                if type(value) is _COROUTINE or inspect.isawaitable(value):
                    value = await value
                elif inspect.isasyncgen(value):
                    raise TypeError(f"{spec.name} is an async generator: call it with "
                                    "num_returns='streaming' (the default for generators)")
                results, result_frames = executor.store_returns(spec, value)
        except ActorExit:
            results, result_frames = self._exit_returns(spec, items[0])
            exiting = True
        except asyncio.CancelledError:
            executor.call_errors[spec.task_id] = ("TASK_CANCELLED", "the call was cancelled")
            err = exceptions.TaskCancelledError(spec.task_id)
            results, result_frames = executor.error_returns(spec, serialization.serialize_error(err),
                                                            items[0])
        except BaseException as exc:
            results, result_frames = executor.error_returns(spec, executor.task_error(spec, exc),
                                                            items[0])
        executor.send_result(spec, results, result_frames, False)
        self.report_call(spec, start)
        if exiting:
            self.exit_process()

    def _exit_returns(self, spec, index=None):
        """The call that ends the actor (exit_actor, __ray_terminate__) fails, as in Ray, with
        the ActorDiedError every later call gets."""
        err = exceptions.ActorDiedError(f"The actor {self.host.class_name} {EXITED_REASON}")
        return self.executor.error_returns(spec, serialization.serialize_error(err), index)

    async def _stream_async(self, spec, gen, items):
        """A streaming call of an async actor: each item goes to the caller as it comes."""
        if inspect.isawaitable(gen):
            gen = await gen
        if inspect.isasyncgen(gen):
            async for value in gen:
                self.executor.send_generator_item(spec, items[0], value)
                items[0] += 1
        elif inspect.isgenerator(gen):
            for value in gen:
                self.executor.send_generator_item(spec, items[0], value)
                items[0] += 1
        else:
            raise TypeError(f"{spec.name} was called with num_returns='streaming' but is not a "
                            "generator")
        return [items[0]], []

    def exit_process(self):
        """Leave now: tell the node first so it does not restart us, flush, and go."""
        core = self.core
        core.send(core.actors.home(self.host.meta), wire.ACTOR_EXITING, (self.host.actor_id,))
        # Each caller hears it from us too, after our last reply to it (same path, in order):
        # the node's DEAD may overtake those replies (actor_caller.py).
        for caller in list(self.callers):
            try:
                core.send(caller, wire.ACTOR_STATE, (self.host.actor_id, "EXITED", None,
                          f"The actor {self.host.class_name} {EXITED_REASON}"))
            except Exception:    # logged by send(); the caller falls back on a grace period
                pass
        core.reporter.flush()
        self.run_exit_hooks()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        try:
            core.transport.close(linger_ms=2000)
        finally:
            os._exit(0)

    def run_exit_hooks(self, timeout=None):
        """A graceful end runs the actor's `__ray_shutdown__` and then the process's atexit
        handlers, as a Python exit would, on a thread of their own: what they do not finish
        within ACTOR_SHUTDOWN_TIMEOUT_S is cut off by the exit. Callers were told already,
        so a slow hook delays nobody's error."""
        host = self.host
        hook = getattr(host.instance, "__ray_shutdown__", None) if host is not None else None

        def run():
            if hook is not None:
                try:
                    value = hook()
                    if inspect.isawaitable(value):
                        # A loop of its own: the actor's may be the thread that exits.
                        asyncio.run(_awaited(value))
                except BaseException:
                    log.exception("__ray_shutdown__ of actor %s raised", host.class_name)
            atexit._run_exitfuncs()
        runner = threading.Thread(target=run, name="zray-actor-exit", daemon=True)
        runner.start()
        runner.join(ACTOR_SHUTDOWN_TIMEOUT_S if timeout is None else timeout)
        if runner.is_alive():
            log.warning("the exit hooks of actor %s did not finish within %.0fs; exiting anyway",
                        host.class_name if host else "?", ACTOR_SHUTDOWN_TIMEOUT_S)


_TERMINATE = object()


async def _awaited(awaitable):
    return await awaitable

