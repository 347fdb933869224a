"""get_runtime_context(): who and where the calling code is (read through the runtime facade,
zray/core/runtime.py)."""


class RuntimeContext:
    def __init__(self, rt):
        self._rt = rt

    def get_job_id(self):
        return self._rt.job_id

    @property
    def job_id(self):
        return self.get_job_id()

    def get_node_id(self):
        return self._rt.node_id

    @property
    def node_id(self):
        return self.get_node_id()

    def get_worker_id(self):
        return self._rt.worker_id

    @property
    def worker_id(self):
        return self.get_worker_id()

    def get_task_id(self):
        """Hex id of the running task; None in the driver."""
        task = self._rt.current_task()
        return None if task is None else task.task_id.hex()

    @property
    def task_id(self):
        return self.get_task_id()

    def get_task_name(self):
        return self._rt.current_task_name

    def get_actor_id(self):
        """Hex id of the actor this code runs in; None outside actors."""
        actor = self._rt.current_actor()
        return actor.actor_id.hex() if actor is not None else None

    @property
    def current_actor(self):
        actor = self._rt.current_actor()
        if actor is None:
            raise RuntimeError("current_actor is only available inside an actor")
        from .actor import ActorHandle
        return ActorHandle(actor.actor_id, None, actor.meta, counted=False)

    @property
    def namespace(self):
        return self._rt.namespace

    def get_assigned_resources(self):
        from .scheduling.resources import from_units
        units = self._rt.assigned_resources()
        if any("_group_" in name for name in units):
            from .scheduling.placement_groups import original_resources
            units = original_resources(units)
        return from_units(units)

    def get_accelerator_ids(self):
        return {"GPU": [str(i) for i in self._rt.assigned_gpus()]}

    def get_runtime_env_string(self):
        return "{}"

    @property
    def gcs_address(self):
        return self._rt.daemon

    def get(self):
        """Ray's keys: job_id, node_id and namespace; inside a task or actor also task_id,
        and inside an actor actor_id."""
        context = {"job_id": self.get_job_id(), "node_id": self.get_node_id(),
                   "namespace": self.namespace}
        if self._rt.is_worker:
            task_id = self.get_task_id()
            if task_id is not None:
                context["task_id"] = task_id
            actor_id = self.get_actor_id()
            if actor_id is not None:
                context["actor_id"] = actor_id
        return context
