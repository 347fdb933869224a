"""Group formation through the cluster key-value store (zray/util/collective/rendezvous.py):
the join records, their cleanup, and the errors of a bad formation. Joins run in driver
threads here (real KV requests to the node); the actor paths are in test_collective_cpu.py."""
import os
import pickle
import subprocess
import sys
import threading

import pytest

import zray
import zray.util.collective as col
from zray.core import runtime
from zray.util.collective import rendezvous as R
from zray.util.collective.backends.base import MemberInfo
from zray.util.collective.backends.liveness import ProcessId


@pytest.fixture(scope="module")
def cluster():
    if zray.is_initialized():
        zray.shutdown()
    zray.init(num_cpus=1)
    yield
    zray.shutdown()


def _info(rank, process=None):
    node = zray.get_runtime_context().get_node_id()
    return MemberInfo(rank, node, process or ProcessId.current(), f"tcp://x:{rank}")


def _kv_keys():
    return runtime.current().kv.keys("", namespace=R.NAMESPACE)


def _join_all(name, world_size, infos, timeout_s=20):
    out, threads = {}, []
    for info in infos:
        def run(info=info):
            try:
                out[info.rank] = R.KvRendezvous().join(name, world_size, info.rank, info,
                                                       timeout_s)
            except Exception as exc:       # noqa: BLE001 - the test looks at it
                out[info.rank] = exc
        threads.append(threading.Thread(target=run))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s + 10)
    return out


def test_join_returns_every_info_by_rank_and_leave_drops_the_records(cluster):
    infos = [_info(r) for r in range(3)]
    out = _join_all("j1", 3, infos)
    assert all(out[r] == infos for r in range(3)), out
    assert sorted(k for k in _kv_keys() if k.startswith("join/j1/")) == \
        ["join/j1/0", "join/j1/1", "join/j1/2"]
    for r in range(3):
        R.KvRendezvous().leave("j1", r)
    assert not [k for k in _kv_keys() if k.startswith("join/j1/")]


def test_a_world_size_mismatch_is_an_argument_error_naming_both_ranks(cluster):
    rdv = R.KvRendezvous()
    kv = runtime.current().kv
    kv.put(R.join_key("j2", 1), pickle.dumps((3, _info(1))), namespace=R.NAMESPACE)
    with pytest.raises(col.CollectiveArgumentError, match="world_size 2, rank 1 with 3"):
        rdv.join("j2", 2, 0, _info(0), 5)
    assert kv.get(R.join_key("j2", 0), namespace=R.NAMESPACE) is None   # it left
    rdv.leave("j2", 1)


def test_a_missing_rank_times_out_naming_it(cluster):
    with pytest.raises(col.CollectiveTimeoutError, match=r"ranks \[1\]"):
        R.KvRendezvous().join("j3", 2, 0, _info(0), 1.0)
    assert not [k for k in _kv_keys() if k.startswith("join/j3/")]


def test_a_rank_held_by_a_live_process_is_refused(cluster):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = ProcessId(sleeper.pid, _start_time(sleeper.pid))
        kv = runtime.current().kv
        kv.put(R.join_key("j4", 0), pickle.dumps((2, _info(0, holder))), namespace=R.NAMESPACE)
        with pytest.raises(col.CollectiveArgumentError, match="joined twice"):
            R.KvRendezvous().join("j4", 2, 0, _info(0), 5)
    finally:
        sleeper.kill()
        sleeper.wait()
    # the holder died: its record is stale, a new member replaces it and the group forms
    out = _join_all("j4", 2, [_info(0), _info(1)])
    assert [i.rank for i in out[0]] == [0, 1] and out[1] == out[0], out
    for r in range(2):
        R.KvRendezvous().leave("j4", r)


def _start_time(pid):
    from zray.util.collective.backends.liveness import process_start_time
    return process_start_time(pid)


def test_a_dead_members_record_is_not_taken_for_a_member(cluster):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    kv = runtime.current().kv
    kv.put(R.join_key("j5", 1), pickle.dumps((2, _info(1, ProcessId(dead.pid, 1)))),
           namespace=R.NAMESPACE)
    with pytest.raises(col.CollectiveTimeoutError, match=r"ranks \[1\]"):
        R.KvRendezvous().join("j5", 2, 0, _info(0), 1.0)
    R.KvRendezvous().leave("j5", 1)


def test_declaration_is_stored_read_and_retired(cluster):
    rdv = R.KvRendezvous()
    rdv.declare("d1", 2, {"aa": 1, "bb": 0}, "cpu", 5)
    assert rdv.declared("d1", "aa", 5) == (2, 1, "cpu")
    assert rdv.declared("d1", "cc", 5) is None
    rdv.retire("d1")
    assert rdv.declared("d1", "aa", 5) is None


def test_formation_without_a_runtime_is_a_clear_error():
    code = ("import zray.util.collective as col\n"
            "try:\n"
            "    col.init_collective_group(2, 0, 'gloo', 'g', timeout_ms=2000)\n"
            "except col.CollectiveError as e:\n"
            "    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ))
    assert "ERR" in out.stdout and "zray.init()" in out.stdout, out.stdout + out.stderr
