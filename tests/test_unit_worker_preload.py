"""The decision part of WORKER_PRELOAD (zray/node/preload_service.py): which modules a node's
zygote imports, what it forwards, what it refuses, with no process."""
import pytest

from zray.node.preload_service import (MAX_NAMES_PER_REQUEST, PreloadService, WorkerPreloads)
from zray.transport import wire


def test_new_names_are_imported_once_and_cluster_requests_forwarded():
    p = WorkerPreloads()
    d = p.request(["torch", "torch.distributed", "torch"], "cluster")
    assert d.import_now == ("torch", "torch.distributed")
    assert d.forward == ("torch", "torch.distributed")
    assert d.refused == ()
    again = p.request(["torch", "pyarrow"], "cluster")
    assert again.import_now == ("pyarrow",)
    # forwarded again anyway: a member may have joined or restarted since
    assert again.forward == ("torch", "pyarrow")
    assert p.request(["numpy"], "node").forward == ()
    assert p.for_new_member() == ("torch", "torch.distributed", "pyarrow", "numpy")


@pytest.mark.parametrize("bad", [1, None, "", "a b", "os;rm", ".x", "x.", "1abc", "a" * 201,
                                 "../etc"])
def test_bad_names_are_refused_and_the_rest_kept(bad):
    p = WorkerPreloads()
    d = p.request([bad, "colorsys"], "cluster")
    assert d.import_now == ("colorsys",)
    assert len(d.refused) == 1 and d.refused[0][1]
    assert p.for_new_member() == ("colorsys",)


@pytest.mark.parametrize("names, scope", [("torch", "cluster"), ({"torch": 1}, "cluster"),
                                           (["torch"], "everywhere"), (["torch"], None),
                                           (["m"] * (MAX_NAMES_PER_REQUEST + 1), "node")])
def test_malformed_requests_raise(names, scope):
    with pytest.raises(ValueError):
        WorkerPreloads().request(names, scope)


def test_a_node_preloads_a_bounded_number_of_modules():
    p = WorkerPreloads(max_names=3)
    p.request(["a", "b"], "node")
    d = p.request(["c", "d", "a"], "node")
    assert d.import_now == ("c",)
    assert [name for name, _ in d.refused] == ["d"]
    assert p.for_new_member() == ("a", "b", "c")


class _Member:
    def __init__(self, name, address, live=True):
        self.name, self.address, self.live = name, address, live


class _Membership:
    def __init__(self, members):
        self.members = members

    def peers(self):
        return self.members

    def is_live(self, node_id):
        return any(m.name == node_id and m.live for m in self.members)


class _Ctx:
    node_id = "me"

    def __init__(self, members):
        self.membership = _Membership(members)
        self.sent = []

    def send(self, address, msg_type, payload=(), frames=()):
        self.sent.append((address, msg_type, payload))
        return True


def test_the_service_imports_forwards_to_live_peers_and_tells_joiners():
    imported = []
    ctx = _Ctx([_Member("b", "tcp://b"), _Member("c", "tcp://c", live=False)])
    service = PreloadService(ctx, imported.append)
    handler = service.handlers()[wire.WORKER_PRELOAD]
    handler("ipc://driver", (["torch", "bad name"], "cluster"), [])
    assert imported == [("torch",)]
    assert ctx.sent == [("tcp://b", wire.WORKER_PRELOAD, (["torch"], "node"))]
    handler("tcp://b", (["torch"], "node"), [])          # known, from a peer: nothing to do
    assert imported == [("torch",)] and len(ctx.sent) == 1
    for payload in [(), ("torch",), (["x"], "cluster", 3), 7, None]:
        handler("ipc://fuzz", payload, [])               # dropped with a warning
    assert imported == [("torch",)]
    service.member_joined(_Member("d", "tcp://d"))
    assert ctx.sent[-1] == ("tcp://d", wire.WORKER_PRELOAD, (["torch"], "node"))


def test_idle_prestarted_workers_give_way_to_fresh_ones_after_a_preload():
    from zray.scheduling.local_scheduler import KillWorker, LocalScheduler, StartWorker
    s = LocalScheduler({"CPU": 40_000})
    s.handle_prestart("j", 2)
    s.handle_worker_started("w1", "j", "ipc://w1", 11)
    s.handle_worker_started("w2", "j", "ipc://w2", 12)
    s.workers["w2"].last_task = object()     # it ran a task: its reply may be in flight; stays
    actions = s.handle_modules_preloaded()
    assert [type(a) for a in actions] == [KillWorker, StartWorker]
    assert actions[0].worker.worker_id == "w1" and actions[1] == StartWorker("j", "")
    assert s.workers["w1"].state == "retiring" and list(s.idle[("j", "")]) == [s.workers["w2"]]
    assert s.handle_worker_died("w1") == []
    assert s.handle_modules_preloaded() == []         # nothing left to replace


def test_a_worker_forked_before_the_preload_is_replaced_when_it_registers():
    from zray.scheduling.local_scheduler import KillWorker, LocalScheduler, StartWorker
    s = LocalScheduler({"CPU": 40_000})
    s.handle_prestart("j", 1)
    actions = s.handle_worker_started("w1", "j", "ipc://w1", 11, outdated=True)
    assert [type(a) for a in actions] == [KillWorker, StartWorker]
    assert s.workers["w1"].state == "retiring" and not s.idle[("j", "")]
    assert s.starting[("j", "")] == 1          # its replacement is on its way
    s.handle_worker_died("w1")
    assert s.handle_worker_started("w2", "j", "ipc://w2", 12) == []
    assert list(s.idle[("j", "")]) == [s.workers["w2"]] and s.starting[("j", "")] == 0


def test_a_node_started_with_modules_takes_a_later_request_for_them_as_no_news():
    from zray.node.bootstrap import NodeSpec
    from zray.node.preload_service import start_names
    assert start_names("torch, torch._dynamo,,bad name,torch") == ("torch", "torch._dynamo")
    assert start_names("") == ()
    spec = NodeSpec(session_dir="/tmp/s", num_cpus=1, object_store_memory=1 << 20,
                    preload=("torch", "torch._dynamo"))
    cmd = spec.command()
    assert cmd[cmd.index("--preload") + 1] == "torch,torch._dynamo"
    assert "--preload" not in NodeSpec(session_dir="/tmp/s", num_cpus=1,
                                       object_store_memory=1 << 20).command()
    imported = []
    service = PreloadService(_Ctx([]), imported.append)
    service.started_with(("torch", "torch._dynamo"))
    service.started_with("colorsys")                   # the flag's text, unparsed
    service.handlers()[wire.WORKER_PRELOAD]("ipc://driver", (["torch", "colorsys"], "cluster"), [])
    assert imported == []            # no import, so no replacement of the idle workers either
    service.handlers()[wire.WORKER_PRELOAD]("ipc://driver", (["torch", "json"], "cluster"), [])
    assert imported == [("json",)]


def test_names_asked_for_before_init_wait_for_the_next_init(monkeypatch):
    from zray.util import worker_preload
    monkeypatch.setattr(worker_preload, "_pending", [])
    monkeypatch.setattr("zray.objects.object_ref.get_runtime", lambda: None)
    worker_preload.preload_worker_modules(["colorsys", "json"])
    worker_preload.preload_worker_modules("colorsys")
    assert worker_preload.take_pending() == ("colorsys", "json")
    assert worker_preload.take_pending() == ()       # one init() takes them
