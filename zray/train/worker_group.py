"""The worker group: one actor per rank in a placement group, ranks contiguous per node.

`assign_ranks` is the pure part (tested in tests/test_train_unit.py); `WorkerGroup` places the
group with zray's public API (placement_group, actors, get, kill).
"""
import logging
from dataclasses import dataclass
from typing import List

logger = logging.getLogger("zray.train")


@dataclass(frozen=True)
class RankInfo:
    world_rank: int
    local_rank: int
    local_world_size: int
    node_rank: int


def assign_ranks(infos, first_node_id=None):
    """Ranks for workers described by `infos` (dicts with node_id and gpu_ids), in the
    workers' order. Nodes are numbered in order of their first worker, `first_node_id` (the
    driver's) first when it holds workers; inside a node, workers are ordered by their first
    GPU id, then by their position, so local rank i drives the node's i-th GPU."""
    nodes: List[str] = []
    for info in infos:
        if info["node_id"] not in nodes:
            nodes.append(info["node_id"])
    if first_node_id in nodes:
        nodes.remove(first_node_id)
        nodes.insert(0, first_node_id)

    def gpu_key(i):
        ids = infos[i].get("gpu_ids") or []
        try:
            return (0, int(ids[0]), i) if ids else (1, 0, i)
        except ValueError:
            return (0, 0, i)

    out = [None] * len(infos)
    rank = 0
    for node_rank, node in enumerate(nodes):
        members = sorted((i for i, info in enumerate(infos) if info["node_id"] == node),
                         key=gpu_key)
        for local_rank, i in enumerate(members):
            out[i] = RankInfo(rank, local_rank, len(members), node_rank)
            rank += 1
    return out


def node_visible_gpus(infos, node_id):
    """The union of the GPU ids given to the workers on `node_id`, in order."""
    ids = set()
    for info in infos:
        if info["node_id"] == node_id:
            ids.update(info.get("gpu_ids") or [])
    return sorted(ids, key=lambda x: (len(str(x)), str(x)))


class WorkerGroup:
    """Creates, and tears down, the placement group and the actors of one attempt."""

    def __init__(self, scaling_config, tunables):
        self.scaling = scaling_config
        self.tunables = tunables
        self.pg = None
        self.actors = []
        self.infos = []
        self.ranks = []           # RankInfo per actor, in actor order

    def start(self, mark=lambda phase: None):
        import zray
        from zray.util.placement_group import placement_group
        from .worker import TrainWorker

        n = self.scaling.num_workers
        per = self.scaling._resources_per_worker_not_none
        self.pg = placement_group([dict(per) or {"CPU": 0.001}] * n,
                                  strategy=self.scaling.placement_strategy)
        if not self.pg.wait(self.tunables.start_timeout_s):
            raise TimeoutError(
                f"zray.train: the placement group for {n} workers of {per} was not placed "
                f"within {self.tunables.start_timeout_s:.0f} s (cluster resources: "
                f"{zray.cluster_resources()})")
        mark("group_placed")
        custom = {k: v for k, v in per.items() if k not in ("CPU", "GPU")}
        cls = zray.remote(TrainWorker)
        self.actors = [
            cls.options(num_cpus=per.get("CPU", 0), num_gpus=per.get("GPU", 0),
                        resources=custom or None, placement_group=self.pg,
                        placement_group_bundle_index=i, max_concurrency=4,
                        max_restarts=0).remote()
            for i in range(n)]
        self.infos = zray.get([a.info.remote() for a in self.actors],
                              timeout=self.tunables.start_timeout_s)
        mark("actors_ready")
        driver_node = zray.get_runtime_context().get_node_id()
        self.ranks = assign_ranks(self.infos, driver_node)
        return self

    def actor_of_rank(self, rank):
        return self.actors[[r.world_rank for r in self.ranks].index(rank)]

    def master_address(self):
        """MASTER_ADDR and MASTER_PORT for torch.distributed: rank 0's node (127.0.0.1 when
        the whole group is on one node) and a port free there."""
        import zray
        rank0 = [r.world_rank for r in self.ranks].index(0)
        port = zray.get(self.actors[rank0].free_port.remote(),
                        timeout=self.tunables.start_timeout_s)
        if len({i["node_id"] for i in self.infos}) == 1:
            return "127.0.0.1", port
        node_id = self.infos[rank0]["node_id"]
        addr = None
        for node in zray.nodes():
            if node.get("NodeID") == node_id:
                addr = node.get("NodeManagerAddress")
        return addr or self.infos[rank0]["ip"], port

    def shutdown(self):
        import zray
        from zray.util.placement_group import remove_placement_group
        for actor in self.actors:
            try:
                zray.kill(actor)
            except Exception as exc:        # already gone: nothing to do
                logger.debug("kill of a train worker failed: %r", exc)
        if self.pg is not None:
            try:
                remove_placement_group(self.pg)
            except Exception as exc:
                logger.debug("removing the train placement group failed: %r", exc)
        self.actors, self.pg = [], None
