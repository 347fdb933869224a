"""The owner's side of tasks, with I/O: submitting them, resolving their arguments, turning
their replies into values, and carrying out what the owner table (owner_table.py) decides.

A part of the runtime (core_worker.py). Collaborators, given to the constructor: the process
context (address, job, current task, daemon), the objects part, the reference table, the owner
table and `send`. The actor caller (actor_caller.py) is attached with `attach_actors`: an actor
method call is a task whose sending, completion and cancel go through it.
"""
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
from . import owner_table as ot
from .object_entries import VALUE_INLINE, VALUE_STORED
from .objects import INLINE_MAX

FUNCTION_BLOB_VERSION = 1   # (version, submitter's sys.path, cloudpickled function)


class TaskOwner:
    def __init__(self, context, objects, refs, table, send):
        self.context = context
        self.objects = objects
        self.refs = refs
        self.table = table
        self.send = send
        self.actors = None
        self.reporter = None          # core/reporter.py: tasks that wait for their arguments
        self._exported = set()
        self._dynamic = {}                 # task id -> the ref .remote() returned (dynamic)
        self._dynamic_lock = threading.Lock()

    def attach_actors(self, actors):
        self.actors = actors

    # -- functions ---------------------------------------------------------------------------------
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
            self.send(self.context.daemon, wire.EXPORT_FUNCTION, (function_id,), [blob])

    # -- submission ------------------------------------------------------------------------------
    def submit_task(self, function_id, name, args, kwargs, num_returns, resources, max_retries,
                    retry_exceptions, extra=None, actor=None, kind=TASK, held=()):
        """`held`: (object_id, owner) pairs the task keeps alive until it finishes besides its
        arguments (an actor call holds its actor's handle, so dropping the last handle lets
        the calls in flight finish)."""
        context = self.context
        task_id = context.task_ids.next()
        arg_descs, frames, holds, deps = [], [], list(held), []
        values = (*args, *kwargs.values())
        # Serialize every argument before storing any: an unpicklable one raises here, at the
        # call, without leaving stored copies of the others behind.
        serialized = [None if isinstance(v, ObjectRef) else _serialize_arg(v, i, len(args), kwargs)
                      for i, v in enumerate(values)]
        address = context.address
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
                object_id = put_object_id(task_id, context.next_put_index())
                self.objects.store_owned(object_id, sobj)
                holds.append((object_id, address))
                self.refs.hold([(object_id, address)])
                self.refs.release([])
                arg_descs.append((ARG_STORED, object_id, address, self.objects.node_id))
        if context.debug_step_into:      # `remote` in a debugger session (zray.util.debug)
            context.debug_step_into = False
            extra = dict(extra or {}, debugger_breakpoint=True)
        spec = TaskSpec(task_id, context.job_id, name, function_id, arg_descs, list(kwargs),
                        num_returns, resources, max_retries, retry_exceptions, address,
                        parent_task_id=context.current_task_id, extra=extra, kind=kind)
        task = ot.PendingTask(spec, frames, holds, context.current_task_id, actor)
        if actor is not None:
            self.actors.enqueue(task)    # its place in the caller's order, taken now
        return_ids = task.return_ids
        self.objects.add_pending(return_ids)
        self.table.submitted(task, len(deps))
        # Holds were taken per argument; the stored args above took theirs already.
        if holds:
            self.refs.hold([h for h in holds if not (h[1] == address and h[0][:12] == task_id)])
        refs = [ObjectRef(rid, address) for rid in return_ids]
        if deps:
            self._resolve_dependencies(task, deps)
            if self.reporter is not None and task.deps_left:
                self.reporter.args_waiting(task)     # the state API's PENDING_ARGS_AVAIL
        else:
            self._send_task(task)
        if task.actor is not None and not task.sent and not task.deps_left \
                and self.reporter is not None:
            self.reporter.args_waiting(task)   # a call queued here: the actor is not ready yet
        return task_id, refs

    def _resolve_dependencies(self, task, deps):
        objects = self.objects
        for index, ref in deps:
            entry = objects.entry_for(ref)

            def resolved(index=index, ref=ref, entry=entry):
                self._dependency_ready(task, index, ref, entry)
            objects.on_ready(entry, resolved)

    def _dependency_ready(self, task, index, ref, entry):
        if task.cancelled:
            return      # cancelled (or failed by another argument) while it waited
        spec = task.spec
        if entry.kind == VALUE_INLINE:
            if serialization.parse(entry.inline)[0] & serialization.FLAG_ERROR:
                # A failed argument fails the task with the same error, without running it.
                if self.table.dependency_failed(task, None) is not None:
                    self.complete_with_error_layout(task, entry.inline)
                return
            task.frames.append(entry.inline)
            spec.args[index] = (ARG_VALUE, len(task.frames) - 1)
        else:
            spec.args[index] = (ARG_STORED, ref._id, ref._owner, entry.node)
        if self.table.dependency_resolved(task) is not None:
            self._send_task(task)

    def _send_task(self, task):
        if task.actor is not None:
            self.actors.send_call(task)
            return
        task.sent = True
        self.send(self.context.daemon, wire.SUBMIT_TASK, (task.spec,), task.frames)

    # -- replies ---------------------------------------------------------------------------------
    def on_task_result(self, sender, payload, frames):
        task_id, attempt, results, retryable, *debugger_get = payload
        from_self = sender == self.context.address
        action = self.table.result(task_id, attempt, retryable)
        if action is None or isinstance(action, ot.Retry):
            if from_self:
                self._drop_pre_held(results)
            if action is None:
                return  # a superseded attempt (or a task already completed): not ours to keep
            self._send_task(action.task)
            return
        task = action.task
        if task.spec.streaming:
            self._finish_generator(task, results[0] if results else 0)
        else:
            if debugger_get:   # `get` in the callee's debugger: its consumers pause (zray.util.debug)
                self.context.debug_get_objects.update(task.return_ids)
                self.objects.debugger_marked.update(task.return_ids)    # borrowers too
            for rid, result in zip(task.return_ids, results):
                self._fill_result(rid, result, frames, from_self)
        self.finish(task)

    def _drop_pre_held(self, results):
        """Results this process sent itself and nobody will read: let go of the holds its
        executor took on the refs inside them."""
        mine = [oid for result in results if isinstance(result, tuple)
                for oid, owner in (result[2] or ()) if owner == self.context.address]
        if mine:
            self.refs.release(mine)

    def _fill_result(self, object_id, result, frames, from_self=False):
        kind, where, contained = result
        if kind == VALUE_INLINE:
            ok = self.objects.set_ready(object_id, kind, inline=frames[where].buffer, frame=frames[where])
        else:
            ok = self.objects.set_ready(object_id, kind, node=where)
        if contained:
            self.refs.set_contained(object_id, contained, registered_for_us=True,
                                    pre_held=from_self)
        if not ok and kind == VALUE_STORED:
            self.send(self.context.daemon, wire.OBJ_FREE, ([object_id], [where]))

    def on_task_failed(self, sender, payload, frames):
        task_id, attempt, reason, detail = payload
        self.carry_out(self.table.failed(task_id, attempt, reason, detail))

    def carry_out(self, action):
        """Do what the owner table decided about one task."""
        if action is None:
            return
        if isinstance(action, ot.Retry):
            self._send_task(action.task)
        elif isinstance(action, (ot.Fail, ot.CancelUnsent)):
            error = getattr(action, "error", None) or exceptions.TaskCancelledError(action.task.spec.task_id)
            self.complete_with_error_layout(action.task, serialization.serialize_error(error).to_bytes())
        elif isinstance(action, ot.CancelSent):
            self.send(self.context.daemon, wire.CANCEL_TASK,
                      (action.task.spec.task_id, action.force, action.recursive))
        elif isinstance(action, ot.CancelActorCall):
            self.actors.cancel_call(action.task, action.force)
        elif isinstance(action, ot.Release):
            if action.object_ids:
                self.refs.release(list(action.object_ids))
        else:
            raise TypeError(f"unknown owner-table action {action!r}")

    def complete_with_error_layout(self, task, layout):
        """The task's results (or its stream's next item) become this error; it is finished."""
        if task.spec.streaming:
            index = task.generator.next_index()
            if index is not None:   # the error becomes the stream's last item
                self._add_generator_item(task, index, (VALUE_INLINE, 0, None), [_Frame(layout)])
                self._finish_generator(task, index + 1)
        else:
            for rid in task.return_ids:
                self.objects.set_ready(rid, VALUE_INLINE, inline=layout)
        self.finish(task)

    def finish(self, task):
        if task.actor is not None:
            self.actors.call_done(task)
        self.carry_out(self.table.finished(task, self.objects.stored_elsewhere(task.return_ids)))

    # -- lineage ---------------------------------------------------------------------------------
    def drop_lineage(self, object_id):
        """An owned result was freed: its task's lineage goes once no result is referenced."""
        if self.table.lineage:
            self.carry_out(self.table.lineage_unreferenced(task_of(object_id),
                                                           self.objects.any_referenced))

    def rebuild_lost(self, node_id, only_task=None):
        """Results stored on a dead node: run their tasks again where lineage allows (True if
        some task runs again); the others fail with ObjectLostError when read."""
        lost = self.objects.lost_on(node_id)
        if only_task is not None:
            lost &= {only_task}
        actions = self.table.rebuild(lost)
        for action in actions:
            self.objects.reset_lost(action.task.return_ids, node_id)
        for action in actions:
            self.carry_out(action)
        return bool(actions)

    # -- streaming generators ----------------------------------------------------------------------
    def on_generator_item(self, sender, payload, frames):
        task_id, attempt, index, result = payload
        from_self = sender == self.context.address
        task = self.table.get(task_id)
        if task is None or task.generator is None or \
                not self._add_generator_item(task, index, result, frames, from_self):
            if from_self:
                self._drop_pre_held([result])

    def _add_generator_item(self, task, index, result, frames, from_self=False):
        if not self.table.generator_item(task.spec.task_id, index):
            return False  # a retried attempt reports items we already have
        gen = task.generator
        object_id = return_object_id(task.spec.task_id, index)
        self.objects.add_pending([object_id])
        self.refs.hold([(object_id, self.context.address)])
        self._fill_result(object_id, result, frames, from_self)
        with gen.cond:
            gen.items[index] = object_id
            gen.cond.notify_all()
        return True

    def _finish_generator(self, task, count):
        gen = task.generator
        with gen.cond:
            gen.count = count
            gen.cond.notify_all()
        with self._dynamic_lock:
            wrapper = self._dynamic.pop(task.spec.task_id, None)
        if wrapper is not None:
            self._fill_dynamic(task.spec.task_id, wrapper, gen, count)

    # -- num_returns="dynamic": a streaming task whose items the owner wraps in one value -----
    def dynamic_ref(self, task_id):
        """The ref .remote() returns for a dynamic generator task: filled when it ends."""
        wrapper = put_object_id(task_id, 0)     # a submitted task's id has no puts of its own
        self.objects.add_pending([wrapper])
        ref = ObjectRef(wrapper, self.context.address)
        with self._dynamic_lock:
            done = self.table.generators.get(task_id)
            if done is not None and done.count is not None:
                self._fill_dynamic(task_id, wrapper, done, done.count)
            else:
                self._dynamic[task_id] = wrapper
        return ref

    def _fill_dynamic(self, task_id, wrapper, gen, count):
        from ..objects.generator import DynamicObjectRefGenerator
        with gen.cond:
            ids = [gen.items[i] for i in range(count) if i in gen.items]
        value = DynamicObjectRefGenerator([ObjectRef(oid, self.context.address) for oid in ids])
        sobj = serialization.serialize(value)
        contained = [(r._id, r._owner) for r in sobj.contained_refs]
        # The wrapper's value keeps the items alive (holds taken before the stream's go).
        self.refs.set_contained(wrapper, contained, registered_for_us=False)
        self.objects.set_ready(wrapper, VALUE_INLINE, inline=bytes(sobj.to_bytes()))
        self.generator_done(task_id)

    def generator_next(self, task_id, index, timeout=None):
        """The ref of item `index` of a streaming task, or None when it has fewer items."""
        gen = self.table.generators.get(task_id)
        if gen is None:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        inbox = self.objects.inbox
        waiting = index not in gen.items and gen.count is None
        if waiting:
            # A task waiting for another task's items lends its CPU, as in get(): with one
            # CPU the producer could not run otherwise.
            self.objects.blocked(True)
        try:
            if waiting:
                # Read the inbox here if nobody else does: the item wakes no other thread.
                inbox.read_until(lambda: index in gen.items or gen.count is not None, deadline)
            with gen.cond:
                while index not in gen.items:
                    if gen.count is not None and index >= gen.count:
                        return None
                    remaining = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                    if remaining <= 0:
                        raise exceptions.GetTimeoutError(f"no generator item within {timeout}s")
                    gen.cond.wait(remaining)
                    if inbox.dead_reason:
                        raise exceptions.LocalRayletDiedError(inbox.dead_reason)
                object_id = gen.items.pop(index)
        finally:
            if waiting:
                self.objects.blocked(False)
        ref = ObjectRef(object_id, self.context.address)
        self.refs.release([object_id])
        return ref

    def generator_done(self, task_id):
        leftover = self.table.generator_done(task_id)
        if leftover:
            self.refs.release(list(leftover))

    # -- cancel ----------------------------------------------------------------------------------
    def cancel(self, ref, force, recursive):
        if ref._owner != self.context.address:
            # A borrowed ref: its owner keeps the task's state and retries, so it decides.
            self.send(ref._owner, wire.CANCEL_REQUEST, (task_of(ref._id), force, recursive))
            return
        self.carry_out(self.table.cancel(task_of(ref._id), force, recursive))

    def on_cancel_request(self, sender, payload, frames):
        task_id, force, recursive = payload
        self.carry_out(self.table.cancel(bytes(task_id), bool(force), bool(recursive)))

    def cancel_task_id(self, task_id, force, recursive):
        """Cancel a task of this owner by id (a streaming task's generator); no-op if done."""
        self.carry_out(self.table.cancel(task_id, force, recursive))

    def cancel_children(self, parent_task_id, force):
        for child in self.table.children_of(parent_task_id):
            self.carry_out(self.table.cancel_task(child, force, True))


def load_function(blob):
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
