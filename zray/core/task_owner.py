"""The owner's side of tasks: submitting them, resolving their arguments, turning their results
into values, retrying them, keeping their lineage, streaming generators, and cancelling."""
import os
import pickle
import sys
import threading
import time

from .. import exceptions
from ..objects import serialization
from ..objects.ids import put_object_id, return_object_id, task_of
from ..objects.object_ref import ObjectRef
from ..scheduling.task_spec import ARG_STORED, ARG_VALUE, TASK, TaskSpec
from ..transport import wire
from .object_entries import PENDING, READY, VALUE_INLINE, VALUE_STORED, ObjectEntry

INLINE_MAX = 100 * 1024       # values up to this size travel inside messages
FUNCTION_BLOB_VERSION = 1   # (version, submitter's sys.path, cloudpickled function)


class _PendingTask:
    __slots__ = ("spec", "frames", "holds", "deps_left", "retries_left", "cancelled", "sent",
                 "generator", "parent", "actor", "ready", "return_ids")

    def __init__(self, spec, frames, holds, retries_left, parent, actor=None):
        self.spec = spec
        self.frames = frames
        self.holds = holds
        self.deps_left = 0
        self.retries_left = retries_left
        self.cancelled = False
        self.sent = False
        self.generator = None
        self.parent = parent
        self.actor = actor          # the callee's _ActorState, for an actor method call
        self.ready = False          # an actor call whose arguments are all resolved
        self.return_ids = spec.return_ids()


class _GeneratorState:
    __slots__ = ("items", "count", "cond", "seen")

    def __init__(self):
        self.items = {}       # index -> object id, held until the user takes a ref
        self.count = None     # total, once the generator finished
        self.seen = set()     # indices ever received (a retried attempt repeats them)
        self.cond = threading.Condition()


