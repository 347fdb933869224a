"""`srun python -m zray.launch` on three Slurm nodes that are separate hosts: each slurmd in a
network namespace of its own (own address 10.77.0.K, own hostname nK), joined by a bridge
(tests/netns.py). Root only; slow."""
import os
import sys
import textwrap

import pytest

import netns
from helpers import slurm as slurm_helper

pytestmark = [pytest.mark.slow, pytest.mark.privileged,
              pytest.mark.skipif(not netns.available(), reason="needs root and ip netns")]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = """
import os, socket, zray
zray.init()
@zray.remote
def where():
    return socket.gethostname()
alive = [n for n in zray.nodes() if n["Alive"]]
print("ADDRESSES", " ".join(sorted(n["NodeManagerAddress"] for n in alive)))
spread = [where.options(resources={"zray_rank:%d" % r: 0.01}).remote() for r in range(3)]
print("HOSTS", " ".join(zray.get(spread, timeout=60)))
import numpy as np
@zray.remote(resources={"zray_rank:2": 0.01})
def total(a):
    return float(a.sum())
print("TOTAL", zray.get(total.remote(zray.put(np.ones(4 << 20))), timeout=120))
"""


@pytest.fixture
def slurm_on_hosts():
    why = slurm_helper.available()
    if why:
        pytest.skip(why)
    with netns.Hosts(3, tag=os.getpid() % 1000) as hosts, \
            slurm_helper.SlurmCluster(nodes=3, cpus=2, hosts=hosts) as cluster:
        yield cluster


def test_srun_across_three_hosts(slurm_on_hosts, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP))
    zt = tmp_path / "zt"
    zt.mkdir()
    env = {"PYTHONPATH": REPO, "ZRAY_TMPDIR": str(zt)}
    done = slurm_on_hosts.run(["srun", "-N", "3", "-n", "3", sys.executable, "-m", "zray.launch",
                               str(app)], env=env, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out + slurm_on_hosts.logs()
    assert "ADDRESSES 10.77.0.1 10.77.0.2 10.77.0.3" in out        # one address per host
    assert "HOSTS n1 n2 n3" in out                                  # each rank on its host
    assert f"TOTAL {float(4 << 20)}" in out                          # 32 MB across the bridge
    assert not any(zt.rglob("s*-*")), list(zt.rglob("*"))           # sessions gone
