"""The worker side: receive tasks from the node daemon, run them, report results.

Tasks run on the main thread, one at a time, so a non-forced cancel can interrupt them with a
real SIGINT (which also breaks a sleep). While idle the main thread reads the inbox itself, so a
task (or serial actor call) runs without a hand-off from the I/O thread; the I/O thread reads
while a task runs.
"""
import inspect
import logging
import os
import pickle
import queue
import signal
import socket
import sys
import threading
import time
import traceback

from .. import exceptions
from ..objects import serialization
from ..objects.ids import return_object_id
from ..scheduling.resources import CPU
from ..scheduling.task_spec import ACTOR_CALL, ARG_VALUE, TASK, TaskSpec
from ..transport import wire
from ..transport.zmq_transport import TransportClosed
from .actor_host import _TERMINATE, ActorExecution
from . import gpus
from .context import ActorExit
from .object_entries import VALUE_INLINE, VALUE_STORED
from .objects import INLINE_MAX
from .owner_table import retry_allowed
from .task_owner import load_function

log = logging.getLogger("zray.core")


class TaskCancelled(KeyboardInterrupt):
    """Raised in the main thread to stop a cancelled task: a KeyboardInterrupt, as in Ray."""


class Executor:
    def __init__(self, core):
        self.core = core
        self.context = core.context
        self.send = core.send
        self.tasks = queue.SimpleQueue()
        self.functions = {}
        self.running_task = None       # the spec being executed
        self.cancelled_before_start = set()
        self.interruptible = False      # SIGINT may stop the task's code only while it runs
        self.cancel_requested = None
        # Whether the main thread reads the inbox while idle; an async actor's loop does
        # instead (its calls never run here: actor_host.py, _InboxSelector).
        self.reads_inbox = True
        self.post_mortem_hook = None    # zray.util.debug.post_mortem under ZRAY_DEBUG_POST_MORTEM
        self.step_into_hook = None      # zray.util.debug: pause at a called task's first line
        self.assigned_gpus = []
        self._mask_gpus = gpus.masking()
        self.assigned_resources = {}
        # OMP_NUM_THREADS follows each task's CPUs (as in Ray) unless the user set it.
        self._omp_is_users = "OMP_NUM_THREADS" in os.environ
        self.pid = os.getpid()
        self.hostname = socket.gethostname()
        self.ip = "127.0.0.1"
        self._generator_index = 0
        self.call_errors = {}           # task_id -> (Ray's error type, message) of a failed call
        self.actors = ActorExecution(self, core)
        self.setup_error = None         # why this worker's runtime_env could not be built
        inbox = core.inbox
        inbox.handle(wire.EXECUTE_TASK, self._on_execute)
        inbox.handle(wire.CANCEL_TASK, self._on_cancel)
        core.executor = self

    def notify_blocked(self, blocked):
        if self.running_task is not None:
            self.send(self.context.daemon, wire.WORKER_BLOCKED, (blocked,))

    def enqueue(self, item):
        """Work for the main thread: (spec, gpu_grants, frames), or (_TERMINATE, None, None)."""
        self.tasks.put(item)

    # -- I/O thread --------------------------------------------------------------------------
    def _on_execute(self, sender, payload, frames):
        spec, gpu_grants = payload
        if not isinstance(spec, TaskSpec):
            raise TypeError(f"EXECUTE_TASK carries a {type(spec).__name__}, not a TaskSpec")
        self.tasks.put((spec, gpu_grants, frames))

    def _on_cancel(self, sender, payload, frames):
        task_id, force, recursive = payload
        spec = self.running_task
        if spec is None or spec.task_id != task_id:
            # Dispatched but not started yet (it waits in self.tasks): cancel it on arrival.
            if len(self.cancelled_before_start) > 1000:   # ids of tasks that had finished
                self.cancelled_before_start.clear()
            self.cancelled_before_start.add(task_id)
            return
        if recursive:
            self.core.owner.cancel_children(task_id, force)
        self.cancel_requested = task_id
        os.kill(os.getpid(), signal.SIGINT)

    # -- main thread -------------------------------------------------------------------------
    def serve_forever(self):
        signal.signal(signal.SIGINT, self._sigint)
        tasks = self.tasks
        has_task = self._has_task
        inbox = self.core.inbox
        while inbox.running:
            if tasks.empty():
                # Read the inbox on this thread while idle: a task (or a serial actor call)
                # then runs here without waking the I/O thread first. When another thread
                # reads it (e.g. an actor's pool thread blocked in get), wait on the queue.
                try:
                    read = inbox.read_until(has_task, time.monotonic() + 1.0) \
                        if self.reads_inbox else None
                except exceptions.LocalRayletDiedError:
                    return
                if read is None:
                    try:
                        item = tasks.get(timeout=1.0)
                    except queue.Empty:
                        item = None
                else:
                    item = tasks.get_nowait() if not tasks.empty() else None
                if item is None:
                    if inbox.dead_reason:
                        return
                    continue
            else:
                item = tasks.get_nowait()
            spec, gpu_grants, frames = item
            if spec is _TERMINATE:
                self.actors.exit_process()
            try:
                kind = spec.kind
                if kind == TASK:
                    self.execute(spec, gpu_grants, frames)
                elif kind == ACTOR_CALL:
                    self.actors.execute_call(spec, frames)
                else:
                    # The actor keeps its creation's GPUs for life (get_gpu_ids in its methods).
                    self._set_gpus(gpu_grants)
                    self.actors.create_instance(spec, frames)
            except TaskCancelled:      # a late interrupt, after the task had ended
                pass
            except Exception:          # a bug of ours: the worker serves on (execute answered)
                log.exception("error in the worker's loop running %r", spec)

    def _has_task(self):
        return not self.tasks.empty()

    def _sigint(self, signum, frame):
        spec = self.running_task
        if spec is not None and self.interruptible and self.cancel_requested == spec.task_id:
            if _in_critical_section(frame, _RUN_CODE) or self.core.inbox.in_inbox_code(frame):
                # Raising inside a socket send, a reference-count update, or while this thread
                # reads the inbox (a nested get) would corrupt them or lose a message: try
                # again in a moment, once the task's code is back in control.
                t = threading.Timer(0.005, os.kill, (os.getpid(), signal.SIGINT))
                t.daemon = True
                t.start()
                return
            self.cancel_requested = None      # one interrupt per cancel request
            raise TaskCancelled()

    def begin(self, spec, name):
        """The main thread starts running spec (a task, actor creation or serial call)."""
        self.running_task = spec
        self.context.current_task_id = spec.task_id
        self.context.current_task_name = name

    def end(self):
        self.interruptible = False
        self.running_task = None

    def execute(self, spec, gpu_grants, frames):
        self.begin(spec, spec.name)
        self.cancel_requested = None
        self._set_gpus(gpu_grants)
        self.set_assigned(spec.resources)
        self._generator_index = 0
        try:
            try:
                results, result_frames, retryable = self.run(spec, frames)
            except TaskCancelled:
                # A cancel that landed between the user's code and here: still a cancel.
                self.interruptible = False
                results, result_frames, retryable = self.cancelled_returns(spec)
            except BaseException as exc:     # zray's own error path failed: still an answer
                self.interruptible = False
                results, result_frames, retryable = self.internal_error_returns(spec, exc)
            self.interruptible = False
            self.flush_output()
            self.send_result(spec, results, result_frames, retryable)
        finally:
            self.end()
            self.context.current_task_name = None
            error_type, message = self.call_errors.pop(spec.task_id, (None, None))
            self.send(self.context.daemon, wire.TASK_FINISHED,
                      (spec.task_id, spec.attempt, error_type, message))

    def send_result(self, spec, results, frames, retryable):
        """Reply to the task's owner. A reply that cannot be sent (other than on shutdown)
        becomes an error reply, so the owner's get fails instead of hanging."""
        payload = (spec.task_id, spec.attempt, results, retryable)
        if self.context.debug_step_out_task == spec.task_id:    # `get` in a debugger session
            self.context.debug_step_out_task = None
            payload += (True,)
        try:
            self.send(spec.owner, wire.TASK_RESULT, payload, frames)
        except TransportClosed:
            return
        except Exception as exc:
            err = exceptions.RaySystemError(
                f"the result of {spec.name} could not be sent to its owner: {exc!r}")
            spec_results, spec_frames = self.error_returns(spec, serialization.serialize_error(err))
            self.send(spec.owner, wire.TASK_RESULT,
                      (spec.task_id, spec.attempt, spec_results, False), spec_frames)

    def run(self, spec, frames, function=None):
        """Run the task's code; (results, frames, retryable), for errors too.
        `function` is given for actor calls (a bound method); tasks fetch theirs."""
        self.interruptible = True
        try:
            if spec.task_id in self.cancelled_before_start:
                self.cancelled_before_start.discard(spec.task_id)
                raise TaskCancelled()
            if function is None:
                function = self.function(spec.function_id)
            args, kwargs = self.resolve_args(spec, frames)
            if self.step_into_hook is not None and spec.extra \
                    and spec.extra.get("debugger_breakpoint"):
                function = self.step_into_hook(function, spec.name)
            if spec.streaming:
                results, result_frames = self._run_generator(spec, function, args, kwargs)
            else:
                value = function(*args, **kwargs)
                self.leave_if_forked_child(None)
                if inspect.isgenerator(value) and spec.num_returns != 1:
                    results, result_frames = self._generator_returns(spec, value)
                else:
                    results, result_frames = self.store_returns(spec, value)
            self.interruptible = False
            return results, result_frames, False
        except TaskCancelled:
            self.interruptible = False
            return self.cancelled_returns(spec)
        except ActorExit:
            self.interruptible = False
            raise
        except exceptions.ObjectSerializationError as exc:
            self.interruptible = False
            return (*self.error_returns(spec, self.task_error(spec, exc)), False)
        except BaseException as exc:   # the user's code may raise anything, SystemExit too
            self.interruptible = False
            self.leave_if_forked_child(exc)
            if self.post_mortem_hook is not None and isinstance(exc, Exception):
                self._post_mortem(exc)
            # Worth a retry if the exception is one to retry and the owner's budget allows
            # (the one rule: owner_table.retry_allowed); the owner decides.
            retryable = _should_retry(spec.retry_exceptions, exc) and retry_allowed(spec)
            if retryable and spec.streaming:
                # No error item: the next attempt goes on where the items it repeats end.
                return [self._generator_index], [], True
            return (*self.error_returns(spec, self.task_error(spec, exc)), retryable)

    def leave_if_forked_child(self, exc):
        """In a child the task's code forked (os.fork, multiprocessing's fork) that returned
        or raised into zray instead of exiting: leave now, as a child process would, instead
        of answering for its parent (worker_main's fork handler)."""
        if os.getpid() == self.pid:
            return
        from ..node.processes import exit_forked_child
        exit_forked_child(exc)

    def _post_mortem(self, exc):
        """ZRAY_DEBUG_POST_MORTEM: a debugger session at the raise, before the error is sent."""
        try:
            self.post_mortem_hook(exc)
        except Exception:    # the debugger failed: the task's error still goes back
            log.exception("the post-mortem debugger failed")

    def internal_error_returns(self, spec, exc):
        """A failure in zray's handling of the task (not in the user's code): the owner still
        gets an error, never silence."""
        log.exception("error while running or reporting task %s", spec.name)
        self.note_error(spec, "RAY_SYSTEM_ERROR", exc)
        err = exceptions.RaySystemError(
            f"zray failed while running task {spec.name}: {type(exc).__name__}: {_safe_str(exc)}")
        return (*self.error_returns(spec, serialization.serialize_error(err)), False)

    def cancelled_returns(self, spec):
        self.call_errors[spec.task_id] = ("TASK_CANCELLED", "the task was cancelled")
        err = exceptions.TaskCancelledError(spec.task_id)
        return (*self.error_returns(spec, serialization.serialize_error(err)), False)

    # -- pieces ------------------------------------------------------------------------------
    def function(self, function_id):
        if self.setup_error is not None:    # every task (and constructor) fails with it
            raise self.setup_error
        fn = self.functions.get(function_id)
        if fn is None:
            _, frames = self.core.inbox.rpc(self.context.daemon, wire.FETCH_FUNCTION, (function_id,))
            fn = self.functions[function_id] = load_function(frames[0].buffer)
        return fn

    def resolve_args(self, spec, frames, copy=False):
        """The task's (args, kwargs). `copy`: stored arguments are copied out of the store
        instead of read in place (an actor's constructor: see ActorExecution.create_instance)."""
        values = []
        for desc in spec.args:
            if desc[0] == ARG_VALUE:
                flags, data, buffers = serialization.parse(frames[desc[1]].buffer)
                value = serialization.deserialize(flags, data, buffers)
            else:
                flags, value = self.core.store.read(desc[1], desc[3] if len(desc) > 3 else None,
                                                    copy=copy)
            if flags & serialization.FLAG_ERROR:
                raise value
            values.append(value)
        n_kw = len(spec.kwarg_names)
        if n_kw:
            return values[:-n_kw], dict(zip(spec.kwarg_names, values[-n_kw:]))
        return values, {}

    def store_returns(self, spec, value):
        n = spec.num_returns
        if n == 1:
            values = [value]
        elif n == 0:
            values = []
        else:
            if not isinstance(value, (tuple, list)) or len(value) != n:
                raise ValueError(f"Task {spec.name} has num_returns={n} but returned "
                                 f"{type(value).__name__} {_describe_len(value)}")
            values = list(value)
        results, frames = [], []
        for index, v in enumerate(values):
            try:
                sobj = serialization.serialize(v)
            except exceptions.ObjectSerializationError as exc:
                raise exceptions.ObjectSerializationError(
                    f"Could not serialize the return value of task {spec.name}: {exc}") from None
            results.append(self._put_result(spec, return_object_id(spec.task_id, index), sobj, frames))
        return results, frames

    def _generator_returns(self, spec, gen):
        """A generator with a static num_returns=N, as Ray runs it: item i is return i. Items
        yielded before an exception stay readable and the exception fills the rest; a
        generator that ends early fails only the missing returns; items past N are not read."""
        n = spec.num_returns
        results, frames = [], []
        error = None
        for index in range(n):
            try:
                value = next(gen)
            except StopIteration:
                error = self.task_error(spec, ValueError(
                    f"Task {spec.name} has num_returns={n} but its generator yielded only "
                    f"{index} value{'' if index == 1 else 's'}"))
                break
            except (TaskCancelled, ActorExit):
                raise
            except BaseException as exc:     # the user's code, SystemExit too
                self.leave_if_forked_child(exc)
                error = self.task_error(spec, exc)
                break
            try:
                sobj = serialization.serialize(value)
            except exceptions.ObjectSerializationError as exc:
                error = self.task_error(spec, exceptions.ObjectSerializationError(
                    f"Could not serialize return value {index} of task {spec.name}: {exc}"))
                break
            results.append(self._put_result(spec, return_object_id(spec.task_id, index), sobj, frames))
        else:
            gen.close()
        if error is not None:
            frames.append(error.to_bytes())
            results.extend([(VALUE_INLINE, len(frames) - 1, None)] * (n - len(results)))
        return results, frames

    def _put_result(self, spec, object_id, sobj, frames):
        """A return value, inline in the reply or in the store, owned by the caller."""
        contained = self._register_contained_for(spec.owner, sobj)
        if sobj.total_size <= INLINE_MAX:
            frames.append(sobj.to_bytes())
            return (VALUE_INLINE, len(frames) - 1, contained)
        self.core.store.put(object_id, sobj, spec.owner)
        return (VALUE_STORED, self.core.objects.node_id, contained)

    def _register_contained_for(self, receiver, sobj):
        """Refs inside a value sent to `receiver`: count it as a borrower before it gets them."""
        contained = []
        for ref in sobj.contained_refs:
            contained.append((ref._id, ref._owner))
            if ref._owner == receiver:
                if receiver == self.context.address:
                    # The result goes to this very process, whose task frame drops its refs
                    # before the message is read: hold ours now; the owner side takes the
                    # hold over (ReferenceTable.set_contained, pre_held).
                    self.core.refs.hold([(ref._id, ref._owner)])
                continue    # our messages to it arrive in order; its own hold suffices
            if ref._owner == self.context.address:
                self.core.refs.add_borrower(ref._id, receiver, 1)
            else:
                self.send(ref._owner, wire.ADD_BORROWER, (ref._id, receiver, 1))
        return contained

    def error_returns(self, spec, sobj, index=None):
        if spec.streaming:
            # The error becomes the next item of the stream, then the stream ends (`index`:
            # where, for a call that counts its own items, as async actor calls do).
            if index is None:
                index = self._generator_index
            result = self._put_result(spec, return_object_id(spec.task_id, index), sobj, frames := [])
            self.send(spec.owner, wire.GENERATOR_ITEM, (spec.task_id, spec.attempt, index, result), frames)
            return [index + 1], []
        layout = sobj.to_bytes()
        n = max(spec.num_returns, 1) if spec.num_returns != 0 else 1
        return [(VALUE_INLINE, 0, None)] * n, [layout]

    def note_error(self, spec, error_type, exc):
        """What the state API shows of a failed task or call (Ray's error type names)."""
        if len(self.call_errors) > 10_000:      # calls whose end was never reported
            self.call_errors.clear()
        self.call_errors[spec.task_id] = (error_type, f"{type(exc).__name__}: {_safe_str(exc)}"[:2000])

    def task_error(self, spec, exc):
        self.note_error(spec, "TASK_EXECUTION_EXCEPTION", exc)
        try:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        except Exception:    # a broken exception (its __str__ raises, ...): say what we can
            tb = f"{type(exc).__name__}: {_safe_str(exc)}"
        if isinstance(exc, exceptions.RayTaskError):
            cause = exc.cause if exc.cause is not None else exc
        else:
            cause = exc
        err = exceptions.RayTaskError(spec.name, tb, cause, os.getpid(), self.ip)
        try:
            sobj = serialization.serialize(err, serialization.FLAG_ERROR)
            # An exception whose __init__ wants more than its args pickles but cannot be
            # rebuilt; find out here, not in the caller's get().
            serialization.deserialize(sobj.flags, sobj.data, sobj.buffers)
            return sobj
        except Exception:
            err = exceptions.RayTaskError(spec.name, tb, exceptions.RayError(
                f"{type(exc).__name__}: {_safe_str(exc)} (the exception could not be pickled, "
                "so it is reported as a RayError)"), os.getpid(), self.ip)
            return serialization.serialize(err, serialization.FLAG_ERROR)

    def _run_generator(self, spec, function, args, kwargs):
        self._generator_index = 0
        gen = function(*args, **kwargs)
        if not inspect.isgenerator(gen):
            raise TypeError(f"{spec.name} was called with num_returns='streaming' but is not a generator")
        for value in gen:
            index = self._generator_index
            self.send_generator_item(spec, index, value)
            self._generator_index = index + 1
        return [self._generator_index], []

    def send_generator_item(self, spec, index, value):
        """Item `index` of a streaming task, to its owner as soon as it is produced."""
        self.leave_if_forked_child(None)
        sobj = serialization.serialize(value)
        frames = []
        result = self._put_result(spec, return_object_id(spec.task_id, index), sobj, frames)
        self.send(spec.owner, wire.GENERATOR_ITEM, (spec.task_id, spec.attempt, index, result), frames)

    def set_assigned(self, units):
        """What the running task (or the hosted actor) holds, and OMP_NUM_THREADS to match
        its CPUs (at least 1). Libraries that read it at import (numpy's BLAS, imported by
        the zygote) keep their pool: this sets what later imports and subprocesses see."""
        self.assigned_resources = dict(units)
        if not self._omp_is_users:
            from ..scheduling.resources import from_units
            if any("_group_" in name for name in units):
                from ..scheduling.placement_groups import original_resources
                units = original_resources(units)
            cpus = from_units({CPU: units.get(CPU, 0)}).get(CPU, 0)
            os.environ["OMP_NUM_THREADS"] = str(max(1, int(cpus)))

    def _set_gpus(self, gpu_grants):
        """get_gpu_ids() becomes the granted devices; CUDA_VISIBLE_DEVICES stays the node's
        list (zray/core/gpus.py says why), or with ZRAY_MASK_GPUS=1 becomes the granted ones."""
        node_ids = (self.core.node_info or {}).get("gpu_ids") or []
        self.assigned_gpus = gpus.assigned_ids([i for i, _ in gpu_grants], node_ids)
        visible = gpus.visible_devices(node_ids, self.assigned_gpus, self._mask_gpus)
        if visible is not None:
            os.environ[gpus.VISIBLE_ENV] = visible

    def flush_output(self):
        for stream in (sys.stdout, sys.stderr):
            if getattr(stream, "idle", False):
                continue        # a LogForwarder with nothing to send
            try:
                stream.flush()
            except (OSError, ValueError):   # a stream the task closed or broke
                pass


_RUN_CODE = Executor.run.__code__
_CRITICAL_MODULES = ("zmq", "zray.transport", "zray.objects.reference_table", "zray.store")


def _in_critical_section(frame, stop_code):
    """Whether the main thread is inside code that must not be interrupted half-way."""
    while frame is not None and frame.f_code is not stop_code:
        name = frame.f_globals.get("__name__", "")
        if name.startswith(_CRITICAL_MODULES):
            return True
        frame = frame.f_back
    return False


def _should_retry(retry_exceptions, exc):
    if not retry_exceptions or isinstance(exc, (TaskCancelled, KeyboardInterrupt)):
        return False
    if retry_exceptions is True:
        return isinstance(exc, Exception)
    try:
        types = pickle.loads(retry_exceptions)
    except Exception:
        return False
    return isinstance(exc, types)


def _safe_str(exc):
    """str(exc), or its repr, or its type's name: a user's exception may break both."""
    for fn in (str, repr):
        try:
            return fn(exc)
        except Exception:
            pass
    return f"<{type(exc).__name__} object: str() and repr() raised>"


def _describe_len(value):
    try:
        return f"of length {len(value)}"
    except TypeError:
        return "(not a sequence)"
