"""get_runtime_context(): who and where the calling code is."""


class RuntimeContext:
    def __init__(self, core):
        self._core = core

    def get_job_id(self):
        return self._core.job_id

    @property
    def job_id(self):
        return self.get_job_id()

    def get_node_id(self):
        return self._core.node_info["node_id"]

    @property
    def node_id(self):
        return self.get_node_id()

    def get_worker_id(self):
        return self._core.worker_id

    @property
    def worker_id(self):
        return self.get_worker_id()

    def get_task_id(self):
        """Hex id of the running task; None in the driver."""
        if self._core.kind == "driver" or getattr(self._core, "running_task", None) is None:
            return None
        return self._core.running_task.task_id.hex()

    @property
    def task_id(self):
        return self.get_task_id()

    def get_task_name(self):
        return self._core.current_task_name

    def get_actor_id(self):
        """Hex id of the actor this code runs in; None outside actors."""
        host = getattr(self._core, "actor", None)
        return host.actor_id.hex() if host is not None else None

    @property
    def current_actor(self):
        host = getattr(self._core, "actor", None)
        if host is None:
            raise RuntimeError("current_actor is only available inside an actor")
        from .actor import ActorHandle
        return ActorHandle(host.actor_id, None, host.meta, counted=False)

    @property
    def namespace(self):
        return self._core.namespace

    def get_assigned_resources(self):
        from .scheduling.resources import from_units
        units = getattr(self._core, "assigned_resources", {}) or {}
        if any("_group_" in name for name in units):
            from .scheduling.placement_groups import original_resources
            units = original_resources(units)
        return from_units(units)

    def get_accelerator_ids(self):
        return {"GPU": [str(i) for i in getattr(self._core, "assigned_gpus", [])]}

    def get_runtime_env_string(self):
        return "{}"

    @property
    def gcs_address(self):
        return self._core.daemon

    def get(self):
        return {"job_id": self.get_job_id(), "node_id": self.get_node_id(),
                "worker_id": self.get_worker_id(), "task_id": self.get_task_id(),
                "namespace": self.namespace}
