"""Ray's state API for zray (`ray.util.state`): list, get and summarize what runs in the mesh.

See api.py; any node answers for the whole mesh (zray/node/state_service.py).
"""
from .api import (ActorState, JobState, NodeState, ObjectState, PlacementGroupState,
                  RayStateApiException, StateRow, TaskState, WorkerState, get_actor, get_job,
                  get_log, get_node, get_objects, get_placement_group, get_task, get_worker,
                  list_actors, list_jobs, list_logs, list_nodes, list_objects,
                  list_placement_groups, list_tasks, list_workers, query, summarize_actors,
                  summarize_objects, summarize_tasks)

__all__ = ["ActorState", "JobState", "NodeState", "ObjectState", "PlacementGroupState",
           "RayStateApiException", "StateRow", "TaskState", "WorkerState", "get_actor", "get_job",
           "get_log", "get_node", "get_objects", "get_placement_group", "get_task", "get_worker",
           "list_actors", "list_jobs", "list_logs", "list_nodes", "list_objects",
           "list_placement_groups", "list_tasks", "list_workers", "query", "summarize_actors",
           "summarize_objects", "summarize_tasks"]