class TaskOwner:
    """Mixed into CoreWorker."""

    # -- tasks: submission -----------------------------------------------------------------------
    def export_function(self, function_id, pickled):
        """Make a pickled function (or class) fetchable by workers under function_id.

        It travels with this process's sys.path: cloudpickle pickles functions of importable
        modules by reference, so workers must be able to import the modules the submitter can
        (a script's own folder, a test directory), as Ray's workers do.
        """
        if function_id not in self._exported:
            self._exported.add(function_id)
            paths = [os.path.abspath(p) if p == "" or not os.path.isabs(p) else p
                     for p in sys.path if isinstance(p, str)]
            blob = pickle.dumps((FUNCTION_BLOB_VERSION, paths, bytes(pickled)), protocol=5)
            self.transport.send(self.daemon, wire.EXPORT_FUNCTION, (function_id,), [blob])

    def load_function(self, blob):
        """The inverse of export_function's packing, run where the function is executed."""
        version, paths, pickled = pickle.loads(blob)
        if version != FUNCTION_BLOB_VERSION:
            raise exceptions.RaySystemError(f"unknown exported-function format {version!r}")
        known = set(sys.path)
        for p in paths:
            if p not in known:
                sys.path.append(p)    # after our own entries: never shadow what we import
                known.add(p)
        return pickle.loads(pickled)

    def submit_task(self, function_id, name, args, kwargs, num_returns, resources, max_retries,
                    retry_exceptions, extra=None, actor=None, kind=TASK):
        task_id = self.task_ids.next()
        arg_descs, frames, holds, deps = [], [], [], []
        values = (*args, *kwargs.values())
        # Serialize every argument before storing any: an unpicklable one raises here, at the
        # call, without leaving stored copies of the others behind.
        serialized = [None if isinstance(v, ObjectRef) else _serialize_arg(v, i, len(args), kwargs)
                      for i, v in enumerate(values)]
        for value, sobj in zip(values, serialized):
            if isinstance(value, ObjectRef):
                deps.append((len(arg_descs), value))
                arg_descs.append(None)
                holds.append((value._id, value._owner))
                continue
            holds.extend((r._id, r._owner) for r in sobj.contained_refs)
            if sobj.total_size <= INLINE_MAX:
                frames.append(sobj.to_bytes())
                arg_descs.append((ARG_VALUE, len(frames) - 1))
            else:
                # A large argument goes to the store once, owned here and held by the task.
                object_id = put_object_id(task_id, next(self._put_counter))
                self._store_owned(object_id, sobj)
                holds.append((object_id, self.address))
                self.refs.hold([(object_id, self.address)])
                self.refs.release([])
                arg_descs.append((ARG_STORED, object_id, self.address, self.node_info["node_id"]))
        spec = TaskSpec(task_id, self.job_id, name, function_id, arg_descs, list(kwargs),
                        num_returns, resources, max_retries, retry_exceptions, self.address,
                        parent_task_id=self.current_task_id, extra=extra, kind=kind)
        pending = _PendingTask(spec, frames, holds, max_retries, self.current_task_id, actor)
        if actor is not None:
            with actor.lock:
                actor.queue.append(pending)    # its place in the caller's order, taken now
        return_ids = pending.return_ids
        with self.lock:
            for rid in return_ids:
                self.entries[rid] = ObjectEntry(owned=True)
            self.pending_tasks[task_id] = pending
            if spec.streaming:
                pending.generator = self.generators[task_id] = _GeneratorState()
        for rid in return_ids:
            self.refs.add_owned(rid)
        # Holds were taken per argument; the stored args above took theirs already.
        if holds:
            self.refs.hold([h for h in holds if not (h[1] == self.address and h[0][:12] == task_id)])
        refs = [ObjectRef(rid, self.address) for rid in return_ids]
        if deps:
            self._resolve_dependencies(pending, deps)
        else:
            self._send_task(pending)
        return task_id, refs

    def _resolve_dependencies(self, pending, deps):
        pending.deps_left = len(deps)
        for index, ref in deps:
            entry = self._entry_for(ref)

            def resolved(index=index, ref=ref, entry=entry):
                self._dependency_ready(pending, index, ref, entry)
            self._on_ready(entry, resolved)

    def _dependency_ready(self, pending, index, ref, entry):
        spec = pending.spec
        if pending.cancelled:
            return      # cancelled (or failed by another argument) while it waited
        if entry.kind == VALUE_INLINE:
            if serialization.parse(entry.inline)[0] & serialization.FLAG_ERROR:
                # A failed argument fails the task with the same error, without running it.
                if not pending.cancelled:
                    pending.cancelled = True
                    self._complete_with_error_layout(pending, entry.inline)
                return
            pending.frames.append(entry.inline)
            spec.args[index] = (ARG_VALUE, len(pending.frames) - 1)
        else:
            spec.args[index] = (ARG_STORED, ref._id, ref._owner, entry.node)
        with self.lock:
            pending.deps_left -= 1
            ready = pending.deps_left == 0 and not pending.cancelled
            if ready and pending.actor is None:
                pending.sent = True     # under the lock: cancel_task() sees one or the other
        if ready:
            self._send_task(pending)

    def _send_task(self, pending):
        if pending.actor is not None:
            self._send_actor_call(pending)
            return
        pending.sent = True
        self.transport.send(self.daemon, wire.SUBMIT_TASK, (pending.spec,), pending.frames)

    # -- tasks: results ----------------------------------------------------------------------------
    def _on_task_result(self, sender, payload, frames):
        task_id, attempt, results, retryable = payload
        pending = self.pending_tasks.get(task_id)
        if pending is None or pending.spec.attempt != attempt:
            return      # a superseded attempt (or a task already completed): not ours to keep
        if retryable and not pending.cancelled and pending.retries_left != 0:
            self._retry(pending)
            return
        spec = pending.spec
        if spec.streaming:
            self._finish_generator(pending, results[0] if results else 0)
        else:
            for rid, result in zip(pending.return_ids, results):
                self._fill_result(rid, result, frames)
        self._finish(pending)

    def _fill_result(self, object_id, result, frames):
        kind, where, contained = result
        if kind == VALUE_INLINE:
            ok = self._set_ready(object_id, kind, inline=frames[where].buffer, frame=frames[where])
        else:
            ok = self._set_ready(object_id, kind, node=where)
        if contained:
            self.refs.set_contained(object_id, contained, registered_for_us=True)
        if not ok and kind == VALUE_STORED:
            self._safe_send(self.daemon, wire.OBJ_FREE, ([object_id], [where]))

    def _on_task_failed(self, sender, payload, frames):
        task_id, attempt, reason, detail = payload
        pending = self.pending_tasks.get(task_id)
        if pending is None or pending.spec.attempt != attempt:
            return
        if reason == "cancelled" or pending.cancelled:
            err = exceptions.TaskCancelledError(task_id)
        elif reason == "unschedulable":
            err = exceptions.TaskUnschedulableError(f"Task {pending.spec.name} cannot be scheduled: {detail}")
        elif pending.retries_left != 0:
            self._retry(pending)
            return
        elif reason == "node_died":
            err = exceptions.NodeDiedError(
                f"Task {pending.spec.name} was lost with its node (it was retried "
                f"{pending.spec.attempt} times): {detail}")
        else:
            err = exceptions.WorkerCrashedError(
                f"The worker running task {pending.spec.name} died unexpectedly "
                f"(it was retried {pending.spec.attempt} times).\n{detail or ''}".rstrip())
        self._complete_with_error_layout(pending, serialization.serialize_error(err).to_bytes())

    def _retry(self, pending):
        if pending.retries_left > 0:
            pending.retries_left -= 1
        pending.spec.attempt += 1
        self._send_task(pending)

    def _complete_with_error_layout(self, pending, layout):
        spec = pending.spec
        if spec.streaming:
            gen = pending.generator
            with gen.cond:
                finished = gen.count is not None
                index = max(gen.seen) + 1 if gen.seen else 0
            if not finished:   # the error becomes the stream's last item
                self._add_generator_item(pending, index, (VALUE_INLINE, 0, None), [_Frame(layout)])
                self._finish_generator(pending, index + 1)
        else:
            for rid in pending.return_ids:
                self._set_ready(rid, VALUE_INLINE, inline=layout)
        self._finish(pending)

    def _finish(self, pending):
        if pending.actor is not None:
            self._actor_call_done(pending)
        with self.lock:
            self.pending_tasks.pop(pending.spec.task_id, None)
            keep = self._keeps_lineage(pending)
            if keep:
                self.lineage[pending.spec.task_id] = pending
        if keep:
            return      # its arguments stay held: the task may have to run again
        pending.frames = None
        if pending.holds:
            self.refs.release([oid for oid, _ in pending.holds])

    def _keeps_lineage(self, pending):
        """A retryable task whose result lives in another node's store is kept (with its
        arguments) while the result is referenced, to rebuild the result if that node dies."""
        spec = pending.spec
        if pending.actor is not None or spec.streaming or pending.retries_left == 0 or pending.cancelled:
            return False
        here = self.node_info["node_id"] if self.node_info else None
        for rid in spec.return_ids():
            entry = self.entries.get(rid)
            if entry is not None and entry.kind == VALUE_STORED and entry.node not in (None, here):
                return True
        return False

    def _drop_lineage(self, object_id):
        task_id = task_of(object_id)
        with self.lock:
            pending = self.lineage.get(task_id)
            if pending is None or any(rid in self.entries for rid in pending.spec.return_ids()):
                return
            del self.lineage[task_id]
        pending.frames = None
        self.refs.release([oid for oid, _ in pending.holds])

    def _rebuild_lost(self, node_id, only_task=None):
        """Results stored on a dead node: run their tasks again where lineage allows (True if
        some task runs again); the others fail with ObjectLostError when read."""
        with self.lock:
            lost = {task_of(oid) for oid, e in self.entries.items()
                    if e.owned and e.state == READY and e.kind == VALUE_STORED and e.node == node_id}
            if only_task is not None:
                lost &= {only_task}
            rerun = []
            for task_id in lost:
                pending = self.lineage.pop(task_id, None)
                if pending is None:
                    continue
                for rid in pending.spec.return_ids():
                    entry = self.entries.get(rid)
                    if entry is not None and entry.node == node_id:
                        entry.state, entry.kind, entry.node = PENDING, None, None
                self.pending_tasks[task_id] = pending
                rerun.append(pending)
        for pending in rerun:
            self._retry(pending)
        return bool(rerun)

    # -- streaming generators ----------------------------------------------------------------------
    def _on_generator_item(self, sender, payload, frames):
        task_id, attempt, index, result = payload
        pending = self.pending_tasks.get(task_id)
        if pending is None or pending.generator is None:
            return
        self._add_generator_item(pending, index, result, frames)

    def _add_generator_item(self, pending, index, result, frames):
        gen = pending.generator
        object_id = return_object_id(pending.spec.task_id, index)
        with gen.cond:
            if index in gen.seen or gen.count is not None:
                return    # a retried attempt reports items we already have
            gen.seen.add(index)
        with self.lock:
            self.entries[object_id] = ObjectEntry(owned=True)
        self.refs.add_owned(object_id)
        self.refs.hold([(object_id, self.address)])
        self._fill_result(object_id, result, frames)
        with gen.cond:
            gen.items[index] = object_id
            gen.cond.notify_all()

    def _finish_generator(self, pending, count):
        gen = pending.generator
        with gen.cond:
            gen.count = count
            gen.cond.notify_all()

    def generator_next(self, task_id, index, timeout=None):
        """The ref of item `index` of a streaming task, or None when it has fewer items."""
        gen = self.generators.get(task_id)
        if gen is None:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        if index not in gen.items and gen.count is None:
            # Read the inbox here if nobody else does: the item wakes no other thread.
            self._read_until(lambda: index in gen.items or gen.count is not None, deadline)
        with gen.cond:
            while index not in gen.items:
                if gen.count is not None and index >= gen.count:
                    return None
                remaining = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if remaining <= 0:
                    raise exceptions.GetTimeoutError(f"no generator item within {timeout}s")
                gen.cond.wait(remaining)
                if self.dead_reason:
                    raise exceptions.LocalRayletDiedError(self.dead_reason)
            object_id = gen.items.pop(index)
        ref = ObjectRef(object_id, self.address)
        self.refs.release([object_id])
        return ref

    def generator_done(self, task_id):
        gen = self.generators.pop(task_id, None)
        if gen is not None:
            with gen.cond:
                leftover, gen.items = list(gen.items.values()), {}
            self.refs.release(leftover)

    # -- cancel ------------------------------------------------------------------------------------
    def cancel(self, ref, force, recursive):
        task_id = task_of(ref._id)
        if ref._owner != self.address:
            raise ValueError("Only the owner of a task (the process that submitted it) can cancel it")
        pending = self.pending_tasks.get(task_id)
        if pending is None:
            return
        self.cancel_task(pending, force, recursive)

    def cancel_task(self, pending, force, recursive):
        if pending.actor is not None:
            self._cancel_actor_call(pending, force)
            return
        with self.lock:
            already = pending.cancelled
            pending.cancelled = True
            sent = pending.sent
        if not sent:
            if already:
                return
            err = exceptions.TaskCancelledError(pending.spec.task_id)
            self._complete_with_error_layout(pending, serialization.serialize_error(err).to_bytes())
            return
        self.transport.send(self.daemon, wire.CANCEL_TASK, (pending.spec.task_id, force, recursive))

    def cancel_children(self, parent_task_id, force):
        with self.lock:
            children = [p for p in self.pending_tasks.values() if p.parent == parent_task_id]
        for child in children:
            self.cancel_task(child, force, True)


def _serialize_arg(value, index, n_positional, kwargs):
    try:
        return serialization.serialize(value)
    except exceptions.ObjectSerializationError as exc:
        which = (f"argument {index}" if index < n_positional
                 else f"keyword argument {list(kwargs)[index - n_positional]!r}")
        raise exceptions.ObjectSerializationError(f"Could not pass {which} to the task: {exc}") from None


class _Frame:
    """Stands in for a received ZeroMQ frame when a result is made locally."""

    __slots__ = ("buffer",)

    def __init__(self, data):
        self.buffer = memoryview(data)
